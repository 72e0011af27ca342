//! `gru bench`: in one process the bench of `bench.rs`; under `mpirun`, data-parallel
//! training steps of every rank and how much of a step the sums across ranks take.

use crate::cli::out::outln;
use std::cell::Cell;
use std::time::Instant;

use gru_engine::dist::{Communicator, DataParallel};
use gru_engine::model::Batch;
use gru_engine::train::{CpuTrainer, GpuTrainer, Split, Trainer};
use gru_engine::{GruError, Result};

use crate::cli::bench::{
    self, adapter_label, language_model, random_tokens, train_options, BenchArgs,
};
use crate::cli::device::Choice;
use crate::cli::ranks::{run_items, Ranks};

/// A communicator that adds up the time and the bytes its sums take.
struct Timed<'a> {
    inner: &'a dyn Communicator,
    seconds: Cell<f64>,
    bytes: Cell<u64>,
}

impl Timed<'_> {
    fn count<T>(&self, bytes: usize, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let out = f();
        self.seconds
            .set(self.seconds.get() + start.elapsed().as_secs_f64());
        self.bytes.set(self.bytes.get() + bytes as u64);
        out
    }
}

impl Communicator for Timed<'_> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn sum_f32(&self, data: &mut [f32]) -> Result<()> {
        self.count(4 * data.len(), || self.inner.sum_f32(data))
    }
    fn sum_f64(&self, data: &mut [f64]) -> Result<()> {
        self.count(8 * data.len(), || self.inner.sum_f64(data))
    }
    fn barrier(&self) -> Result<()> {
        self.count(0, || self.inner.barrier())
    }
}

/// `gru bench`: alone, the standard bench; as one of several ranks, `--train` steps of
/// data-parallel training, each rank on its machine's GPU.
pub fn bench(mut a: BenchArgs) -> Result<u8> {
    let ranks = Ranks::detect()?;
    if ranks.size() == 1 {
        return bench::bench(a);
    }
    a.device.local_rank = ranks.local_rank();
    let run = || {
        if !a.train {
            return Err(GruError::Config(
                "under mpirun, gru bench times data-parallel training only: add --train".into(),
            ));
        }
        let choice = a.device.open_adapter(a.json || !ranks.leader())?;
        bench_train_ranks(&a, &choice, &ranks)
    };
    ranks.finish(run())
}

/// Every rank trains the language model of the flags on its share of global batches of
/// `--batch` rows, for the same number of steps (about `--seconds`, agreed across the
/// ranks); rank 0 prints steps/s, sequences/s and the share of a step spent in sums.
fn bench_train_ranks(a: &BenchArgs, choice: &Choice, ranks: &Ranks) -> Result<u8> {
    let (cfg, params) = language_model(a)?;
    let (v, b, t) = (a.vocab.unwrap_or(113).max(2), a.batch, a.seq_len);
    let n = ranks.size();
    ranks.local_batch(b)?;
    let opts = train_options();
    ranks.agree(|| {
        run_items(
            &cfg,
            &opts,
            &[("--batch", b.to_string()), ("--seq-len", t.to_string())],
        )
    })?;
    let (x, y) = random_tokens(a);
    let batch = Batch::tokens(&x, b, t).classes(&y);
    let (inner, device): (Box<dyn Trainer>, String) = match choice {
        Choice::Gpu(ctx) => (
            Box::new(GpuTrainer::new(ctx.clone(), &params, opts)?),
            adapter_label(ctx),
        ),
        Choice::Cpu => (
            Box::new(CpuTrainer::new(params, opts)?),
            "CPU reference".into(),
        ),
    };
    let timed = Timed {
        inner: ranks.comm(),
        seconds: Cell::new(0.0),
        bytes: Cell::new(0),
    };
    let mut tr = DataParallel::new(inner, &timed);
    // Warm-up, then one timed step; every rank runs the steps the mean of these allows.
    tr.train_step(&batch)?;
    let start = Instant::now();
    tr.train_step(&batch)?;
    let mut one = [start.elapsed().as_secs_f64()];
    timed.sum_f64(&mut one)?;
    let steps = ((a.seconds / (one[0] / n as f64)).ceil() as u64).clamp(2, 1000);
    timed.seconds.set(0.0);
    timed.bytes.set(0);
    let start = Instant::now();
    for _ in 0..steps {
        tr.train_step(&batch)?;
    }
    let s = start.elapsed().as_secs_f64() / steps as f64;
    tr.take_metrics(Split::Train)?;
    let (sums, bytes) = (
        timed.seconds.get() / steps as f64,
        timed.bytes.get() / steps,
    );
    if !ranks.leader() {
        return Ok(0);
    }
    let row = serde_json::json!({
        "ranks": n,
        "device": device,
        "global_batch": b,
        "steps_per_s": 1.0 / s,
        "sequences_per_s": b as f64 / s,
        "tokens_per_s": (b * t) as f64 / s,
        "ms_per_step": s * 1e3,
        "sums_ms_per_step": sums * 1e3,
        "sums_share": sums / s,
        "bytes_summed_per_step": bytes,
        "steps": steps,
    });
    if a.json {
        outln!(
            "{}",
            serde_json::json!({"model": {"vocab": v, "embed": a.embed, "hidden": cfg.hidden_size, "layers": cfg.num_layers, "batch": b, "seq_len": t, "parameters": cfg.param_count()}, "train_ranks": [row]})
        )?;
        return Ok(0);
    }
    outln!(
        "data-parallel training steps of a language model (V {v}, E {}, H {}, {} layer(s), global B {b}, T {t}; {} parameters; Adam, clip-norm 1), rank 0's figures",
        a.embed,
        cfg.hidden_size,
        cfg.num_layers,
        gru_engine::model::group_digits(cfg.param_count())
    )?;
    outln!("| ranks | device (rank 0) | steps/s | sequences/s | tokens/s | ms/step | sums ms/step | sums share | bytes summed/step |")?;
    outln!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
    outln!(
        "| {n} | {device} | {:.2} | {:.1} | {:.0} | {:.2} | {:.2} | {:.1}% | {bytes} |",
        1.0 / s,
        b as f64 / s,
        (b * t) as f64 / s,
        s * 1e3,
        sums * 1e3,
        100.0 * sums / s,
    )?;
    Ok(0)
}
