// gru_step_bwd: one reverse step of backpropagation through time for one layer and
// direction. From dh (carried gradient + output gradient) and the saved activations it
// writes the gate gradients dGx[t] (time order) and dGh[s] (step order), and
// dh_{s} = z * dh + dGh · W_hh (the state gradient handed to the previous step).
//
// Workgroup: WG state units k x TB batch rows; dispatch (ceil(H / WG), ceil(B / TB)).
// dh_prev[b, k] needs the gate gradients of every unit j, so each workgroup recomputes
// them chunk by chunk (cheap elementwise work) instead of waiting for another dispatch;
// it stores to memory only those of its own units (j = k range).
//
// Entries:
//   bwd_fused      reset-after, one pass.
//   bwd_candidate  reset-before, phase A: d(r*h) = W_hnᵀ da_n, gate gradients, and
//                  dh_prev = z*dh + d(r*h)*r.
//   bwd_rz         reset-before, phase B: dh_prev += W_hrᵀ da_r + W_hzᵀ da_z.

struct StepParams { step: u32, time_fwd: u32, time_rev: u32, _p0: u32 }
struct StepDims {
    batch: u32, hidden: u32, out_stride: u32, out_offset: u32,
    reverse: u32, seq_len: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> sp: StepParams;
@group(0) @binding(1) var<uniform> dims: StepDims;
@group(0) @binding(2) var<storage, read> d_out: array<f32>;        // [T, B, out_stride] time order
@group(0) @binding(3) var<storage, read> saved: array<f32>;        // [T, B, 4H] step order: r, z, n, extra
@group(0) @binding(4) var<storage, read> hs: array<f32>;           // [T+1, B, H] step order
@group(0) @binding(5) var<storage, read> w_hh: array<f32>;         // [3H, H]
@group(0) @binding(6) var<storage, read> lengths: array<u32>;      // [B]
@group(0) @binding(7) var<storage, read_write> d_hs: array<f32>;   // [T+1, B, H] step order
@group(0) @binding(8) var<storage, read_write> d_gx: array<f32>;   // [T, B, 3H] time order
@group(0) @binding(9) var<storage, read_write> d_gh: array<f32>;   // [T, B, 3H] step order

const WG: u32 = 64u;
const TB: u32 = 4u;

var<workgroup> g_tile: array<f32, 768>; // [3][TB][WG] gate gradients of one chunk of units

fn time_of_step() -> u32 {
    return select(sp.time_fwd, sp.time_rev, dims.reverse == 1u);
}

fn valid(t: u32, b: u32, j: u32) -> bool {
    return b < dims.batch && j < dims.hidden && t < lengths[b];
}

// dL/dh after step s for row b, unit j: carried from step s+1 plus the output's gradient.
fn dh_total(s: u32, t: u32, b: u32, j: u32) -> f32 {
    let nb = dims.batch;
    return d_hs[((s + 1u) * nb + b) * dims.hidden + j]
        + d_out[(t * nb + b) * dims.out_stride + dims.out_offset + j];
}

fn saved_at(s: u32, b: u32, slot: u32, j: u32) -> f32 {
    return saved[(s * dims.batch + b) * 4u * dims.hidden + slot * dims.hidden + j];
}

fn h_prev(s: u32, b: u32, j: u32) -> f32 {
    return hs[(s * dims.batch + b) * dims.hidden + j];
}

fn store_gates(s: u32, t: u32, b: u32, j: u32, gx_r: f32, gx_z: f32, gx_n: f32, gh_n: f32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let x = (t * nb + b) * 3u * nh + j;
    d_gx[x] = gx_r;
    d_gx[x + nh] = gx_z;
    d_gx[x + 2u * nh] = gx_n;
    let h = (s * nb + b) * 3u * nh + j;
    d_gh[h] = gx_r;
    d_gh[h + nh] = gx_z;
    d_gh[h + 2u * nh] = gh_n;
}

// Passes dh through a frozen step (row past its length) and clears its gate gradients.
fn pass_through(s: u32, t: u32, b: u32, k: u32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    d_hs[(s * nb + b) * nh + k] = d_hs[((s + 1u) * nb + b) * nh + k];
    store_gates(s, t, b, k, 0.0, 0.0, 0.0, 0.0);
}

@compute @workgroup_size(64)
fn bwd_fused(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let k0_own = wg.x * WG;
    let k = k0_own + lx;
    let b0 = wg.y * TB;
    let s = sp.step;
    let t = time_of_step();
    var acc: array<f32, TB>;
    for (var c0 = 0u; c0 < nh; c0 += WG) {
        let j = c0 + lx;
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            var ga_r = 0.0; var ga_z = 0.0; var ga_nr = 0.0;
            if (valid(t, b, j)) {
                let dh = dh_total(s, t, b, j);
                let r = saved_at(s, b, 0u, j);
                let z = saved_at(s, b, 1u, j);
                let n = saved_at(s, b, 2u, j);
                let hn = saved_at(s, b, 3u, j); // W_hn h + b_hn
                let da_n = dh * (1.0 - z) * (1.0 - n * n);
                ga_z = dh * (h_prev(s, b, j) - n) * z * (1.0 - z);
                ga_r = da_n * hn * r * (1.0 - r);
                ga_nr = da_n * r;
                if (c0 == k0_own) { store_gates(s, t, b, j, ga_r, ga_z, da_n, ga_nr); }
            }
            g_tile[i * WG + lx] = ga_r;
            g_tile[(TB + i) * WG + lx] = ga_z;
            g_tile[(2u * TB + i) * WG + lx] = ga_nr;
        }
        workgroupBarrier();
        if (k < nh) {
            let cend = min(WG, nh - c0);
            for (var jj = 0u; jj < cend; jj++) {
                let w_r = w_hh[(c0 + jj) * nh + k];
                let w_z = w_hh[(nh + c0 + jj) * nh + k];
                let w_n = w_hh[(2u * nh + c0 + jj) * nh + k];
                for (var i = 0u; i < TB; i++) {
                    acc[i] = fma(g_tile[i * WG + jj], w_r, acc[i]);
                    acc[i] = fma(g_tile[(TB + i) * WG + jj], w_z, acc[i]);
                    acc[i] = fma(g_tile[(2u * TB + i) * WG + jj], w_n, acc[i]);
                }
            }
        }
        workgroupBarrier();
    }
    if (k >= nh) { return; }
    for (var i = 0u; i < TB; i++) {
        let b = b0 + i;
        if (b >= nb) { break; }
        if (t >= lengths[b]) { pass_through(s, t, b, k); continue; }
        let dh = dh_total(s, t, b, k);
        d_hs[(s * nb + b) * nh + k] = dh * saved_at(s, b, 1u, k) + acc[i];
    }
}

@compute @workgroup_size(64)
fn bwd_candidate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let k = wg.x * WG + lx;
    let b0 = wg.y * TB;
    let s = sp.step;
    let t = time_of_step();
    var d_rh: array<f32, TB>;
    for (var c0 = 0u; c0 < nh; c0 += WG) {
        let j = c0 + lx;
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            var da_n = 0.0;
            if (valid(t, b, j)) {
                let z = saved_at(s, b, 1u, j);
                let n = saved_at(s, b, 2u, j);
                da_n = dh_total(s, t, b, j) * (1.0 - z) * (1.0 - n * n);
            }
            g_tile[i * WG + lx] = da_n;
        }
        workgroupBarrier();
        if (k < nh) {
            let cend = min(WG, nh - c0);
            for (var jj = 0u; jj < cend; jj++) {
                let w_n = w_hh[(2u * nh + c0 + jj) * nh + k];
                for (var i = 0u; i < TB; i++) {
                    d_rh[i] = fma(g_tile[i * WG + jj], w_n, d_rh[i]);
                }
            }
        }
        workgroupBarrier();
    }
    if (k >= nh) { return; }
    for (var i = 0u; i < TB; i++) {
        let b = b0 + i;
        if (b >= nb) { break; }
        if (t >= lengths[b]) { pass_through(s, t, b, k); continue; }
        let dh = dh_total(s, t, b, k);
        let r = saved_at(s, b, 0u, k);
        let z = saved_at(s, b, 1u, k);
        let n = saved_at(s, b, 2u, k);
        let hp = h_prev(s, b, k);
        let da_n = dh * (1.0 - z) * (1.0 - n * n);
        let ga_r = d_rh[i] * hp * r * (1.0 - r);
        let ga_z = dh * (hp - n) * z * (1.0 - z);
        store_gates(s, t, b, k, ga_r, ga_z, da_n, da_n);
        d_hs[(s * nb + b) * nh + k] = dh * z + d_rh[i] * r;
    }
}

@compute @workgroup_size(64)
fn bwd_rz(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let k = wg.x * WG + lx;
    let b0 = wg.y * TB;
    let s = sp.step;
    let t = time_of_step();
    var acc: array<f32, TB>;
    for (var c0 = 0u; c0 < nh; c0 += WG) {
        let j = c0 + lx;
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            var ga_r = 0.0; var ga_z = 0.0;
            if (b < nb && j < nh) {
                let h = (s * nb + b) * 3u * nh + j;
                ga_r = d_gh[h];
                ga_z = d_gh[h + nh];
            }
            g_tile[i * WG + lx] = ga_r;
            g_tile[(TB + i) * WG + lx] = ga_z;
        }
        workgroupBarrier();
        if (k < nh) {
            let cend = min(WG, nh - c0);
            for (var jj = 0u; jj < cend; jj++) {
                let w_r = w_hh[(c0 + jj) * nh + k];
                let w_z = w_hh[(nh + c0 + jj) * nh + k];
                for (var i = 0u; i < TB; i++) {
                    acc[i] = fma(g_tile[i * WG + jj], w_r, acc[i]);
                    acc[i] = fma(g_tile[(TB + i) * WG + jj], w_z, acc[i]);
                }
            }
        }
        workgroupBarrier();
    }
    if (k >= nh) { return; }
    for (var i = 0u; i < TB; i++) {
        let b = b0 + i;
        if (b >= nb) { break; }
        if (t < lengths[b]) { d_hs[(s * nb + b) * nh + k] += acc[i]; }
    }
}
