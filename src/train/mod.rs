//! Training: the hyperparameters, the CPU reference trainer, the GPU trainer, and the
//! [`Trainer`] trait both implement so callers (the CLI) can pick a device at run time.

mod awaitable;
mod cpu;
pub(crate) mod gpu;
mod options;
mod trainer;

pub use awaitable::AwaitableTrainer;
pub use cpu::{model_pass, CpuTrainer, ModelPass};
pub use gpu::GpuTrainer;
pub use options::{Optimizer, OptimizerState, TrainOptions};
pub use trainer::{Metrics, Split, Trainer};
