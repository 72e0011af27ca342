//! The folder a training run writes to: chosen and checked before the run is built,
//! created and locked only when it starts, held under an exclusive lock for the whole
//! run, and never emptied first: an old checkpoint is only ever replaced by the atomic
//! write of a new one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use gru_engine::checkpoint::{write_atomic, Checkpoint, CheckpointDir, SavePrecision};
use gru_engine::{GruError, Result};

/// The lock file inside a run folder; it holds the PID of the run that has the lock.
pub const LOCK_FILE: &str = ".lock";

/// The running training loss between evaluations, one row per `--log-every` steps.
pub const TRAIN_LOG: &str = "train_loss.csv";
/// Header of [`TRAIN_LOG`].
pub const TRAIN_LOG_HEADER: &str = "step,epoch,train_loss,train_accuracy";

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str =
    "step,epoch,train_loss,train_accuracy,val_loss,val_accuracy,rate_per_s,elapsed_s";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GruError + '_ {
    move |source| GruError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn holds_checkpoint(d: &Path) -> bool {
    d.join("last.safetensors").exists() || d.join("best.safetensors").exists()
}

/// Takes the run folder's lock without waiting. `Ok(None)` when another process holds
/// it; an error when the folder cannot be written.
fn try_lock(dir: &Path) -> Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| GruError::Io {
            path: format!("{} (the run folder must be writable)", path.display()),
            source,
        })?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    // Ours now: record who holds it, for the message a second run prints.
    f.set_len(0).map_err(io(&path))?;
    write!(f, "{}", std::process::id()).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    Ok(Some(f))
}

/// The lock, or an error naming the folder and the PID that holds it.
fn lock(dir: &Path) -> Result<File> {
    try_lock(dir)?.ok_or_else(|| {
        let pid = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap_or_default();
        let pid = pid.trim();
        GruError::State(format!(
            "{} is in use by another gru run{}; wait for it to finish or pass another --checkpoint-dir",
            dir.display(),
            if pid.is_empty() {
                String::new()
            } else {
                format!(" (PID {pid})")
            }
        ))
    })
}

/// True when process `pid` is alive (Linux: `/proc/<pid>`; elsewhere assumed dead, which
/// is right for files in a folder whose lock we hold).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    cfg!(target_os = "linux") && Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes temporaries (`.<name>.tmp-<pid>`) that a killed run left behind. Only called
/// while holding the folder's lock, so no live writer of this folder can own them.
fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !alive(pid) && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Folders `runs/<base>` and `runs/<base>-N` that hold a checkpoint, newest first (by the
/// time of their last write).
pub fn runs_of(base: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("runs") else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n == base
                || n.strip_prefix(&format!("{base}-"))
                    .is_some_and(|k| k.parse::<u32>().is_ok())
        })
        .map(|e| e.path())
        .filter(|p| holds_checkpoint(p))
        .map(|p| {
            let t = ["last.safetensors", "best.safetensors"]
                .iter()
                .filter_map(|f| std::fs::metadata(p.join(f)).and_then(|m| m.modified()).ok())
                .max()
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    found.sort_by_key(|e| std::cmp::Reverse(e.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// A run folder chosen but not yet started: nothing has been created or changed.
pub struct RunPlan {
    /// The folder; `None` for a default new run, claimed when it starts.
    path: Option<PathBuf>,
    base: String,
    resume: bool,
    /// Held from planning on when the folder exists already (resume, force, explicit).
    lock: Option<File>,
    /// How the run's checkpoints store the parameters.
    precision: SavePrecision,
}

/// A started run: its folder, locked until this is dropped.
pub struct Run {
    pub path: PathBuf,
    pub dir: CheckpointDir,
    _lock: File,
}

impl RunPlan {
    /// Chooses the folder for task `base` and checks it, creating nothing. Explicit: as
    /// given, refused if it holds a checkpoint unless resuming or forced. Default:
    /// `runs/<base>` or the first free `runs/<base>-N` (claimed at start); with
    /// `--resume`, the newest earlier run. An existing folder is locked from here on,
    /// by the process that writes it (`writer`; the other ranks of data-parallel
    /// training only read its checkpoint, and never start it).
    pub fn new(
        explicit: Option<&Path>,
        base: &str,
        (resume, force): (bool, bool),
        writer: bool,
    ) -> Result<Self> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None if resume => Some(runs_of(base).into_iter().next().ok_or_else(|| {
                GruError::Config(format!(
                    "--resume: no earlier run under runs/{base}*; pass --checkpoint-dir"
                ))
            })?),
            None if force => Some(PathBuf::from(format!("runs/{base}"))),
            None => None,
        };
        let mut plan = RunPlan {
            path: path.clone(),
            base: base.into(),
            resume,
            lock: None,
            precision: SavePrecision::F32,
        };
        let Some(p) = path else {
            return Ok(plan);
        };
        if p.exists() {
            if !p.is_dir() {
                return Err(GruError::Config(format!(
                    "--checkpoint-dir {} exists and is not a folder",
                    p.display()
                )));
            }
            if writer {
                plan.lock = Some(lock(&p)?);
            }
            if !resume && !force && holds_checkpoint(&p) {
                return Err(GruError::Config(format!(
                    "{} already holds a checkpoint; pass --resume to continue it, --force to start over, or another --checkpoint-dir",
                    p.display()
                )));
            }
        }
        if resume && !p.join("last.safetensors").exists() {
            return Err(GruError::Config(format!(
                "--resume: {} holds no last.safetensors to continue",
                p.display()
            )));
        }
        Ok(plan)
    }

    /// The checkpoint `--resume` continues from, read under the lock.
    pub fn resume_checkpoint(&self) -> Result<Option<(Checkpoint, PathBuf)>> {
        match (&self.path, self.resume) {
            (Some(p), true) => {
                let file = p.join("last.safetensors");
                Ok(Some((Checkpoint::load(&file)?, file)))
            }
            _ => Ok(None),
        }
    }

    /// The plan with its checkpoints' parameters stored as `precision` says.
    pub fn save_precision(self, precision: SavePrecision) -> Self {
        RunPlan { precision, ..self }
    }

    /// Starts the run, once everything else has been built: creates and locks the
    /// folder (a default one is claimed race-free), removes temporaries of killed runs,
    /// and starts `metrics.csv` afresh unless resuming.
    pub fn start(self) -> Result<Run> {
        let (path, lock) = match (self.path, self.lock) {
            (Some(p), Some(l)) => (p, l),
            (Some(p), None) => {
                std::fs::create_dir_all(&p).map_err(io(&p))?;
                let l = lock(&p)?;
                (p, l)
            }
            (None, _) => claim(&self.base)?,
        };
        remove_stale_temporaries(&path);
        let mut dir = if self.resume {
            CheckpointDir::open(&path)?
        } else {
            // Starting over: earlier files stay until the new run's writes replace them.
            let metrics = path.join("metrics.csv");
            write_atomic(&metrics, format!("{METRICS_HEADER}\n").as_bytes())?;
            let log = path.join(TRAIN_LOG);
            write_atomic(&log, format!("{}\n", TRAIN_LOG_HEADER).as_bytes())?;
            let _ = std::fs::remove_file(path.join("loss.svg"));
            CheckpointDir::fresh(&path)?
        };
        dir.set_precision(self.precision);
        Ok(Run {
            path,
            dir,
            _lock: lock,
        })
    }
}

/// The first of `runs/<base>`, `runs/<base>-2`, ... that holds no checkpoint and whose
/// lock this process gets: two runs started together never pick the same folder.
fn claim(base: &str) -> Result<(PathBuf, File)> {
    std::fs::create_dir_all("runs").map_err(io(Path::new("runs")))?;
    for i in 1u32.. {
        let p = PathBuf::from(if i == 1 {
            format!("runs/{base}")
        } else {
            format!("runs/{base}-{i}")
        });
        match std::fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !p.is_dir() || holds_checkpoint(&p) {
                    continue;
                }
            }
            Err(e) => return Err(io(&p)(e)),
        }
        if let Some(l) = try_lock(&p)? {
            // Checked again under the lock: a run may have finished its first save.
            if !holds_checkpoint(&p) {
                return Ok((p, l));
            }
        }
    }
    Err(GruError::Config(format!(
        "no free folder under runs/{base}-N"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_pid() {
        let d = tempfile::tempdir().unwrap();
        let first = lock(d.path()).unwrap();
        let e = lock(d.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another gru run"), "{e}");
        assert!(e.contains(&format!("PID {}", std::process::id())), "{e}");
        drop(first);
        assert!(lock(d.path()).is_ok());
    }

    #[test]
    fn stale_temporaries_of_dead_processes_go() {
        let d = tempfile::tempdir().unwrap();
        // PID 4194304 is above Linux's pid_max limit, so never alive.
        let dead = d.path().join(".last.safetensors.tmp-4194304");
        let ours = d
            .path()
            .join(format!(".best.safetensors.tmp-{}", std::process::id()));
        let other = d.path().join("notes.tmp-1");
        for p in [&dead, &ours, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(d.path()), 1);
        assert!(!dead.exists() && ours.exists() && other.exists());
    }
}
