// One value's optimiser step, PyTorch semantics, given its gradient g (already scaled by
// the clip factor and clamped) and the step's hyperparameters s. The dense update
// (optimizer.wgsl) and the embedding's catch-up (embed_update.wgsl, g = 0 for the steps
// a row sat out) both call these, so a row that skipped steps ends where the dense
// update would have put it, with the same operations in the same order.
//   sgd:  g += wd p; m = momentum m + g; p -= lr m           (torch.optim.SGD)
//   adam: Adam (L2 weight decay added to g) or, with `decoupled`, AdamW (p *= 1 - lr wd)

// (p, m) after one SGD step; m is left as it was without momentum.
fn sgd_rule(g0: f32, p: f32, m: f32, s: TrainStep) -> vec2<f32> {
    let g = g0 + s.weight_decay * p;
    var d = g;
    var m1 = m;
    if (s.momentum > 0.0) {
        d = s.momentum * m + g;
        m1 = d;
    }
    return vec2<f32>(p - s.lr * d, m1);
}

// (p, m, v) after one Adam or AdamW step.
fn adam_rule(g0: f32, p: f32, m: f32, v: f32, s: TrainStep) -> vec3<f32> {
    var g = g0;
    var w = p;
    if (s.decoupled != 0u) {
        w = w * (1.0 - s.lr * s.weight_decay);
    } else {
        g = g + s.weight_decay * w;
    }
    let mi = s.beta1 * m + (1.0 - s.beta1) * g;
    let vi = s.beta2 * v + (1.0 - s.beta2) * g * g;
    return vec3<f32>(w - s.lr * (mi / s.bc1) / (sqrt(vi / s.bc2) + s.eps), mi, vi);
}
