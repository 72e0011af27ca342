//! This process's place in data-parallel training: alone, or one rank of a job that
//! `mpirun` or `srun` started (with the `mpi` feature). Rank 0 alone prints, writes
//! metrics and checkpoints; an error on any rank ends every rank.

use std::rc::Rc;

use gru_engine::dist::{agree, Communicator, DataParallel, Fingerprint, Shard, SingleProcess};
use gru_engine::model::ModelConfig;
use gru_engine::train::{TrainOptions, Trainer};
use gru_engine::{GruError, Result};

use crate::cli::report::OutputArgs;

/// The ranks of this run.
pub struct Ranks {
    comm: Rc<dyn Communicator>,
    local_rank: usize,
    /// The same communicator as MPI's, for ending the job.
    #[cfg(feature = "mpi")]
    mpi: Option<Rc<gru_engine::dist::MpiCommunicator>>,
}

/// How many ranks the launcher that started this process says the job has (Open MPI,
/// MPICH/PMI, PMIx, Slurm's srun), if any.
fn launcher_size() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "SLURM_NTASKS",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

impl Ranks {
    /// Joins the MPI job this process belongs to (world size above 1), else trains alone.
    pub fn detect() -> Result<Ranks> {
        let size = launcher_size().unwrap_or(1);
        if size <= 1 {
            return Ok(Ranks::alone());
        }
        Self::join(size)
    }

    fn alone() -> Ranks {
        Ranks {
            comm: Rc::new(SingleProcess),
            local_rank: 0,
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    #[cfg(feature = "mpi")]
    fn join(_: usize) -> Result<Ranks> {
        let mpi = Rc::new(gru_engine::dist::MpiCommunicator::init()?);
        Ok(Ranks {
            comm: mpi.clone(),
            local_rank: mpi.local_rank(),
            mpi: Some(mpi),
        })
    }

    #[cfg(not(feature = "mpi"))]
    fn join(size: usize) -> Result<Ranks> {
        Err(GruError::Config(format!(
            "started as one of {size} ranks (mpirun or srun), but this gru was built without the `mpi` feature: build it with `cargo install --path . --features mpi`"
        )))
    }

    pub fn comm(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }

    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// Rank 0: the one that prints and writes.
    pub fn leader(&self) -> bool {
        self.comm.rank() == 0
    }

    /// Which of this machine's GPUs the rank takes.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// `trainer` as this rank's share of data-parallel training (itself when alone).
    pub fn wrap<'a>(&'a self, trainer: Box<dyn Trainer>) -> Box<dyn Trainer + 'a> {
        if self.size() == 1 {
            trainer
        } else {
            Box::new(DataParallel::new(trainer, self.comm()))
        }
    }

    /// This rank's output flags: rank 0's as given, the others' silent.
    pub fn output(&self, out: &OutputArgs) -> OutputArgs {
        let mut out = out.clone();
        if !self.leader() {
            (out.quiet, out.json) = (true, false);
        }
        out
    }

    /// The rows of each global batch of `--batch` rows this rank trains on, or an error
    /// when they do not divide over the ranks.
    pub fn local_batch(&self, batch: usize) -> Result<usize> {
        let n = self.size();
        Shard::of(batch, self.comm.rank(), n)
            .ok()
            .filter(|_| batch.is_multiple_of(n))
            .map(|s| s.rows)
            .ok_or_else(|| {
                GruError::Config(format!(
                    "--batch {batch} over {n} ranks: expected a multiple of {n} (each rank trains an equal share of every batch)"
                ))
            })
    }

    /// An error when an epoch of `rows` training `what` (rows, windows) in batches of
    /// `batch` leaves a last batch with fewer rows than there are ranks.
    pub fn check_last_batch(&self, rows: usize, batch: usize, what: &str) -> Result<()> {
        let last = rows % batch;
        if last > 0 && last < self.size() {
            return Err(GruError::Config(format!(
                "{rows} training {what} in batches of --batch {batch} leave a last batch of {last}, fewer than the {} ranks: choose another --batch",
                self.size()
            )));
        }
        Ok(())
    }

    /// Whether `flag` is set on any rank (so that every rank stops at the same step).
    pub fn any(&self, flag: bool) -> Result<bool> {
        if self.size() == 1 {
            return Ok(flag);
        }
        let mut v = [flag as u8 as f64];
        self.comm.sum_f64(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// The end of a run on this rank. Alone, an error goes back to the caller (one line,
    /// non-zero exit). In a job, an error every rank shares (the ranks disagree) is
    /// printed by rank 0 alone and every rank exits 1 by itself; any other error is
    /// printed with the rank, and every rank is ended, so none waits for this one in a
    /// sum.
    pub fn finish(&self, result: Result<u8>) -> Result<u8> {
        let e = match result {
            Ok(code) => return Ok(code),
            Err(e) => e,
        };
        if self.size() == 1 {
            return Err(e);
        }
        if matches!(e, GruError::RanksDisagree(_)) {
            return if self.leader() { Err(e) } else { Ok(1) };
        }
        eprintln!("rank {}: error: {e}", self.comm.rank());
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            mpi.abort(1)
        }
        Err(e)
    }

    /// Checks that every rank runs the same configuration ([`agree`]): `items` are the
    /// run's flags, model shape and data fingerprints, by name.
    /// `items` is called only in a job of several ranks: alone, nothing is compared.
    pub fn agree(&self, items: impl FnOnce() -> Vec<(String, String)>) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        agree(self.comm(), &items())
    }
}

/// The items of a training run that ranks compare ([`Ranks::agree`]): every field of the
/// model's shape and of the training options, then `more` (flags and data fingerprints).
pub fn run_items(
    cfg: &ModelConfig,
    opts: &TrainOptions,
    more: &[(&str, String)],
) -> Vec<(String, String)> {
    // The flags and data first: they name the cause (a vocabulary of another text) before
    // its effect (another model input).
    let mut items: Vec<(String, String)> = more
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for (what, v) in [
        ("model", serde_json::to_value(cfg)),
        ("option", serde_json::to_value(opts)),
    ] {
        if let Ok(serde_json::Value::Object(m)) = v {
            items.extend(
                m.into_iter()
                    .map(|(k, v)| (format!("{what} {k}"), v.to_string())),
            );
        }
    }
    items
}

/// A fingerprint of `bytes`.
pub fn fingerprint_bytes(bytes: &[u8]) -> String {
    let mut f = Fingerprint::default();
    f.bytes(bytes);
    f.to_string()
}

/// A fingerprint of `value`'s debug form: equal data on every rank gives equal text.
pub fn fingerprint(value: &impl std::fmt::Debug) -> String {
    use std::fmt::Write;
    let mut f = Fingerprint::default();
    let _ = write!(f, "{value:?}");
    f.to_string()
}
