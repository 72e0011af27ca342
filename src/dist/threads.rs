//! Ranks as threads of one process, summing through shared memory in rank order.

use std::sync::{Arc, Barrier, Mutex};

use super::comm::Communicator;
use crate::error::{GruError, Result};

/// One rank of a group of threads that train together (one device each, or the CPU
/// reference): [`ThreadGroup::new`] gives one handle per rank, to move into its thread.
/// Sums add the ranks' values in rank order, so every rank gets bit-identical results.
///
/// ```
/// use gru_engine::dist::{Communicator, ThreadGroup};
/// let sums: Vec<f32> = std::thread::scope(|s| {
///     let handles: Vec<_> = ThreadGroup::new(3)
///         .into_iter()
///         .map(|rank| s.spawn(move || {
///             let mut v = [rank.rank() as f32 + 1.0];
///             rank.sum_f32(&mut v).unwrap();
///             v[0]
///         }))
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert_eq!(sums, [6.0, 6.0, 6.0]);
/// ```
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    barrier: Barrier,
    /// Each rank's contribution to the sum in progress, as f64 (f32 values convert
    /// exactly; the f32 sum is rounded once per addition, in rank order).
    slots: Mutex<Vec<Vec<f64>>>,
}

impl ThreadGroup {
    /// Handles for ranks 0 .. size.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            size,
            barrier: Barrier::new(size.max(1)),
            slots: Mutex::new(vec![Vec::new(); size]),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank's `data`, once all have arrived; `data` is replaced by `add` folded
    /// over them in rank order.
    fn exchange(
        &self,
        data: Vec<f64>,
        mut add: impl FnMut(&[Vec<f64>]) -> Vec<f64>,
    ) -> Result<Vec<f64>> {
        let lock = || {
            self.shared
                .slots
                .lock()
                .map_err(|_| GruError::State("a rank of the thread group panicked".into()))
        };
        let len = data.len();
        lock()?[self.rank] = data;
        self.shared.barrier.wait();
        let out = {
            let slots = lock()?;
            if let Some(r) = slots.iter().position(|s| s.len() != len) {
                return Err(GruError::RanksDisagree(format!(
                    "rank {r} summed {} values where rank {} summed {len}: every rank must make the same calls",
                    slots[r].len(),
                    self.rank
                )));
            }
            add(&slots)
        };
        // Nobody overwrites a slot before every rank has read them all.
        self.shared.barrier.wait();
        Ok(out)
    }
}

impl Communicator for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn sum_f32(&self, data: &mut [f32]) -> Result<()> {
        let mine = data.iter().map(|&v| v as f64).collect();
        let sum = self.exchange(mine, |all| {
            (0..all[0].len())
                .map(|i| all.iter().fold(0.0f32, |acc, s| acc + s[i] as f32) as f64)
                .collect()
        })?;
        for (d, s) in data.iter_mut().zip(sum) {
            *d = s as f32;
        }
        Ok(())
    }
    fn sum_f64(&self, data: &mut [f64]) -> Result<()> {
        let sum = self.exchange(data.to_vec(), |all| {
            (0..all[0].len())
                .map(|i| all.iter().fold(0.0f64, |acc, s| acc + s[i]))
                .collect()
        })?;
        data.copy_from_slice(&sum);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.shared.barrier.wait();
        Ok(())
    }
}
