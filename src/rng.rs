//! A small seeded generator (SplitMix64), so runs repeat exactly without a dependency.

/// Deterministic pseudo-random numbers from a 64-bit seed.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }
    /// The generator's state: `Rng::new(r.state())` continues exactly where `r` is.
    pub fn state(&self) -> u64 {
        self.state
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Shuffles `v` in place (Fisher-Yates from the back).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next_u64() % (i as u64 + 1)) as usize);
        }
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f64() as f32
    }
    /// `n` values uniform in [lo, hi).
    pub fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

impl Rng {
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// The integer hash of dropout.wgsl and sample.wgsl (PCG output function).
pub(crate) fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277_803_737);
    (w >> 22) ^ w
}

/// Dropout mask of dropout.wgsl: element `i` of site `site` survives step seed `seed`.
pub(crate) fn dropout_keeps(seed: u32, site: u32, i: u32, threshold: u32) -> bool {
    pcg(i ^ pcg(seed ^ pcg(site))) >= threshold
}

/// (threshold, scale) of a dropout rate: keep when hash >= threshold, scale 1/(1-p).
pub(crate) fn dropout_threshold(p: f32) -> (u32, f32) {
    if p <= 0.0 {
        return (0, 1.0);
    }
    let t = (p as f64 * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
    (t, 1.0 / (1.0 - p))
}
