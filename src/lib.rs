//! # gru-engine
//!
//! A GRU (gated recurrent unit) whose forward and backward passes run as WGSL compute
//! shaders through wgpu (Vulkan, Metal, DX12, GL), with a plain CPU reference of the same
//! math that every GPU kernel is tested against.
//!
//! Dimension letters, fixed throughout: **T** timesteps, **B** batch rows, **I** input
//! features, **H** hidden units per direction. Tensors are row-major; sequences are
//! time-major [T, B, I] unless declared batch-first. Parameters use PyTorch's `nn.GRU`
//! layout and names (see [`weights`]).
//!
//! ```no_run
//! use gru_engine::{GpuContext, GpuGru, GruConfig, GruWeights, SequenceInput};
//! # fn main() -> gru_engine::Result<()> {
//! let ctx = GpuContext::new_default()?;
//! let weights = GruWeights::init(GruConfig::new(8, 16).layers(2), 42);
//! let mut gru = GpuGru::new(ctx, &weights)?;
//! let x = vec![0.1f32; 5 * 3 * 8]; // [T=5, B=3, I=8]
//! gru.forward(&SequenceInput::new(&x, 5, 3))?;
//! let output = gru.read_output()?; // [5, 3, 16]
//! let grads = gru.backward(&vec![1.0; output.len()], None)?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod cpu;
#[cfg(feature = "cli")]
pub mod csvdata;
pub mod dist;
pub mod error;
pub mod generate;
pub mod gpu;
pub mod interop;
pub mod io;
pub mod memory;
pub mod model;
pub mod onnx;
pub mod precision;
pub mod real;
pub mod rng;
pub mod sequence;
pub mod task;
pub mod text;
pub mod train;
pub mod weights;

pub use config::{GruConfig, GruVariant};
pub use error::{GruError, Result};
pub use gpu::{AdapterSummary, DeviceRequest, GpuContext, GpuGru};
pub use precision::Precision;

pub use sequence::{GruGrads, SequenceInput};
pub use weights::{DirWeights, GruWeights, TensorId, TensorKind};

/// The README's Rust example, compiled by `cargo test --doc`.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
