// generate: many tokens of a language model in one dispatch of one workgroup. Per token:
// the embedding row of the last token, every GRU layer's step, the dense head and the
// draw (shaders/parts/sample_pick.wgsl), with barriers between the phases, until
// `per_dispatch` tokens are drawn or the count in gen[0] reaches `total`. Between tokens
// nothing leaves the device and no dispatch is launched: on llvmpipe a dispatch costs
// about 100 µs, more than a small model's whole step; on a GPU, a launch per kernel per
// token leaves it idle. One workgroup cannot fill a GPU, so a GPU takes this kernel
// only for models of at most 1 MiB of weights, and a software adapter for models whose
// token keeps a dispatch under llvmpipe's 65535 loop iterations per invocation
// (gpu/ops/generate.rs, fused_route).
//
// weights: every tensor of the model in ModelParams order, each gate block on its own
// 64-value (256-byte) boundary, so a uniform window can start at it: the embedding
// [V, E], per layer W_ih's three gate blocks [H, I], W_hh's [H, H], b_ih [3H], b_hh
// [3H], then the head [C, H] and its bias [C] (`layer_at`; the host's twin is
// GenDims::layout). The row sums of a unit's gates (gates_ih, gates_hh, n_row_hh,
// head_row) come from shaders/parts/generate_w_storage.wgsl, or generate_w_uniform.wgsl
// (the "generate_uniform" build for software adapters).
// state: [L, H] states, carried across dispatches (the prompt's pass writes them
// first), then scratch: new states [H], r·h [H], z [H], the input gates' n row [H], the
// embedded token [E], the logits [C].
// gen: [count, ring of `ring` tokens] (sample.wgsl's): draw n is at gen[1 + n % ring],
// and the last draw is the next input.
// Row sums run in k order from zero and add the bias after, as the CPU reference does.
//
// Storage types (prelude aliases): the weights are wt_t. The f16 build (wt_t and act_t
// f16) reads f16 weights and rounds to f16 what the model's f16 kernels store between
// steps (`keep`): the input gates, each new state, and reset-before's r·h and z, so its
// tokens follow the per-kernel f16 path and the f16 reference. Sums and logits stay f32.


@group(0) @binding(0) var<uniform> gp: GenParams;
@group(0) @binding(1) var<storage, read> weights: array<wt_t>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<storage, read_write> gen: array<u32>;

var<workgroup> wg_count: u32;

fn logit(c: u32) -> f32 {
    return state[gp.layers * gp.hidden + 4u * gp.hidden + gp.embed + c];
}

// What an activation buffer of act_t keeps of x (x itself in the f32 build).
fn keep(x: f32) -> f32 {
    return f32(act_t(x));
}

fn a64(x: u32) -> u32 {
    return (x + 63u) & ~63u;
}

// Where layer l's tensors start when its input has ni values and the layer at `base`.
struct LayerAt { w_ih: u32, w_hh: u32, b_ih: u32, b_hh: u32, next: u32 }

fn layer_at(base: u32, ni: u32) -> LayerAt {
    let nh = gp.hidden;
    let w_hh = base + 3u * a64(nh * ni);
    let b_ih = w_hh + 3u * a64(nh * nh);
    let b_hh = b_ih + a64(3u * nh);
    return LayerAt(base, w_hh, b_ih, b_hh, b_hh + a64(3u * nh));
}

fn bias3(at: u32, j: u32) -> vec3<f32> {
    let nh = gp.hidden;
    return vec3<f32>(w_at(at + j), w_at(at + nh + j), w_at(at + 2u * nh + j));
}

@compute @workgroup_size(WG)
fn generate_tokens(@builtin(local_invocation_index) lid: u32) {
    lane_setup();
    let nh = gp.hidden;
    let ne = gp.embed;
    let nc = gp.cols;
    let hn = gp.layers * nh; // scratch: new states, r·h, z, input n row
    let x0 = hn + 4u * nh;   // the embedded token
    let lg = x0 + ne;        // the logits
    for (var t = 0u; t < gp.per_dispatch; t++) {
        if (lid == 0u) { wg_count = gen[0]; }
        let n = workgroupUniformLoad(&wg_count);
        if (n >= gp.total) { break; }
        let tok = min(gen[1u + (n - 1u) % gp.ring], gp.vocab - 1u);
        for (var e = lid; e < ne; e += WG) { state[x0 + e] = w_at(tok * ne + e); }
        storageBarrier();
        var base = a64(gp.vocab * ne);
        for (var l = 0u; l < gp.layers; l++) {
            let ni = select(nh, ne, l == 0u);
            let src = select((l - 1u) * nh, x0, l == 0u);
            let hl = l * nh;
            let at = layer_at(base, ni);
            base = at.next;
            // Lanes past H compute a clamped unit and store nothing, so every lane of a
            // subgroup takes part in the row sums' shuffles.
            for (var j0 = 0u; j0 < nh; j0 += WG) {
                let j = min(j0 + lid, nh - 1u);
                let si = bias3(at.b_ih, j) + gates_ih(l, at, j, src, ni);
                let gi = vec3<f32>(keep(si.x), keep(si.y), keep(si.z));
                let gh = bias3(at.b_hh, j) + gates_hh(l, at, j, hl);
                let r = sigmoid(gi.x + gh.x);
                let z = sigmoid(gi.y + gh.y);
                let h = state[hl + j];
                if (gp.reset_after == 1u) {
                    let cand = tanh_(gi.z + r * gh.z);
                    if (j0 + lid < nh) { state[hn + j] = keep((1.0 - z) * cand + z * h); }
                } else if (j0 + lid < nh) {
                    // The n row needs r of every unit first: keep what the second
                    // phase needs (gh.z, from h, is not used).
                    state[hn + nh + j] = keep(r * h);
                    state[hn + 2u * nh + j] = keep(z);
                    state[hn + 3u * nh + j] = gi.z;
                }
            }
            storageBarrier();
            if (gp.reset_after == 0u) {
                for (var j0 = 0u; j0 < nh; j0 += WG) {
                    let j = min(j0 + lid, nh - 1u);
                    let ghn = w_at(at.b_hh + 2u * nh + j) + n_row_hh(l, at, j, hn + nh);
                    let cand = tanh_(state[hn + 3u * nh + j] + ghn);
                    let z = state[hn + 2u * nh + j];
                    if (j0 + lid < nh) { state[hn + j] = keep((1.0 - z) * cand + z * state[hl + j]); }
                }
                storageBarrier();
            }
            for (var j = lid; j < nh; j += WG) { state[hl + j] = state[hn + j]; }
            storageBarrier();
        }
        // The dense head on the top layer's new state.
        let top = hn - nh;
        let fc_b = base + a64(nc * nh);
        for (var c0 = 0u; c0 < nc; c0 += WG) {
            let c = min(c0 + lid, nc - 1u);
            let v = w_at(fc_b + c) + head_row(base, c, top);
            if (c0 + lid < nc) { state[lg + c] = v; }
        }
        storageBarrier();
        let pick = sample_pick(lid, nc, gp.top_k, gp.temperature, gp.seed_lo, gp.seed_hi, n);
        if (lid == 0u) {
            gen[1u + n % gp.ring] = pick;
            gen[0] = n + 1u;
        }
        storageBarrier();
    }
}
