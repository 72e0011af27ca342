//! A table of a model's layers like Keras' `model.summary()`.

use crate::model::config::{Head, ModelConfig, ModelInput};

/// One row of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSummary {
    /// `name (Type)`, as Keras prints it.
    pub layer: String,
    /// Output shape with `None` for the batch (and time) axes.
    pub output_shape: String,
    /// Trainable parameters.
    pub params: usize,
}

/// Keras' thousands separators: 3938304 -> "3,938,304".
pub fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl ModelConfig {
    /// The layers, their output shapes and parameter counts. GRU counts are PyTorch's
    /// and Keras' (reset-after): 3H(I + H) + 6H per layer and direction.
    ///
    /// ```
    /// use gru_engine::model::ModelConfig;
    /// // TensorFlow's text-generation tutorial: Embedding(65, 256) -> GRU(1024) -> Dense(65).
    /// let rows = ModelConfig::language_model(65, 256, 1024).layer_summaries();
    /// assert_eq!(rows[1].params, 3_938_304);
    /// ```
    pub fn layer_summaries(&self) -> Vec<LayerSummary> {
        let seq = self.head == Head::EveryStep;
        let shape = |f: usize, time: bool| {
            if time {
                format!("(None, None, {f})")
            } else {
                format!("(None, {f})")
            }
        };
        let mut rows = Vec::new();
        if let ModelInput::Tokens { vocab, embed_dim } = self.input {
            rows.push(LayerSummary {
                layer: "embedding (Embedding)".into(),
                output_shape: shape(embed_dim, true),
                params: vocab * embed_dim,
            });
        }
        let g = self.gru_config();
        for l in 0..self.num_layers {
            let one = crate::config::GruConfig::new(g.layer_input_size(l), g.hidden_size)
                .bidirectional(g.bidirectional);
            let suffix = if l == 0 {
                String::new()
            } else {
                format!("_{l}")
            };
            let layer = if g.bidirectional {
                format!("bidirectional{suffix} (Bidirectional)")
            } else {
                format!("gru{suffix} (GRU)")
            };
            // Every layer but the top returns sequences; the top does for a per-step head.
            let time = seq || l + 1 < self.num_layers;
            rows.push(LayerSummary {
                layer,
                output_shape: shape(g.output_size(), time),
                params: one.param_count(),
            });
            if self.dropout > 0.0 {
                let name = if l + 1 < self.num_layers {
                    format!("dropout_{l}")
                } else {
                    "dropout".into()
                };
                rows.push(LayerSummary {
                    layer: format!("{name} (Dropout)"),
                    output_shape: shape(g.output_size(), time),
                    params: 0,
                });
            }
        }
        rows.push(LayerSummary {
            layer: "dense (Dense)".into(),
            output_shape: shape(self.outputs, seq),
            params: self.outputs * (self.head_input_size() + 1),
        });
        rows
    }

    /// The summary table as text, ending with the total parameter count.
    pub fn summary(&self) -> String {
        let rows = self.layer_summaries();
        let w0 = rows
            .iter()
            .map(|r| r.layer.len())
            .max()
            .unwrap_or(0)
            .max(12)
            + 2;
        let w1 = rows
            .iter()
            .map(|r| r.output_shape.len())
            .max()
            .unwrap_or(0)
            .max(12)
            + 2;
        let mut out = format!(
            "{:<w0$}{:<w1$}{:>12}\n",
            "Layer (type)", "Output Shape", "Param #"
        );
        let rule = "=".repeat(w0 + w1 + 12);
        out.push_str(&rule);
        out.push('\n');
        for r in &rows {
            out.push_str(&format!(
                "{:<w0$}{:<w1$}{:>12}\n",
                r.layer,
                r.output_shape,
                group_digits(r.params)
            ));
        }
        out.push_str(&rule);
        out.push('\n');
        out.push_str(&format!(
            "Total params: {}\n",
            group_digits(self.param_count())
        ));
        out
    }
}
