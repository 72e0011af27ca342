//! `gru forward` and `gru convert`: running and moving GRU weights trained in PyTorch or
//! Keras.

use crate::cli::out::outln;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use gru_engine::interop::{
    load_gru, load_gru_with, read_tensors, save_gru, write_safetensors, LoadOptions, Tensor,
    Tensors, WeightFormat,
};
use gru_engine::{cpu, GpuGru, GruError, Result, SequenceInput};

use crate::cli::args::PrecisionArg;
use crate::cli::device::{Choice, DeviceArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// nn.GRU state dict (weight_ih_l0, ...), also gru-engine's own layout.
    Pytorch,
    /// Keras GRU weights (kernel, recurrent_kernel, bias; layer{k}.[forward.|backward.]).
    Keras,
    /// ONNX: read, the GRU layers of a model (torch.onnx.export, tf2onnx, Keras 3
    /// export); written, the stack alone with nn.GRU's interface (input -> output, h_n).
    Onnx,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Pytorch => "PyTorch",
            Format::Keras => "Keras",
            Format::Onnx => "ONNX",
        }
    }

    fn to_lib(self) -> WeightFormat {
        match self {
            Format::Pytorch => WeightFormat::PyTorch,
            Format::Keras => WeightFormat::Keras,
            Format::Onnx => WeightFormat::Onnx,
        }
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru forward --weights gru.safetensors --input x.safetensors --output y.safetensors
  gru forward --weights keras_gru.npz --format keras --input x.safetensors --output y.safetensors --device cpu

The input file holds `input` ([T, B, I], or [B, T, I] with --batch-first, the default for
Keras) and optionally `h0` [layers*dirs, B, H] and `lengths` [B] (integers); --h0 and
--lengths read them from other files instead. The output file gets `output` and `h_n`.")]
pub struct ForwardArgs {
    /// GRU weights (safetensors, or .npz for Keras).
    #[arg(long, short)]
    pub weights: PathBuf,
    /// Names and layout of the weights.
    #[arg(long, value_enum, default_value_t = Format::Pytorch)]
    pub format: Format,
    /// safetensors file with the `input` tensor (and optionally `h0`, `lengths`).
    #[arg(long, short)]
    pub input: PathBuf,
    /// Where to write `output` and `h_n` (safetensors).
    #[arg(long, short)]
    pub output: PathBuf,
    /// File holding `h0` (default: the input file's, else zeros).
    #[arg(long)]
    pub h0: Option<PathBuf>,
    /// File holding `lengths` (default: the input file's, else full length).
    #[arg(long)]
    pub lengths: Option<PathBuf>,
    /// Input and output are [B, T, ...] (always so for --format keras).
    #[arg(long)]
    pub batch_first: bool,
    /// What the device stores weights, states and activations as: f32, or f16 (every
    /// sum still f32; outputs written as f32). With --device cpu, f16 runs the CPU
    /// reference rounding to f16 where a device stores (an emulation, said in one line).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long, short)]
    pub quiet: bool,
}

fn tensor(path: &Path, name: &str, required: bool) -> Result<Option<Tensor>> {
    let mut t = read_tensors(path, true)?;
    match t.remove(name) {
        Some(x) => Ok(Some(x)),
        None if required => Err(GruError::Input(format!(
            "{}: no `{name}` tensor (it has: {})",
            path.display(),
            t.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
        None => Ok(None),
    }
}

pub fn forward(a: ForwardArgs) -> Result<u8> {
    let w = a.source.load(&a.weights, a.format)?;
    let cfg = w.config;
    let x = tensor(&a.input, "input", true)?.unwrap_or(Tensor {
        shape: vec![],
        data: vec![],
    });
    let batch_first = a.batch_first || matches!(a.format, Format::Keras);
    if x.shape.len() != 3 || x.shape[2] != cfg.input_size {
        return Err(GruError::Shape {
            what: "input".into(),
            expected: format!(
                "3 dimensions {} with I = {}",
                if batch_first {
                    "[B, T, I]"
                } else {
                    "[T, B, I]"
                },
                cfg.input_size
            ),
            found: format!("{:?}", x.shape),
        });
    }
    let (t_len, b) = if batch_first {
        (x.shape[1], x.shape[0])
    } else {
        (x.shape[0], x.shape[1])
    };
    let h0 = tensor(a.h0.as_deref().unwrap_or(&a.input), "h0", a.h0.is_some())?;
    let lengths = tensor(
        a.lengths.as_deref().unwrap_or(&a.input),
        "lengths",
        a.lengths.is_some(),
    )?;
    // Checked as read, so a -1 or a NaN is reported as itself, not as the 0 a cast makes.
    let lengths: Option<Vec<usize>> = lengths
        .map(|l| {
            l.data
                .iter()
                .enumerate()
                .map(|(row, &v)| {
                    if v.fract() == 0.0 && v >= 1.0 && v <= t_len as f32 {
                        Ok(v as usize)
                    } else {
                        Err(GruError::Input(format!(
                            "lengths[{row}] = {v}, but every length must be a whole number in 1..={t_len} (T)"
                        )))
                    }
                })
                .collect::<gru_engine::Result<Vec<usize>>>()
        })
        .transpose()?;
    let mut input = SequenceInput::new(&x.data, t_len, b).batch_first(batch_first);
    if let Some(h0) = &h0 {
        input = input.h0(&h0.data);
    }
    if let Some(l) = &lengths {
        input = input.lengths(l);
    }
    let precision = a.precision.to_lib();
    let (output, h_n) = match a.device.open(a.quiet)? {
        Choice::Gpu(ctx) => {
            let mut g = GpuGru::with_precision(ctx, &w, precision)?;
            g.forward(&input)?;
            (g.read_output()?, g.read_h_n()?)
        }
        Choice::Cpu if precision.is_half() => {
            if !a.quiet {
                eprintln!("note: --precision f16 on the CPU reference is emulated: f32 arithmetic, values rounded to f16 where a device stores them");
            }
            let f = cpu::forward_f16(&w, &input)?;
            (f.output, f.h_n)
        }
        Choice::Cpu => {
            let f = cpu::forward(&w, &input)?;
            (f.output, f.h_n)
        }
    };
    let f = cfg.output_size();
    let ld = cfg.num_layers * cfg.num_directions();
    let out_shape = if batch_first {
        vec![b, t_len, f]
    } else {
        vec![t_len, b, f]
    };
    let mut t = Tensors::new();
    t.insert(
        "output".into(),
        Tensor {
            shape: out_shape.clone(),
            data: output,
        },
    );
    t.insert(
        "h_n".into(),
        Tensor {
            shape: vec![ld, b, cfg.hidden_size],
            data: h_n,
        },
    );
    write_safetensors(&a.output, &t, BTreeMap::new())?;
    if !a.quiet {
        eprintln!(
            "{}: output {:?}, h_n [{ld}, {b}, {}] ({} layer(s), {}, I = {}, H = {}, {:?}, {precision})",
            a.output.display(),
            out_shape,
            cfg.hidden_size,
            cfg.num_layers,
            if cfg.bidirectional {
                "bidirectional"
            } else {
                "unidirectional"
            },
            cfg.input_size,
            cfg.hidden_size,
            cfg.variant
        );
    }
    Ok(0)
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru convert --from keras --to pytorch keras_gru.npz gru.safetensors     # into gru-engine / PyTorch
  gru convert --from pytorch --to keras gru.safetensors keras_gru.npz     # back to Keras
  gru convert --from pytorch --to pytorch runs/lm/best.safetensors gru.safetensors  # the GRU of a checkpoint
  gru convert --from pytorch --to onnx gru.safetensors gru.onnx          # the stack as an ONNX graph

PyTorch input may carry a module prefix (gru., rnn., ...); the output is a plain nn.GRU
state dict that loads with load_state_dict(strict=True). Keras output is .npz when the
file name ends in .npz, else safetensors; load it with layer.set_weights([kernel,
recurrent_kernel, bias]) per layer and direction. ONNX output is the GRU stack alone,
opset 14, one GRU node per layer: input `input` [time, batch, I] (time-major, as nn.GRU),
outputs `output` [time, batch, directions*H] and `h_n` [layers*directions, batch, H]
(gru export writes a whole trained model instead).")]
pub struct ConvertArgs {
    /// Format of the input file.
    #[arg(long, value_enum)]
    pub from: Format,
    /// Format to write.
    #[arg(long, value_enum)]
    pub to: Format,
    /// Input weights (safetensors or .npz).
    pub input: PathBuf,
    /// Output file.
    pub output: PathBuf,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// What a weights file may not say by itself.
#[derive(Args, Debug)]
pub struct SourceArgs {
    /// The GRU variant of a plain PyTorch state dict (default reset-after, nn.GRU's).
    /// A variant the file records (a gru-engine checkpoint, a Keras bias, an ONNX node)
    /// is used as it is; this flag may only confirm it.
    #[arg(long, value_enum)]
    pub variant: Option<crate::cli::args::Variant>,
    /// Which GRU of a state dict holding several, by its prefix (`enc.gru.`).
    #[arg(long)]
    pub prefix: Option<String>,
}

impl SourceArgs {
    /// `path` in `format`, with these choices.
    fn load(&self, path: &Path, format: Format) -> Result<gru_engine::GruWeights> {
        let opts = LoadOptions {
            variant: self.variant.map(|v| v.to_lib()),
            prefix: self.prefix.clone(),
        };
        load_gru_with(path, format.to_lib(), &opts)
    }
}

pub fn convert(a: ConvertArgs) -> Result<u8> {
    let w = a.source.load(&a.input, a.from)?;
    save_gru(&a.output, &w, a.to.to_lib())?;
    outln!(
        "wrote {} ({}): {}",
        a.output.display(),
        a.to.name(),
        describe(&w)
    )?;
    Ok(0)
}

/// A GRU stack in one line: layers, directions, sizes, variant, parameter count.
fn describe(w: &gru_engine::GruWeights) -> String {
    let c = w.config;
    let dirs = if c.bidirectional {
        "bidirectional"
    } else {
        "unidirectional"
    };
    format!(
        "{} GRU layer(s), {dirs}, I = {}, H = {}, {:?}, {} parameters",
        c.num_layers,
        c.input_size,
        c.hidden_size,
        c.variant,
        gru_engine::model::group_digits(c.param_count())
    )
}

/// Model formats `gru import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// ONNX: the model's GRU nodes and GRU Loops (torch.onnx.export of nn.GRU, tf2onnx or
    /// Keras 3 export of Keras GRU).
    Onnx,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  gru import --format onnx gru.onnx --output gru.safetensors
  gru forward --weights gru.onnx --format onnx --input x.safetensors --output y.safetensors

Every GRU node of the graph becomes a layer, in graph order: forward or bidirectional,
reset-after for linear_before_reset = 1, reset-before for 0. Weights may be initializers,
Constant nodes, external data next to the file, or constant Unsqueeze/Concat/Slice/...
expressions over them. GRU attributes gru-engine does not compute (clip, other
activations, activation_alpha/beta) and reverse-only layers are refused by name.
A Loop that computes a GRU step (how tf2onnx and Keras 3 write Keras GRU layers other
than Keras 2's reset_after=True ones) is a layer too, and a forward Loop with a reversed
one beside it, concatenated, a bidirectional layer; Keras masks are seen through, other
activations refused. gru import writes reset-after layers only (nn.GRU's variant); gru forward and
gru convert --from onnx --to keras take both.")]
pub struct ImportArgs {
    /// Format of the model file.
    #[arg(long, value_enum, default_value_t = ImportFormat::Onnx)]
    pub format: ImportFormat,
    /// The model file.
    pub input: PathBuf,
    /// Where to write the GRU weights: an nn.GRU state dict (safetensors), gru-engine's
    /// own layout.
    #[arg(long, short)]
    pub output: PathBuf,
}

pub fn import(a: ImportArgs) -> Result<u8> {
    let w = match a.format {
        ImportFormat::Onnx => load_gru(&a.input, WeightFormat::Onnx)?,
    };
    if w.config.variant == gru_engine::config::GruVariant::ResetBefore {
        let input = a.input.display();
        return Err(GruError::Config(format!(
            "{input} holds reset-before GRU layers (Keras reset_after=False), which an nn.GRU state dict cannot hold: run them with `gru forward --format onnx --weights {input} ...`, or write them as Keras weights with `gru convert --from onnx --to keras {input} gru.npz`"
        )));
    }
    save_gru(&a.output, &w, WeightFormat::PyTorch)?;
    let (out, input) = (a.output.display(), a.input.display());
    outln!("wrote {out} from {input}: {}", describe(&w))?;
    Ok(0)
}
