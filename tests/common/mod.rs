//! Shared by the integration tests: the device, random data, and the one comparison helper.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use gru_engine::rng::Rng;
use gru_engine::GpuContext;

/// The test device, opened once per test binary. With `CI` set a missing adapter fails
/// the test; elsewhere the GPU tests print why they skip.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new_default() {
        Ok(ctx) => {
            eprintln!(
                "GPU tests run on: {} ({:?})",
                ctx.adapter_info().name,
                ctx.adapter_info().backend
            );
            Some(ctx)
        }
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but no GPU adapter could be opened: {e}")
        }
        Err(e) => {
            eprintln!("skipping GPU tests: {e}");
            None
        }
    })
    .clone()
}

pub fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    rng.uniform_vec(n, -scale, scale)
}

/// Asserts |got - want| <= abs + rel·|want| elementwise; on failure names the tensor, the
/// worst index, both values and the case.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], abs: f64, rel: f64, case: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs reference {} ({case})",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let excess = err - (abs + rel * w.abs());
        if excess > 0.0 || err.is_nan() && !(w.is_nan() && (g as f64).is_nan()) {
            let e = if err.is_nan() { f64::INFINITY } else { excess };
            if worst.is_none_or(|(_, we)| e > we) {
                worst = Some((i, e));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what} differs from the reference ({case}): worst at index {i}: got {} want {} (|diff| {:e}, allowed {:e} + {:e}·|want|)",
            got[i],
            want[i],
            (got[i] as f64 - want[i]).abs(),
            abs,
            rel
        );
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
