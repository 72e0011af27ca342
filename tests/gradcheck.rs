//! Finite-difference checks (f64) of the CPU reference's backward pass: every parameter,
//! the input and h0, for both variants, with per-row lengths, two bidirectional layers.
//!
//! Loss L = Σ output·R1 + Σ h_n·R2 with fixed random R1, R2, so dL/d output = R1 and
//! dL/d h_n = R2. Central differences with eps = 1e-6 have error O(eps²) ≈ 1e-12 plus
//! rounding ≈ 1e-16/eps = 1e-10; the check allows 1e-7 absolute + 1e-6 relative.

use gru_engine::rng::Rng;
use gru_engine::*;

fn randv(rng: &mut Rng, n: usize, s: f64) -> Vec<f64> {
    (0..n).map(|_| (rng.next_f64() * 2.0 - 1.0) * s).collect()
}

struct Problem {
    t: usize,
    b: usize,
    x: Vec<f64>,
    h0: Vec<f64>,
    lengths: Vec<usize>,
    r1: Vec<f64>,
    r2: Vec<f64>,
}

impl Problem {
    fn loss(&self, w: &GruWeights<f64>, x: &[f64], h0: &[f64]) -> f64 {
        let input = SequenceInput::new(x, self.t, self.b)
            .h0(h0)
            .lengths(&self.lengths);
        let f = cpu::forward(w, &input).unwrap();
        let a: f64 = f.output.iter().zip(&self.r1).map(|(o, r)| o * r).sum();
        let b: f64 = f.h_n.iter().zip(&self.r2).map(|(o, r)| o * r).sum();
        a + b
    }
}

#[track_caller]
fn agree(what: &str, analytic: f64, numeric: f64, case: &str) {
    let err = (analytic - numeric).abs();
    assert!(
        err <= 1e-7 + 1e-6 * numeric.abs(),
        "{what} ({case}): analytic {analytic:e} vs finite difference {numeric:e} (|diff| {err:e})"
    );
}

fn gradcheck(cfg: GruConfig, case: &str) {
    let (t, b) = (5, 3);
    let mut rng = Rng::new(21);
    let ld = cfg.num_layers * cfg.num_directions();
    let p = Problem {
        t,
        b,
        x: randv(&mut rng, t * b * cfg.input_size, 1.0),
        h0: randv(&mut rng, ld * b * cfg.hidden_size, 0.5),
        lengths: vec![5, 2, 4],
        r1: randv(&mut rng, t * b * cfg.output_size(), 1.0),
        r2: randv(&mut rng, ld * b * cfg.hidden_size, 1.0),
    };
    let w = GruWeights::init(cfg, 22).cast::<f64>();
    let input = SequenceInput::new(&p.x[..], t, b)
        .h0(&p.h0)
        .lengths(&p.lengths);
    let fwd = cpu::forward(&w, &input).unwrap();
    let g = cpu::backward(&w, &fwd, &p.r1, Some(&p.r2)).unwrap();
    let eps = 1e-6;
    let mut checked = 0;
    for id in w.tensor_ids() {
        for k in 0..w.tensor(id).len() {
            let mut wp = w.clone();
            wp.tensor_mut(id)[k] += eps;
            let mut wm = w.clone();
            wm.tensor_mut(id)[k] -= eps;
            let numeric = (p.loss(&wp, &p.x, &p.h0) - p.loss(&wm, &p.x, &p.h0)) / (2.0 * eps);
            agree(
                &format!("d_{}[{k}]", id.name()),
                g.d_weights.tensor(id)[k],
                numeric,
                case,
            );
            checked += 1;
        }
    }
    for k in 0..p.x.len() {
        let (mut xp, mut xm) = (p.x.clone(), p.x.clone());
        xp[k] += eps;
        xm[k] -= eps;
        let numeric = (p.loss(&w, &xp, &p.h0) - p.loss(&w, &xm, &p.h0)) / (2.0 * eps);
        agree(&format!("d_input[{k}]"), g.d_input[k], numeric, case);
    }
    for k in 0..p.h0.len() {
        let (mut hp, mut hm) = (p.h0.clone(), p.h0.clone());
        hp[k] += eps;
        hm[k] -= eps;
        let numeric = (p.loss(&w, &p.x, &hp) - p.loss(&w, &p.x, &hm)) / (2.0 * eps);
        agree(&format!("d_h0[{k}]"), g.d_h0[k], numeric, case);
    }
    assert_eq!(checked, cfg.param_count(), "every parameter was checked");
    // Rows past their length must get no input gradient.
    let i = cfg.input_size;
    let past = &g.d_input[(2 * b + 1) * i..(2 * b + 2) * i]; // t = 2, row 1 (length 2)
    assert!(
        past.iter().all(|&v| v == 0.0),
        "input past a row's length must have zero gradient"
    );
}

#[test]
fn reset_after_two_bidirectional_layers() {
    gradcheck(
        GruConfig::new(3, 4).layers(2).bidirectional(true),
        "reset-after",
    );
}

#[test]
fn reset_before_two_bidirectional_layers() {
    gradcheck(
        GruConfig::new(3, 4)
            .layers(2)
            .bidirectional(true)
            .variant(GruVariant::ResetBefore),
        "reset-before",
    );
}

#[test]
fn without_bias() {
    gradcheck(GruConfig::new(2, 3).bias(false), "no bias");
}
