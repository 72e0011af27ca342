//! The CPU reference: plain loops over the math of docs/design.md §1, forward and
//! backward. It shares nothing with the GPU kernels beyond the parameter layout and is
//! generic over the float type so gradient checks can run it in `f64`.

mod backward;
mod forward;

pub use backward::backward;
pub use forward::{cell_step, forward, CpuForward};

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// The float types the reference runs on (`f32`, `f64`).
pub trait Real:
    Copy
    + Default
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + Send
    + Sync
    + 'static
{
    /// Converts from f64 (rounding for f32).
    fn from_f64(x: f64) -> Self;
    /// Converts to f64 exactly.
    fn to_f64(self) -> f64;
    /// e^self.
    fn exp(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

/// The logistic function.
pub fn sigmoid<R: Real>(x: R) -> R {
    let one = R::from_f64(1.0);
    one / (one + (-x).exp())
}

/// y[rows] += W[rows, cols] · x[cols], W row-major.
pub(crate) fn matvec_acc<R: Real>(w: &[R], x: &[R], y: &mut [R]) {
    let cols = x.len();
    for (row, yv) in y.iter_mut().enumerate() {
        let mut acc = R::default();
        for (wv, xv) in w[row * cols..(row + 1) * cols].iter().zip(x) {
            acc += *wv * *xv;
        }
        *yv += acc;
    }
}

/// x[cols] += W[rows, cols]ᵀ · y[rows], W row-major.
pub(crate) fn matvec_t_acc<R: Real>(w: &[R], y: &[R], x: &mut [R]) {
    let cols = x.len();
    for (row, &yv) in y.iter().enumerate() {
        for (xv, wv) in x.iter_mut().zip(&w[row * cols..(row + 1) * cols]) {
            *xv += *wv * yv;
        }
    }
}

/// W[rows, cols] += y[rows] ⊗ x[cols].
pub(crate) fn outer_acc<R: Real>(w: &mut [R], y: &[R], x: &[R]) {
    let cols = x.len();
    for (row, &yv) in y.iter().enumerate() {
        for (wv, xv) in w[row * cols..(row + 1) * cols].iter_mut().zip(x) {
            *wv += yv * *xv;
        }
    }
}
