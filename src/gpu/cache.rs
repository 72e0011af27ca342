//! Values built once per (T, B) and kept for reuse: the layer's workspaces and the
//! trainer's model plans. The oldest goes when more than `cap` shapes are in use.

use crate::error::Result;

/// Built values by (T, B), at most `cap` of them.
pub(crate) struct ShapeCache<V> {
    cap: usize,
    entries: Vec<((usize, usize), V)>,
}

impl<V> ShapeCache<V> {
    /// An empty cache keeping `cap` shapes (training, evaluation and a last batch,
    /// typically, so 4).
    pub(crate) fn new(cap: usize) -> Self {
        ShapeCache {
            cap: cap.max(1),
            entries: Vec::new(),
        }
    }

    /// The index of (T, B), built with `build` if absent. A build may evict the oldest
    /// entry, which shifts later indices: take indices again after building another.
    pub(crate) fn index(
        &mut self,
        t_len: usize,
        batch: usize,
        build: impl FnOnce() -> Result<V>,
    ) -> Result<usize> {
        match self.position(t_len, batch) {
            Some(i) => Ok(i),
            None => Ok(self.insert(t_len, batch, build()?)),
        }
    }

    /// Where (T, B) is held, if it is.
    pub(crate) fn position(&self, t_len: usize, batch: usize) -> Option<usize> {
        self.entries.iter().position(|(k, _)| *k == (t_len, batch))
    }

    /// Holds `v` for (T, B), evicting the oldest entry when full; its index.
    pub(crate) fn insert(&mut self, t_len: usize, batch: usize, v: V) -> usize {
        if self.entries.len() == self.cap {
            self.entries.remove(0);
        }
        self.entries.push(((t_len, batch), v));
        self.entries.len() - 1
    }

    /// The value of (T, B), if it is still held.
    pub(crate) fn find(&self, t_len: usize, batch: usize) -> Option<&V> {
        self.entries
            .iter()
            .find(|(k, _)| *k == (t_len, batch))
            .map(|(_, v)| v)
    }

    /// The value at index `i` (from [`ShapeCache::index`]).
    pub(crate) fn get(&self, i: usize) -> &V {
        &self.entries[i].1
    }

    /// Drops the value at index `i` (built for another setting); later indices shift.
    pub(crate) fn remove(&mut self, i: usize) {
        self.entries.remove(i);
    }

    /// Drops everything (the values depend on a setting that changed).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_builds_once() {
        let mut c = ShapeCache::new(2);
        let builds = std::cell::Cell::new(0);
        let get = |c: &mut ShapeCache<usize>, t: usize, b: usize| {
            c.index(t, b, || {
                builds.set(builds.get() + 1);
                Ok(t * 10 + b)
            })
            .unwrap()
        };
        let i = get(&mut c, 1, 1);
        assert_eq!(*c.get(i), 11);
        assert_eq!(get(&mut c, 1, 1), i);
        get(&mut c, 2, 1);
        get(&mut c, 3, 1); // evicts (1, 1)
        assert!(c.find(1, 1).is_none());
        let j = get(&mut c, 1, 1);
        assert_eq!(*c.get(j), 11);
        assert_eq!(builds.get(), 4);
    }
}
