// gru_step_fwd: one timestep of one layer, one direction or both (grid z = 2,
// parts/step_pair.wgsl: every index below adds its direction's offset). The input projection
// gx = x W_ihᵀ + b_ih is already computed for all steps (gemm); this kernel does the
// recurrent matmul h W_hhᵀ + b_hh for its tile of units and batch rows, then the gates,
// the candidate and the interpolation, and saves what backward needs.
//
// Workgroup: WG units (j) x TB batch rows; dispatch (ceil(H / WG), ceil(B / TB), dirs).
// Each thread handles UT units for TB rows (3·UT·TB accumulators); per k it reads its
// own 3·UT W_hhᵀ values (neighbouring threads, neighbouring addresses) and TB state
// values shared by the whole workgroup (broadcast), each used for 3·UT FMAs. No shared
// memory and no barriers: on llvmpipe barriers are coroutine switches that cost more
// than the loads a shared tile would save.
// The step index arrives through a dynamic offset into a uniform array written once
// per shape, so no buffer is written between steps.
//
// Storage types (prelude aliases, f32 or f16): gx, states, outputs and saved values
// act_t, W_hh and b_hh wt_t. Loads widen to f32, every sum and gate is f32, stores round.
//
// Entries:
//   step_fused      reset-after: r, z, n and h' in one pass.
//   step_gates      reset-before, phase 1: r, z and r*h (n needs r of every unit).
//   step_candidate  reset-before, phase 2: n = tanh(gx_n + W_hn (r*h) + b_hn) and h'.


@group(0) @binding(0) var<uniform> sp: StepParams;
@group(0) @binding(1) var<uniform> dims: StepDims;
@group(0) @binding(2) var<storage, read> gx: array<act_t>;        // [T, B, 3H] time order, b_ih included
@group(0) @binding(3) var<storage, read> w_t: array<wt_t>;        // [H, 3H] = W_hhᵀ
@group(0) @binding(4) var<storage, read> b_hh: array<wt_t>;       // [3H]
@group(0) @binding(5) var<storage, read> lengths: array<u32>;     // [B]
@group(0) @binding(6) var<storage, read_write> hs: array<act_t>;  // [T+1, B, H] step order
@group(0) @binding(7) var<storage, read_write> out: array<act_t>; // [T, B, out_stride] time order
@group(0) @binding(8) var<storage, read_write> saved: array<act_t>; // [T, B, 4H] step order: r, z, n, extra


// Index u * TB + i: unit u of the thread, batch row b0 + i.
struct Acc { r: array<f32, UT * TB>, z: array<f32, UT * TB>, n: array<f32, UT * TB> }

// sigmoid and tanh_: shaders/parts/activations.wgsl.

fn time_of_step() -> u32 {
    return select(sp.time_fwd, sp.time_rev, is_reverse());
}

// One k of the subgroup recurrent matvec (parts/recurrent_matvec_subgroup.wgsl): the
// gate rows of W_hhᵀ at k (row = k·3H) for units j1, j2, times the TB state values v,
// into acc. Written out for UT = 2: llvmpipe runs loops over a unit index much slower.
// (The plain matvec GPUs run keeps its sums in vec4s instead.)
fn gate_fmas(acc: ptr<function, Acc>, v: array<f32, TB>, row: u32, j1: u32, j2: u32, want_rz: bool, want_n: bool) {
    let nh = dims.hidden;
    if (want_rz) {
        let wr1 = w_at(row + j1);
        let wz1 = w_at(row + nh + j1);
        let wr2 = w_at(row + j2);
        let wz2 = w_at(row + nh + j2);
        for (var i = 0u; i < TB; i++) {
            (*acc).r[i] = fma(wr1, v[i], (*acc).r[i]);
            (*acc).z[i] = fma(wz1, v[i], (*acc).z[i]);
            (*acc).r[TB + i] = fma(wr2, v[i], (*acc).r[TB + i]);
            (*acc).z[TB + i] = fma(wz2, v[i], (*acc).z[TB + i]);
        }
    }
    if (want_n) {
        let wn1 = w_at(row + 2u * nh + j1);
        let wn2 = w_at(row + 2u * nh + j2);
        for (var i = 0u; i < TB; i++) {
            (*acc).n[i] = fma(wn1, v[i], (*acc).n[i]);
            (*acc).n[TB + i] = fma(wn2, v[i], (*acc).n[TB + i]);
        }
    }
}

// w_at(x) = w_t[x] comes from the prelude: shaders/parts/step_w_storage.wgsl, or
// step_w_uniform.wgsl (the "gru_step_fwd_uniform" build).
// recurrent_matvec(j0, b0, s, from_rh, want_rz, want_n) -> Acc comes from the prelude:
// shaders/parts/recurrent_matvec.wgsl, its subgroup form on software adapters, or its
// split form in the GPU builds (which bind W_hh [3H, H] as w_t and read it as such).

// The matvec's sums over the k slices (step_split_*.wgsl; nothing to add unless KS > 1).
// Every gate, asked for or not, so that the barriers stay in uniform control flow.
fn reduce_acc(a: Acc) -> Acc {
    if (KS == 1u) { return a; }
    return Acc(split_reduce(a.r, 0u), split_reduce(a.z, 1u), split_reduce(a.n, 2u));
}

// Row b past its length: state frozen, output zero.
fn freeze(s: u32, t: u32, b: u32, j: u32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    hs[at_hs() + ((s + 1u) * nb + b) * nh + j] = hs[at_hs() + (s * nb + b) * nh + j];
    out[(t * nb + b) * dims.out_stride + out_first() + j] = act_t(0.0);
}

// ... and nothing saved (backward checks the length itself; zeros keep buffers clean).
fn clear_saved(s: u32, b: u32, j: u32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let sv = at_saved() + (s * nb + b) * 4u * nh + j;
    saved[sv] = act_t(0.0);
    saved[sv + nh] = act_t(0.0);
    saved[sv + 2u * nh] = act_t(0.0);
    saved[sv + 3u * nh] = act_t(0.0);
}

fn finish(s: u32, t: u32, b: u32, j: u32, z: f32, n: f32) {
    let nb = dims.batch;
    let nh = dims.hidden;
    let hp = f32(hs[at_hs() + (s * nb + b) * nh + j]);
    let h = (1.0 - z) * n + z * hp;
    hs[at_hs() + ((s + 1u) * nb + b) * nh + j] = act_t(h);
    out[(t * nb + b) * dims.out_stride + out_first() + j] = act_t(h);
}

// One step's work for units j0 + u·(WG / UT) and rows b0 .. b0 + TB, at step s (time
// t). The per-step entries take j0, b0 from the grid and s from the step slot; the
// sequence entries walk every unit block of every step of their chunk.
fn fused_at(j0: u32, b0: u32, s: u32, t: u32) {
    let acc = reduce_acc(recurrent_matvec(j0, b0, s, false, true, true));
    let nb = dims.batch;
    let nh = dims.hidden;
    for (var u = 0u; u < UT; u++) {
        let j = j0 + u * (WG / UT);
        if (j >= nh) { break; }
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            if (b >= nb) { break; }
            if (!owns(u * TB + i)) { continue; }
            if (t >= lengths[b]) { freeze(s, t, b, j); clear_saved(s, b, j); continue; }
            let g = at_gx() + (t * nb + b) * 3u * nh;
            let a = u * TB + i;
            let r = sigmoid(f32(gx[g + j]) + total(acc.r, 0u, a) + f32(b_hh[at_b() + j]));
            let z = sigmoid(f32(gx[g + nh + j]) + total(acc.z, 1u, a) + f32(b_hh[at_b() + nh + j]));
            let hn = total(acc.n, 2u, a) + f32(b_hh[at_b() + 2u * nh + j]);
            let n = tanh_(f32(gx[g + 2u * nh + j]) + r * hn);
            let sv = at_saved() + (s * nb + b) * 4u * nh + j;
            saved[sv] = act_t(r);
            saved[sv + nh] = act_t(z);
            saved[sv + 2u * nh] = act_t(n);
            saved[sv + 3u * nh] = act_t(hn);
            finish(s, t, b, j, z, n);
        }
    }
}

fn gates_phase_at(j0: u32, b0: u32, s: u32, t: u32) {
    let acc = reduce_acc(recurrent_matvec(j0, b0, s, false, true, false));
    let nb = dims.batch;
    let nh = dims.hidden;
    for (var u = 0u; u < UT; u++) {
        let j = j0 + u * (WG / UT);
        if (j >= nh) { break; }
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            if (b >= nb) { break; }
            if (!owns(u * TB + i)) { continue; }
            let sv = at_saved() + (s * nb + b) * 4u * nh + j;
            if (t >= lengths[b]) { clear_saved(s, b, j); continue; }
            let g = at_gx() + (t * nb + b) * 3u * nh;
            let a = u * TB + i;
            let r = sigmoid(f32(gx[g + j]) + total(acc.r, 0u, a) + f32(b_hh[at_b() + j]));
            let z = sigmoid(f32(gx[g + nh + j]) + total(acc.z, 1u, a) + f32(b_hh[at_b() + nh + j]));
            saved[sv] = act_t(r);
            saved[sv + nh] = act_t(z);
            saved[sv + 3u * nh] = act_t(r * f32(hs[at_hs() + (s * nb + b) * nh + j]));
        }
    }
}

fn candidate_phase_at(j0: u32, b0: u32, s: u32, t: u32) {
    let acc = reduce_acc(recurrent_matvec(j0, b0, s, true, false, true));
    let nb = dims.batch;
    let nh = dims.hidden;
    for (var u = 0u; u < UT; u++) {
        let j = j0 + u * (WG / UT);
        if (j >= nh) { break; }
        for (var i = 0u; i < TB; i++) {
            let b = b0 + i;
            if (b >= nb) { break; }
            if (!owns(u * TB + i)) { continue; }
            // Phase 1 already cleared saved; rows of other units still read its r*h slot.
            if (t >= lengths[b]) { freeze(s, t, b, j); continue; }
            let g = at_gx() + (t * nb + b) * 3u * nh;
            let n = tanh_(f32(gx[g + 2u * nh + j]) + total(acc.n, 2u, u * TB + i) + f32(b_hh[at_b() + 2u * nh + j]));
            let sv = at_saved() + (s * nb + b) * 4u * nh + j;
            let z = f32(saved[sv + nh]);
            saved[sv + 2u * nh] = act_t(n);
            finish(s, t, b, j, z, n);
        }
    }
}

@compute @workgroup_size(WG / UT * KS)
fn step_fused(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    fused_at(wg.x * WG + lane, wg.y * TB, sp.step, time_of_step());
}

@compute @workgroup_size(WG / UT * KS)
fn step_gates(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    gates_phase_at(wg.x * WG + lane, wg.y * TB, sp.step, time_of_step());
}

@compute @workgroup_size(WG / UT * KS)
fn step_candidate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    candidate_phase_at(wg.x * WG + lane, wg.y * TB, sp.step, time_of_step());
}

// The sequence entries: steps sp.step .. sp.step + dims.steps - 1 (within the sequence)
// in one dispatch, grid (1, ceil(B / TB)). A workgroup owns its TB rows and walks every
// block of WG units per step; a row's next step reads only its own states, so a storage
// barrier between steps orders them, with no dependency between workgroups. The host
// takes them where they lose no parallelism (H <= WG) or where dispatches cost more
// than the lost parallelism (software adapters), in chunks of steps that keep an
// invocation under llvmpipe's 65535 loop iterations.
fn time_at(s: u32) -> u32 {
    return select(s, dims.t_len - 1u - s, is_reverse());
}

@compute @workgroup_size(WG / UT * KS)
fn seq_fused(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    let b0 = wg.y * TB;
    let s1 = min(sp.step + dims.steps, dims.t_len);
    for (var s = sp.step; s < s1; s++) {
        for (var jb = 0u; jb < dims.hidden; jb += WG) {
            fused_at(jb + lane, b0, s, time_at(s));
        }
        storageBarrier();
    }
}

@compute @workgroup_size(WG / UT * KS)
fn seq_gates_candidate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lx: u32) {
    pair_init(wg.z);
    let lane = split_init(lx);
    let b0 = wg.y * TB;
    let s1 = min(sp.step + dims.steps, dims.t_len);
    for (var s = sp.step; s < s1; s++) {
        for (var jb = 0u; jb < dims.hidden; jb += WG) {
            gates_phase_at(jb + lane, b0, s, time_at(s));
        }
        storageBarrier();
        for (var jb = 0u; jb < dims.hidden; jb += WG) {
            candidate_phase_at(jb + lane, b0, s, time_at(s));
        }
        storageBarrier();
    }
}
