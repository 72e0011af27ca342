//! The ops: builders that bind buffers to one kernel of the table once, so a pass only
//! replays a list of recorded dispatches. One module per kernel family.

pub(crate) mod copy;
pub(crate) mod dispatch;
pub(crate) mod dropout;
pub(crate) mod embed;
pub(crate) mod embed_update;
pub(crate) mod gemm;
pub(crate) mod generate;
pub(crate) mod loss;
pub(crate) mod optim;
pub(crate) mod reduce;
pub(crate) mod roofline;
pub(crate) mod sample;
pub(crate) mod step;
#[cfg(test)]
pub(crate) mod testutil;
pub(crate) mod transpose;

pub(crate) use dispatch::{encode, Dispatch};
pub(crate) use gemm::{gemm, gemm_scratch, GemmFlags, GemmParams};
pub(crate) use reduce::{colsum, colsum_scratch};
pub(crate) use step::{step_slots, StepDims, StepKernel};
pub(crate) use transpose::transpose;
