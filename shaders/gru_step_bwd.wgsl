// gru_step_bwd: backpropagation through time for one layer, one direction or both per
// dispatch (grid z = 2, parts/step_pair.wgsl), as gru_step_fwd. Reset-after
// takes one dispatch per step (T + 1 in all): bwd_gates for the last step, then
// bwd_state_gates per step (d_hs[s], then step s - 1's gate gradients, elementwise),
// bwd_state for step 0. Reset-before takes three per step:
//
//   bwd_gates      per (row b, unit j): from dh = d_hs[s+1] + d_out[t] and the saved
//                  activations, the gate gradients dGx[t] (time order) and dGh[s] (step
//                  order). Reset-before computes only the candidate's here (override
//                  RESET_BEFORE), since r's gradient needs W_hnᵀ da_n first.
//   bwd_state      reset-after, per (row b, state unit k):
//                  d_hs[s] = z * dh + Σ_c dGh[s, c] W_hh[c, k] over all 3H rows c.
//   bwd_candidate  reset-before: d(r*h) = Σ_j da_n[j] W_hn[j, k], then r's and z's gate
//                  gradients for unit k and d_hs[s] = z * dh + d(r*h) * r.
//   bwd_rz         reset-before: d_hs[s] += Σ_c dGh[s, c] W_hh[c, k] over the r, z rows.
//
// d_hs[s] needs the gate gradients of every unit, a dependency across the whole grid, so
// it waits for the next dispatch rather than recomputing them in every workgroup.
// Workgroup: WG units x TB batch rows; dispatch (ceil(H / WG), ceil(B / TB)); the
// matvec entries run WG / UT threads of UT units each. Their loop reads dGh at
// addresses shared by the workgroup (broadcast) and W_hh along k (neighbouring threads,
// neighbouring addresses), with no shared memory or barriers.
// Storage types (prelude aliases): the saved values and states act_t, W_hh wt_t (f16
// in mixed precision, widened on load); every gradient f32.


override RESET_BEFORE: bool = false;

@group(0) @binding(0) var<uniform> sp: StepParams;
@group(0) @binding(1) var<uniform> dims: StepDims;
@group(0) @binding(2) var<storage, read> d_out: array<f32>;        // [T, B, out_stride] time order
@group(0) @binding(3) var<storage, read> saved: array<act_t>;      // [T, B, 4H] step order: r, z, n, extra
@group(0) @binding(4) var<storage, read> hs: array<act_t>;         // [T+1, B, H] step order
@group(0) @binding(5) var<storage, read> w_hh: array<wt_t>;        // [3H, H]
@group(0) @binding(6) var<storage, read> lengths: array<u32>;      // [B]
@group(0) @binding(7) var<storage, read_write> d_hs: array<f32>;   // [T+1, B, H] step order
@group(0) @binding(8) var<storage, read_write> d_gx: array<f32>;   // [T, B, 3H] time order
@group(0) @binding(9) var<storage, read_write> d_gh: array<f32>;   // [T, B, 3H] step order


fn time_of_step() -> u32 {
    return select(sp.time_fwd, sp.time_rev, is_reverse());
}

// dL/dh after step s for row b, unit j: carried from step s+1 plus the output's gradient.
fn dh_total(s: u32, t: u32, b: u32, j: u32) -> f32 {
    let nb = dims.batch;
    return d_hs[at_d_hs() + ((s + 1u) * nb + b) * dims.hidden + j]
        + d_out[(t * nb + b) * dims.out_stride + out_first() + j];
}

fn saved_at(s: u32, b: u32, slot: u32, j: u32) -> f32 {
    return f32(saved[at_saved() + (s * dims.batch + b) * 4u * dims.hidden + slot * dims.hidden + j]);
}

fn h_prev(s: u32, b: u32, j: u32) -> f32 {
    return f32(hs[at_hs() + (s * dims.batch + b) * dims.hidden + j]);
}

// Writes gate slot `g` (0 r, 1 z, 2 n) of dGx[t] and dGh[s] for row b, unit j.
fn store_gate(s: u32, t: u32, b: u32, j: u32, g: u32, gx: f32, gh: f32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    d_gx[at_d_gx() + (t * nb + b) * 3u * nh + g * nh + j] = gx;
    d_gh[at_d_gh() + (s * nb + b) * 3u * nh + g * nh + j] = gh;
}

// state_matvec(k0, b0, s, c0, c1) -> array<f32, UT * TB> comes from the prelude:
// shaders/parts/state_matvec.wgsl, its subgroup form on software adapters, or its split
// form in the GPU builds (which bind W_hhᵀ [H, 3H] as w_hh and read it as such).

// The gate gradients of step s (time t) for row b, unit j: dGx[t] and dGh[s].
fn gates_at(s: u32, t: u32, b: u32, j: u32) {
    if (t >= lengths[b]) {
        // Frozen step: no gate gradients (reset-before clears r, z in bwd_candidate).
        store_gate(s, t, b, j, 2u, 0.0, 0.0);
        if (!RESET_BEFORE) {
            store_gate(s, t, b, j, 0u, 0.0, 0.0);
            store_gate(s, t, b, j, 1u, 0.0, 0.0);
        }
        return;
    }
    let dh = dh_total(s, t, b, j);
    let r = saved_at(s, b, 0u, j);
    let z = saved_at(s, b, 1u, j);
    let n = saved_at(s, b, 2u, j);
    let da_n = dh * (1.0 - z) * (1.0 - n * n);
    if (RESET_BEFORE) {
        store_gate(s, t, b, j, 2u, da_n, da_n);
    } else {
        let hn = saved_at(s, b, 3u, j); // W_hn h + b_hn
        let ga_r = da_n * hn * r * (1.0 - r);
        let ga_z = dh * (h_prev(s, b, j) - n) * z * (1.0 - z);
        store_gate(s, t, b, j, 0u, ga_r, ga_r);
        store_gate(s, t, b, j, 1u, ga_z, ga_z);
        store_gate(s, t, b, j, 2u, da_n, da_n * r);
    }
}

// Gate gradients of step s (time t) for unit j and rows b0 .. b0 + TB.
fn gates_rows(j: u32, b0: u32, s: u32, t: u32) {
    for (var i = 0u; i < TB; i++) {
        let b = b0 + i;
        if (b >= dims.batch) { break; }
        gates_at(s, t, b, j);
    }
}

@compute @workgroup_size(WG)
fn bwd_gates(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let j = wg.x * WG + lx;
    if (j >= dims.hidden) { return; }
    gates_rows(j, wg.y * TB, sp.step, time_of_step());
}

// d_hs[s] = z * dh + Σ_c dGh[s, c] W_hh[c, k] (reset-after) for units k0 + u·(WG / UT)
// and rows b0 .. b0 + TB; with `then_gates`, also the gate gradients of step s - 1
// (time t_prev) for the same rows and units, which need only the d_hs[s] this thread
// has just written: one dispatch per backward step.
fn state_at(k0: u32, b0: u32, s: u32, t: u32, t_prev: u32, then_gates: bool) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let acc = split_reduce(state_matvec(k0, b0, s, 0u, 3u * nh), 0u);
    for (var u = 0u; u < UT; u++) {
        let k = k0 + u * (WG / UT);
        if (k >= nh) { break; }
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            if (b >= nb) { break; }
            if (!owns(u * TB + i)) { continue; }
            let idx = at_d_hs() + (s * nb + b) * nh + k;
            if (t >= lengths[b]) {
                d_hs[idx] = d_hs[idx + nb * nh]; // frozen: dh passes through
            } else {
                d_hs[idx] = dh_total(s, t, b, k) * saved_at(s, b, 1u, k) + total(acc, 0u, u * TB + i);
            }
            if (then_gates && s > 0u) {
                gates_at(s - 1u, t_prev, b, k);
            }
        }
    }
}

fn state_step(wg: vec3<u32>, lane: u32, then_gates: bool) {
    // Time of step s - 1 (only read when s > 0).
    let t_prev = select(sp.time_fwd - 1u, sp.time_rev + 1u, is_reverse());
    state_at(wg.x * WG + lane, wg.y * TB, sp.step, time_of_step(), t_prev, then_gates);
}

@compute @workgroup_size(WG / UT * KS)
fn bwd_state(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    state_step(wg, lane, false);
}

@compute @workgroup_size(WG / UT * KS)
fn bwd_state_gates(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    state_step(wg, lane, true);
}

fn candidate_at(k0: u32, b0: u32, s: u32, t: u32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let d_rh = split_reduce(state_matvec(k0, b0, s, 2u * nh, 3u * nh), 0u);
    for (var u = 0u; u < UT; u++) {
        let k = k0 + u * (WG / UT);
        if (k >= nh) { break; }
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            if (b >= nb) { break; }
            if (!owns(u * TB + i)) { continue; }
            let idx = at_d_hs() + (s * nb + b) * nh + k;
            if (t >= lengths[b]) {
                store_gate(s, t, b, k, 0u, 0.0, 0.0);
                store_gate(s, t, b, k, 1u, 0.0, 0.0);
                d_hs[idx] = d_hs[idx + nb * nh];
                continue;
            }
            let dh = dh_total(s, t, b, k);
            let r = saved_at(s, b, 0u, k);
            let z = saved_at(s, b, 1u, k);
            let n = saved_at(s, b, 2u, k);
            let hp = h_prev(s, b, k);
            let drh = total(d_rh, 0u, u * TB + i);
            let ga_r = drh * hp * r * (1.0 - r);
            let ga_z = dh * (hp - n) * z * (1.0 - z);
            store_gate(s, t, b, k, 0u, ga_r, ga_r);
            store_gate(s, t, b, k, 1u, ga_z, ga_z);
            d_hs[idx] = dh * z + drh * r;
        }
    }
}

@compute @workgroup_size(WG / UT * KS)
fn bwd_candidate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    candidate_at(wg.x * WG + lane, wg.y * TB, sp.step, time_of_step());
}

fn rz_at(k0: u32, b0: u32, s: u32, t: u32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let acc = split_reduce(state_matvec(k0, b0, s, 0u, 2u * nh), 0u);
    for (var u = 0u; u < UT; u++) {
        let k = k0 + u * (WG / UT);
        if (k >= nh) { break; }
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            if (b >= nb) { break; }
            if (!owns(u * TB + i)) { continue; }
            if (t < lengths[b]) { d_hs[at_d_hs() + (s * nb + b) * nh + k] += total(acc, 0u, u * TB + i); }
        }
    }
}

@compute @workgroup_size(WG / UT * KS)
fn bwd_rz(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    rz_at(wg.x * WG + lane, wg.y * TB, sp.step, time_of_step());
}

// The sequence entries (as gru_step_fwd.wgsl's): a chunk of dims.steps backward steps,
// from sp.step down, in one dispatch of grid (1, ceil(B / TB)); each workgroup walks
// every unit block of its rows per step, with a storage barrier between phases.
fn time_at(s: u32) -> u32 {
    return select(s, dims.t_len - 1u - s, is_reverse());
}

// Reset-after: steps sp.step down to 1 (at most dims.steps): d_hs[s] and the gates of
// step s - 1. bwd_gates before (the last step) and bwd_state after (step 0).
@compute @workgroup_size(WG / UT * KS)
fn seq_state_gates(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    let b0 = wg.y * TB;
    let n = min(dims.steps, sp.step);
    for (var i = 0u; i < n; i++) {
        let s = sp.step - i;
        for (var kb = 0u; kb < dims.hidden; kb += WG) {
            state_at(kb + lane, b0, s, time_at(s), time_at(s - 1u), true);
        }
        storageBarrier();
    }
}

// Reset-before: steps sp.step down to 0 (at most dims.steps), each the three phases of
// bwd_gates, bwd_candidate and bwd_rz (built with RESET_BEFORE).
@compute @workgroup_size(WG / UT * KS)
fn seq_before(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    let b0 = wg.y * TB;
    let n = min(dims.steps, sp.step + 1u);
    for (var i = 0u; i < n; i++) {
        let s = sp.step - i;
        let t = time_at(s);
        for (var jb = 0u; jb < dims.hidden; jb += WG / UT) {
            if (k_part == 0u && jb + lane < dims.hidden) { gates_rows(jb + lane, b0, s, t); }
        }
        storageBarrier();
        for (var kb = 0u; kb < dims.hidden; kb += WG) {
            candidate_at(kb + lane, b0, s, t);
        }
        storageBarrier();
        for (var kb = 0u; kb < dims.hidden; kb += WG) {
            rz_at(kb + lane, b0, s, t);
        }
        storageBarrier();
    }
}
