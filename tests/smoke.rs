mod common;
use common::*;
use gru_engine::rng::Rng;
use gru_engine::*;

#[test]
fn smoke() {
    let Some(ctx) = gpu() else { return };
    for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
        let cfg = GruConfig::new(3, 5).layers(2).bidirectional(true).variant(variant);
        let w = GruWeights::init(cfg, 1);
        let (t, b) = (4, 3);
        let mut rng = Rng::new(2);
        let x = random(&mut rng, t * b * 3, 1.0);
        let lengths = [4, 2, 3];
        let input = SequenceInput::new(&x, t, b).lengths(&lengths);
        let mut g = GpuGru::new(ctx.clone(), &w).unwrap();
        g.forward(&input).unwrap();
        let out = g.read_output().unwrap();
        let w64 = w.cast::<f64>();
        let x64 = to_f64(&x);
        let c = cpu::forward(&w64, &SequenceInput::new(&x64, t, b).lengths(&lengths)).unwrap();
        assert_close("output", &out, &c.output, 1e-5, 1e-4, "smoke");
        assert_close("h_n", &g.read_h_n().unwrap(), &c.h_n, 1e-5, 1e-4, "smoke");
        let dy = random(&mut rng, out.len(), 1.0);
        let gg = g.backward(&dy, None).unwrap();
        let cg = cpu::backward(&w64, &c, &to_f64(&dy), None).unwrap();
        assert_close("d_input", &gg.d_input, &cg.d_input, 1e-5, 1e-4, "smoke");
        assert_close("d_h0", &gg.d_h0, &cg.d_h0, 1e-5, 1e-4, "smoke");
        for id in gg.d_weights.tensor_ids() {
            assert_close(&id.name(), gg.d_weights.tensor(id), cg.d_weights.tensor(id), 1e-5, 1e-4, "smoke");
        }
    }
}
