//! What ranks must agree on before they train together: rank 0's bytes sent to every
//! rank, a run's configuration compared item by item, and data fingerprints.
//!
//! Everything here is built from [`Communicator::sum_f64`] alone, so it works over any
//! communicator: a broadcast is a sum to which only the root contributes non-zero
//! values, which is exact (x + 0 = x for the small non-negative integers sent).

use std::fmt;
use std::hash::Hasher;

use super::comm::Communicator;
use crate::error::{GruError, Result};

/// `bytes` as given on rank `root`, on every rank (the other ranks' `bytes` are ignored).
/// Every rank must call it with the same `root`.
pub fn broadcast_bytes(comm: &dyn Communicator, root: usize, bytes: &[u8]) -> Result<Vec<u8>> {
    let me = comm.rank() == root;
    let mut len = [if me { bytes.len() as f64 } else { 0.0 }];
    comm.sum_f64(&mut len)?;
    let n = len[0] as usize;
    // Six bytes a value: 48 bits are exact in an f64.
    let mut words: Vec<f64> = vec![0.0; n.div_ceil(6)];
    if me {
        for (w, chunk) in words.iter_mut().zip(bytes.chunks(6)) {
            *w = chunk
                .iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | b as u64) as f64;
        }
    }
    comm.sum_f64(&mut words)?;
    let mut out = Vec::with_capacity(n);
    for w in words {
        let mut v = w as u64;
        for _ in 0..6 {
            if out.len() < n {
                out.push(v as u8);
                v >>= 8;
            }
        }
    }
    Ok(out)
}

/// Checks that every rank runs the same configuration: `items` are (name, value) pairs
/// in the same order on every rank (flags, model shape, a data fingerprint, ...). Rank 0's
/// are sent to every rank and compared; where any rank differs, every rank returns the
/// same [`GruError::RanksDisagree`] naming the lowest such rank, the first item that
/// differs and both values. Call it before the first collective of a run, so that no
/// rank reaches a sum of another length or a step the others never take.
///
/// ```
/// use gru_engine::dist::{agree, SingleProcess};
/// agree(&SingleProcess, &[("--hidden", "64".into()), ("--steps", "300".into())]).unwrap();
/// ```
pub fn agree<K: AsRef<str>>(comm: &dyn Communicator, items: &[(K, String)]) -> Result<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    let encode = |items: &[(&str, &str)]| -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in items {
            for s in [k, v] {
                out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    };
    let mine: Vec<(&str, &str)> = items
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_str()))
        .collect();
    let root = decode(&broadcast_bytes(comm, 0, &encode(&mine))?);
    // 1 + the index of this rank's first difference, 0 where it agrees.
    let first_diff = (0..mine.len().max(root.len()))
        .find(|&i| match (mine.get(i), root.get(i)) {
            (Some((k, v)), Some((rk, rv))) => k != rk || v != rv,
            _ => true,
        })
        .map_or(0, |i| i + 1);
    let mut diffs = vec![0.0; comm.size()];
    diffs[comm.rank()] = first_diff as f64;
    comm.sum_f64(&mut diffs)?;
    let Some(rank) = diffs.iter().position(|&d| d > 0.0) else {
        return Ok(());
    };
    let i = diffs[rank] as usize - 1;
    // That rank's name and value of the item, for every rank's message.
    let theirs = decode(&broadcast_bytes(
        comm,
        rank,
        &encode(&mine.get(i).map_or(vec![], |kv| vec![*kv])),
    )?);
    let shown = |v: Option<&(String, String)>| match v {
        Some((_, v)) if v.is_empty() => "empty".to_string(),
        Some((_, v)) => v.clone(),
        None => "missing".to_string(),
    };
    let name = theirs
        .first()
        .or(root.get(i))
        .map_or("configuration", |(k, _)| k.as_str());
    Err(GruError::RanksDisagree(format!(
        "rank {rank}'s {name} is {}, rank 0's is {}: every rank must run the same command on the same data",
        shown(theirs.first()),
        shown(root.get(i).filter(|(k, _)| k == name)),
    )))
}

fn decode(bytes: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let take = |rest: &mut &[u8]| -> Option<String> {
        let n = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
        let s = String::from_utf8_lossy(rest.get(8..8usize.checked_add(n)?)?).into_owned();
        *rest = &rest[8 + n..];
        Some(s)
    };
    while let (Some(k), Some(v)) = (take(&mut rest), take(&mut rest)) {
        out.push((k, v));
    }
    out
}

/// A 64-bit FNV-1a fingerprint of what is written or hashed into it, for comparing data
/// across ranks without sending it: `write!(fp, "{:?}", rows)` hashes a value's debug
/// form without building the string.
///
/// ```
/// use std::fmt::Write;
/// use gru_engine::dist::Fingerprint;
/// let mut a = Fingerprint::default();
/// write!(a, "{:?}", [1, 2, 3]).unwrap();
/// let mut b = Fingerprint::default();
/// b.bytes(b"[1, 2, 3]");
/// assert_eq!(a.to_string(), b.to_string());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// Adds `data`.
    pub fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// The fingerprint so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, data: &[u8]) {
        self.bytes(data)
    }
}

impl fmt::Write for Fingerprint {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::threads::ThreadGroup;

    fn on_ranks<T: Send>(n: usize, f: impl Fn(&ThreadGroup) -> T + Sync) -> Vec<T> {
        std::thread::scope(|s| {
            let hs: Vec<_> = ThreadGroup::new(n)
                .into_iter()
                .map(|r| {
                    let f = &f;
                    s.spawn(move || f(&r))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn broadcast_sends_the_roots_bytes_exactly() {
        let data: Vec<u8> = (0..=255u8).chain([255, 0, 7]).collect();
        for root in 0..3 {
            let got = on_ranks(3, |r| {
                let mine = if r.rank() == root {
                    data.clone()
                } else {
                    vec![9; 4]
                };
                broadcast_bytes(r, root, &mine).unwrap()
            });
            assert!(got.iter().all(|g| *g == data), "root {root}");
        }
    }

    #[test]
    fn disagreeing_ranks_are_named_on_every_rank() {
        let msgs = on_ranks(3, |r| {
            let hidden = if r.rank() == 2 { "64" } else { "8" };
            agree(r, &[("--steps", "10".into()), ("--hidden", hidden.into())])
                .unwrap_err()
                .to_string()
        });
        for m in &msgs {
            assert!(m.contains("rank 2's --hidden is 64, rank 0's is 8"), "{m}");
        }
        assert!(msgs.iter().all(|m| *m == msgs[0]));
        // A missing item is named too; agreeing ranks pass.
        let m = on_ranks(2, |r| {
            let items: Vec<(&str, String)> = if r.rank() == 0 {
                vec![("a", "1".into()), ("b", "2".into())]
            } else {
                vec![("a", "1".into())]
            };
            agree(r, &items).map_err(|e| e.to_string())
        });
        assert!(
            m[1].as_ref()
                .unwrap_err()
                .contains("rank 1's b is missing, rank 0's is 2"),
            "{m:?}"
        );
        assert!(on_ranks(2, |r| agree(r, &[("a", "1".into())]).is_ok())
            .iter()
            .all(|&ok| ok));
    }
}
