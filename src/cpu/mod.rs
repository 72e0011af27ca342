//! The CPU reference: plain loops over the math of docs/design.md §1, forward and
//! backward. It shares nothing with the GPU kernels beyond the parameter layout and is
//! generic over the float type so gradient checks can run it in `f64`.

mod backward;
mod forward;
mod math;

pub use crate::real::Real;
pub use backward::backward;
pub use forward::{cell_step, forward, forward_f16, CpuForward};
pub use math::sigmoid;
pub(crate) use math::{matvec_acc, matvec_t_acc, outer_acc};
