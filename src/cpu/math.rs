//! The reference's arithmetic: the sigmoid and the three matrix-vector loops forward
//! and backward are made of.

use crate::real::Real;

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
