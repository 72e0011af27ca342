//! Host memory: what this process can still allocate, fallible allocation, and sizes in
//! words. Sizes from users and files go through here, so an impossible one is an error
//! naming the sizes instead of an abort.

use crate::error::{GruError, Result};

/// Refuses to allocate `bytes` of host memory for `what` when the process cannot get
/// them (see [`available_host_memory`]).
pub fn check_host_bytes(what: &str, bytes: u64, hint: &str) -> Result<()> {
    match available_host_memory() {
        Some(avail) if bytes > avail => Err(GruError::HostMemory {
            what: what.into(),
            needed: approx_bytes(bytes),
            available: human_bytes(avail),
            hint: hint.into(),
        }),
        _ => Ok(()),
    }
}

/// The error for a failed allocation of `n` values of `T` for `what`.
fn alloc_error<T>(n: usize, what: &str) -> GruError {
    GruError::HostMemory {
        what: what.into(),
        needed: approx_bytes((n as u64).saturating_mul(std::mem::size_of::<T>() as u64)),
        available: available_host_memory().map_or("less".into(), human_bytes),
        hint: "use smaller sizes".into(),
    }
}

/// An empty vector with room for `n` values, or an error naming `what` when the
/// allocation fails (instead of aborting the process).
pub fn try_with_capacity<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| alloc_error::<T>(n, what))?;
    Ok(v)
}

/// A vector of `n` default values, or an error naming `what` when the allocation fails.
pub fn try_vec<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n, what)?;
    v.resize(n, T::default());
    Ok(v)
}

/// Bytes this process can still allocate: the least of the system's available memory,
/// the cgroup's remaining allowance and the address-space limit (`ulimit -v`) less what
/// is mapped already. `None` where none of these can be read (not Linux).
pub fn available_host_memory() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let kib_field = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    let mut limits: Vec<u64> = Vec::new();
    if let Some(m) = read("/proc/meminfo").and_then(|t| kib_field(&t, "MemAvailable:")) {
        limits.push(m);
    }
    // cgroup v2: memory.max ("max" when unlimited) less memory.current.
    if let (Some(max), Some(cur)) = (
        read("/sys/fs/cgroup/memory.max").and_then(|s| s.trim().parse::<u64>().ok()),
        read("/sys/fs/cgroup/memory.current").and_then(|s| s.trim().parse::<u64>().ok()),
    ) {
        limits.push(max.saturating_sub(cur));
    }
    // ulimit -v: the soft address-space limit less the current virtual size.
    if let Some(lim) = read("/proc/self/limits").and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("Max address space"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok())
    }) {
        let used = read("/proc/self/status")
            .and_then(|t| kib_field(&t, "VmSize:"))
            .unwrap_or(0);
        limits.push(lim.saturating_sub(used));
    }
    limits.into_iter().min()
}

/// "about 1.5 GiB", or "more than 16 EiB" for a saturated figure.
pub(crate) fn approx_bytes(bytes: u64) -> String {
    if bytes == u64::MAX {
        "more than 16 EiB".into()
    } else {
        format!("about {}", human_bytes(bytes))
    }
}

/// `bytes` as "1.5 GiB", "12 MiB", "300 B".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes == u64::MAX {
        return "16 EiB".into();
    }
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(300), "300 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(120_000_000_000), "112 GiB");
    }

    #[test]
    fn try_vec_fails_cleanly() {
        assert!(try_vec::<f32>(usize::MAX / 2, "huge").is_err());
        assert_eq!(try_vec::<f32>(3, "small").unwrap(), vec![0.0; 3]);
    }
}
