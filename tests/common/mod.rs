//! Shared by the integration tests: the device, random data, and the one comparison helper.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use gru_engine::model::{Batch, ModelConfig, ModelInput, IGNORE};
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

/// The test device opened with the builds a GPU runs (no software-adapter builds: no
/// subgroup kernels, one dispatch per step past H = 64 with the k loop split over 4
/// threads, the 64-lane cross-entropy), so that an adapter with other builds (llvmpipe)
/// checks these too.
pub fn gpu_portable() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    CTX.get_or_init(|| {
        let request = gru_engine::gpu::DeviceRequest {
            subgroup_kernels: false,
            sequence_kernels: false,
            split_steps: Some(true),
            ..Default::default()
        };
        match GpuContext::new(&request) {
            Ok(ctx) => Some(ctx),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("CI is set but no GPU adapter could be opened: {e}")
            }
            Err(_) => None,
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

/// Owned data for one batch.
pub struct Data {
    pub tokens: Vec<u32>,
    pub features: Vec<f32>,
    pub classes: Vec<u32>,
    pub values: Vec<f32>,
    pub lengths: Option<Vec<usize>>,
    pub b: usize,
    pub t: usize,
}

impl Data {
    pub fn batch(&self) -> Batch<'_> {
        let mut batch = if self.tokens.is_empty() {
            Batch::features(&self.features, self.b, self.t)
        } else {
            Batch::tokens(&self.tokens, self.b, self.t)
        };
        batch = if self.classes.is_empty() {
            batch.values(&self.values)
        } else {
            batch.classes(&self.classes)
        };
        if let Some(l) = &self.lengths {
            batch = batch.lengths(l);
        }
        batch
    }
}

/// Random inputs and targets fitting `cfg`.
pub fn data(cfg: &ModelConfig, b: usize, t: usize, lengths: bool, rng: &mut Rng) -> Data {
    let per_step = cfg.head == gru_engine::model::Head::EveryStep;
    let rows = if per_step { b * t } else { b };
    let mut d = Data {
        tokens: vec![],
        features: vec![],
        classes: vec![],
        values: vec![],
        lengths: None,
        b,
        t,
    };
    match cfg.input {
        ModelInput::Tokens { vocab, .. } => {
            d.tokens = (0..b * t)
                .map(|_| (rng.next_u64() % vocab as u64) as u32)
                .collect()
        }
        ModelInput::Features(n) => d.features = rng.uniform_vec(b * t * n, -1.0, 1.0),
    }
    match cfg.loss {
        gru_engine::model::Loss::CrossEntropy => {
            d.classes = (0..rows)
                .map(|_| (rng.next_u64() % cfg.outputs as u64) as u32)
                .collect();
            if per_step && rows > 2 {
                d.classes[1] = IGNORE; // padding inside the batch is skipped
            }
        }
        gru_engine::model::Loss::BinaryCrossEntropy => {
            d.values = (0..rows).map(|_| (rng.next_u64() % 2) as f32).collect()
        }
        gru_engine::model::Loss::MeanSquaredError => {
            d.values = rng.uniform_vec(rows * cfg.outputs, -1.0, 1.0)
        }
    }
    if lengths {
        d.lengths = Some(
            (0..b)
                .map(|r| if r % 2 == 0 { t } else { 1 + (r % t) })
                .collect(),
        );
    }
    d
}

/// The `--device` the CLI tests run models on (as `GRU_DEVICE`): `gpu` where a usable
/// adapter exists, so they test the GPU path (llvmpipe under CI, where `auto` would
/// take the faster CPU reference), else `auto`.
#[allow(dead_code)]
pub fn cli_device() -> &'static str {
    static PICK: OnceLock<&'static str> = OnceLock::new();
    PICK.get_or_init(|| match gpu() {
        Some(_) => "gpu",
        None => "auto",
    })
}

/// `gru args` in `dir`, which must succeed: its stdout and stderr together.
#[allow(dead_code)]
pub fn gru_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gru"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "gru {args:?}: {text}");
    text
}
