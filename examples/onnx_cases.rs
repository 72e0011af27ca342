//! Writes ONNX exports of each kind of model with inputs and gru-engine's predictions,
//! for `scripts/check_onnx.py` to run in ONNX Runtime (which, unlike tract, also takes
//! per-row lengths; the stateful export is run there in two chunks, the second from the
//! first's final states; the GRU stack alone, with lengths and initial states, is
//! compared on `output` and `h_n`):
//!
//! ```sh
//! cargo run --release --example onnx_cases -- /tmp/onnx_cases
//! python3 scripts/check_onnx.py /tmp/onnx_cases
//! ```

use std::path::PathBuf;

use gru_engine::checkpoint::SavePrecision;
use gru_engine::config::GruVariant;
use gru_engine::io::onnx::write_model;
use gru_engine::io::{write_npz, Tensor, Tensors};
use gru_engine::model::{Batch, ModelConfig, ModelInput, ModelParams};
use gru_engine::onnx::{export, gru_to_onnx, ExportOptions};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};
use gru_engine::{cpu, GruConfig, GruWeights, SequenceInput};

fn main() -> gru_engine::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or("/tmp/onnx_cases".into()));
    std::fs::create_dir_all(&dir).map_err(|e| gru_engine::GruError::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let tokens = ModelInput::Tokens {
        vocab: 30,
        embed_dim: 4,
    };
    let cases = [
        (
            "lm_reset_after_2_layers",
            ModelConfig::language_model(30, 5, 8).layers(2),
            false,
        ),
        (
            "lm_stateful_2_layers",
            ModelConfig::language_model(30, 5, 8).layers(2),
            false,
        ),
        (
            "lm_reset_before",
            ModelConfig::language_model(30, 5, 8).variant(GruVariant::ResetBefore),
            false,
        ),
        (
            "classifier_bidirectional_lengths",
            ModelConfig::classifier(tokens, 6, 3)
                .layers(2)
                .bidirectional(true),
            true,
        ),
        (
            "classifier_reset_before_bidirectional_lengths",
            ModelConfig::classifier(ModelInput::Features(3), 6, 3)
                .bidirectional(true)
                .variant(GruVariant::ResetBefore),
            true,
        ),
        (
            "binary_classifier_lengths",
            ModelConfig::classifier(tokens, 5, 1),
            true,
        ),
        ("forecaster", ModelConfig::forecaster(2, 7, 3), false),
    ];
    // Two of them again with float16 initializers (`--precision f16`): ONNX Runtime's
    // logits against the reference's on the f16-rounded weights.
    let halves = [
        (
            "lm_reset_after_2_layers_f16",
            ModelConfig::language_model(30, 5, 8).layers(2),
            false,
        ),
        (
            "classifier_bidirectional_lengths_f16",
            ModelConfig::classifier(tokens, 6, 3)
                .layers(2)
                .bidirectional(true),
            true,
        ),
    ];
    let mut rng = Rng::new(21);
    for (name, cfg, lengths) in cases.into_iter().chain(halves) {
        let (b, t) = (5, 9);
        let half = name.ends_with("_f16");
        let mut params = ModelParams::init(cfg, 7)?;
        let options = ExportOptions {
            lengths,
            initial_state: name.contains("stateful"),
            probabilities: true,
            precision: if half {
                SavePrecision::F16
            } else {
                SavePrecision::F32
            },
            ..Default::default()
        };
        if half {
            for t in params.tensors_mut() {
                *t = gru_engine::precision::round_all_f16(t);
            }
        }
        export(&params, &options, &dir.join(format!("{name}.onnx")))?;
        let lens: Vec<usize> = (0..b)
            .map(|r| if lengths { 1 + (r * 4 + 3) % t } else { t })
            .collect();
        let mut inputs = Tensors::new();
        let floats = |v: Vec<f32>, shape: Vec<usize>| Tensor { shape, data: v };
        let (ids, x): (Vec<u32>, Vec<f32>) = match cfg.input {
            ModelInput::Tokens { vocab, .. } => {
                let ids: Vec<u32> = (0..b * t)
                    .map(|_| (rng.next_u64() % vocab as u64) as u32)
                    .collect();
                inputs.insert(
                    "tokens".into(),
                    floats(ids.iter().map(|&v| v as f32).collect(), vec![b, t]),
                );
                (ids, vec![])
            }
            ModelInput::Features(n) => {
                let x = rng.uniform_vec(b * t * n, -1.0, 1.0);
                inputs.insert("features".into(), floats(x.clone(), vec![b, t, n]));
                (vec![], x)
            }
        };
        if lengths {
            inputs.insert(
                "lengths".into(),
                floats(lens.iter().map(|&l| l as f32).collect(), vec![b]),
            );
        }
        let mut batch = if ids.is_empty() {
            Batch::features(&x, b, t)
        } else {
            Batch::tokens(&ids, b, t)
        };
        if lengths {
            batch = batch.lengths(&lens);
        }
        let mut trainer = CpuTrainer::new(params, TrainOptions::default())?;
        let logits = trainer.predict(&batch)?;
        let shape = if logits.len() == b * cfg.outputs {
            vec![b, cfg.outputs]
        } else {
            vec![b, t, cfg.outputs]
        };
        write_npz(&dir.join(format!("{name}.inputs.npz")), &inputs)?;
        let expected = Tensors::from([("logits".to_string(), floats(logits, shape))]);
        write_npz(&dir.join(format!("{name}.expected.npz")), &expected)?;
        println!("{name}");
    }
    // The GRU stack alone (nn.GRU's interface) with per-row lengths and an initial state:
    // ONNX Runtime's `output` and `h_n` against the CPU reference's.
    let name = "gru_stack_bidirectional_lengths_h0";
    let cfg = GruConfig::new(3, 5).layers(2).bidirectional(true);
    let w = GruWeights::init(cfg, 9);
    let (t, b, ld, h) = (6, 4, 4, 5);
    let x = rng.uniform_vec(t * b * 3, -1.0, 1.0);
    let h0 = rng.uniform_vec(ld * b * h, -0.5, 0.5);
    let lens = [6usize, 2, 5, 1];
    let options = ExportOptions {
        lengths: true,
        initial_state: true,
        ..Default::default()
    };
    write_model(
        &dir.join(format!("{name}.onnx")),
        &gru_to_onnx(&w, &options),
    )?;
    let f = cpu::forward(&w, &SequenceInput::new(&x, t, b).h0(&h0).lengths(&lens))?;
    let floats = |v: Vec<f32>, shape: Vec<usize>| Tensor { shape, data: v };
    let inputs = Tensors::from([
        ("input".to_string(), floats(x, vec![t, b, 3])),
        ("h0".to_string(), floats(h0, vec![ld, b, h])),
        (
            "lengths".to_string(),
            floats(lens.iter().map(|&l| l as f32).collect(), vec![b]),
        ),
    ]);
    let expected = Tensors::from([
        ("output".to_string(), floats(f.output, vec![t, b, 2 * h])),
        ("h_n".to_string(), floats(f.h_n, vec![ld, b, h])),
    ]);
    write_npz(&dir.join(format!("{name}.inputs.npz")), &inputs)?;
    write_npz(&dir.join(format!("{name}.expected.npz")), &expected)?;
    println!("{name}");
    Ok(())
}
