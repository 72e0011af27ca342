//! ONNX in and out. Export ([`export`], [`to_onnx`]): a trained model as a standard ONNX
//! graph (opset 14) that ONNX Runtime, tract, TensorRT or OpenVINO run, every GRU layer
//! one ONNX `GRU` node; [`gru_to_onnx`]: a GRU stack alone, with `nn.GRU`'s interface.
//! Import ([`gru_from_onnx`]): the GRU layers of an ONNX file as gru-engine weights, from
//! the GRU nodes PyTorch's and tf2onnx's exporters write and from the Loops tf2onnx and
//! Keras 3 write for the other Keras GRUs (read as algebra, `loop_step`; Bidirectional
//! pairs, `loop_pairs`).
//!
//! Mapping from gru-engine's (PyTorch's) parameters: ONNX orders the gate blocks z, r, h
//! where PyTorch orders r, z, n, so the first two blocks swap; `B` is `[W_b | R_b]` =
//! `[b_ih | b_hh]`, each swapped the same way; `linear_before_reset` is 1 for
//! reset-after (PyTorch, cuDNN, Keras `reset_after=True`) and 0 for reset-before (Keras
//! `reset_after=False`), whose candidate ONNX computes exactly as gru-engine does.
//!
//! ```no_run
//! use gru_engine::model::{ModelConfig, ModelParams};
//! use gru_engine::onnx::{export, ExportOptions};
//! # fn main() -> gru_engine::Result<()> {
//! let params = ModelParams::init(ModelConfig::language_model(65, 32, 128), 1)?;
//! export(&params, &ExportOptions::default(), std::path::Path::new("lm.onnx"))?;
//! # Ok(()) }
//! ```

mod consts;
mod export;
mod gates;
mod import;
mod loop_pairs;
mod loop_step;

pub use export::{export, gru_to_onnx, to_onnx, ExportOptions, OPSET};
pub use import::gru_from_onnx;
