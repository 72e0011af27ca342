// Overflow-free activations of the forward step (gru_step_fwd.wgsl), generation
// (generate.wgsl) and the binary cross-entropy's gradient (loss.wgsl): no exp ever sees
// a large positive argument, so no result depends on infinities (undefined under the
// fast math Metal compiles with).

fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
    let e = exp(x);
    return e / (1.0 + e);
}

// Some drivers' builtin tanh returns NaN for large |x|.
fn tanh_(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, x >= 0.0);
}
