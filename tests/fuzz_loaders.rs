//! A seeded mutation loop over every file loader: checkpoints, safetensors weights,
//! `.npz` archives, `.npy` arrays and CSV files. Each mutated file must give `Ok` or
//! `Err`, never a panic, and never an allocation out of proportion to its size (a
//! counting global allocator measures the peak each load reaches).
//!
//! Cases per loader: `PROPTEST_CASES` (default 3000); the seed: `FUZZ_SEED`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use gru_engine::checkpoint::Checkpoint;
use gru_engine::interop::{
    from_keras, from_pytorch, read_tensors, to_keras, to_pytorch, write_npz, write_safetensors,
};
use gru_engine::model::{Batch, ModelConfig, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};
use gru_engine::{GruConfig, GruWeights};

/// Counts live bytes and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new > l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn cases() -> usize {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Numbers a mutation writes into headers: the sizes that break naive loaders.
const NASTY: [&str; 9] = [
    "0",
    "1",
    "3",
    "65536",
    "1073741824",
    "17179869184",
    "9223372036854775807",
    "18446744073709551615",
    "-1",
];

/// One mutation of `seed`: byte flips, truncation, insertion, or a number in the text
/// parts (headers, metadata) replaced by a nasty one.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = 1 + rng.next_u64() % 3;
    for _ in 0..rounds {
        if b.is_empty() {
            b.push(0);
        }
        match rng.next_u64() % 5 {
            0 => {
                for _ in 0..1 + rng.next_u64() % 8 {
                    let i = (rng.next_u64() % b.len() as u64) as usize;
                    b[i] ^= 1 << (rng.next_u64() % 8);
                }
            }
            1 => {
                let n = (rng.next_u64() % (b.len() as u64 + 1)) as usize;
                b.truncate(n);
            }
            2 => {
                let i = (rng.next_u64() % (b.len() as u64 + 1)) as usize;
                let junk: Vec<u8> = (0..1 + rng.next_u64() % 16)
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                b.splice(i..i, junk);
            }
            _ => {
                // A run of ASCII digits somewhere: replace it by a nasty number.
                let starts: Vec<usize> = (0..b.len())
                    .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
                    .collect();
                if starts.is_empty() {
                    continue;
                }
                let s = starts[(rng.next_u64() % starts.len() as u64) as usize];
                let mut e = s;
                while e < b.len() && b[e].is_ascii_digit() {
                    e += 1;
                }
                let n = NASTY[(rng.next_u64() % NASTY.len() as u64) as usize];
                b.splice(s..e, n.bytes());
            }
        }
    }
    b
}

/// Runs `load` on `cases()` mutations of `seed`: no panic, and the peak of live heap
/// bytes during a load stays under `16 x size + 4 MiB`.
/// One loader at a time: the counters are global.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fuzz(name: &str, seed: &[u8], salt: u64, load: &dyn Fn(&[u8])) {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let base = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261123u64);
    let mut rng = Rng::new(base ^ salt);
    let (mut ok_before, mut worst) = (0usize, 0usize);
    // The unmutated seed must load: the loop then tests mutations of a real file.
    load(seed);
    for case in 0..cases() {
        let bytes = mutate(seed, &mut rng);
        let bound = 16 * bytes.len() + (4 << 20);
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let r = catch_unwind(AssertUnwindSafe(|| load(&bytes)));
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        assert!(
            r.is_ok(),
            "{name}: case {case} panicked on {} bytes",
            bytes.len()
        );
        if peak > bound {
            std::fs::write(format!("/tmp/fuzz-{name}-{case}"), &bytes).ok();
        }
        assert!(
            peak <= bound,
            "{name}: case {case} allocated {peak} bytes for a {}-byte file",
            bytes.len()
        );
        worst = worst.max(peak);
        ok_before += 1;
    }
    eprintln!("{name}: {ok_before} mutated files, largest peak {worst} bytes");
}

fn checkpoint_seed() -> Vec<u8> {
    let cfg = ModelConfig::language_model(5, 3, 4).layers(2);
    let params = ModelParams::init(cfg, 1).unwrap();
    let mut t = CpuTrainer::new(params, TrainOptions::adam(1e-2).stateful(true)).unwrap();
    let (x, y) = ([0u32, 1, 2, 3, 4, 0], [1u32, 2, 3, 4, 0, 1]);
    t.train_step(&Batch::tokens(&x, 2, 3).classes(&y)).unwrap();
    let mut c = Checkpoint::from_trainer(&mut t).unwrap();
    c.vocab = Some(["a", "b", "c", "d", "e"].map(String::from).to_vec());
    c.loss = Some(1.5);
    c.rng_state = Some(7);
    c.to_bytes().unwrap()
}

#[test]
fn mutated_checkpoints_never_panic_or_overallocate() {
    let seed = checkpoint_seed();
    fuzz("checkpoint", &seed, 1, &|b| {
        let _ = Checkpoint::from_bytes(b, Path::new("fuzz.safetensors"));
    });
}

fn weights() -> GruWeights {
    GruWeights::init(GruConfig::new(3, 4).layers(2).bidirectional(true), 3)
}

#[test]
fn mutated_weight_files_never_panic_or_overallocate() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("w.safetensors");
    write_safetensors(&st, &to_pytorch(&weights()).unwrap(), Default::default()).unwrap();
    let npz = dir.path().join("w.npz");
    write_npz(&npz, &to_keras(&weights())).unwrap();
    let file = dir.path().join("case");
    for (name, seed, salt) in [
        ("pytorch safetensors", std::fs::read(&st).unwrap(), 2),
        ("keras npz", std::fs::read(&npz).unwrap(), 3),
    ] {
        fuzz(name, &seed, salt, &|b| {
            std::fs::write(&file, b).unwrap();
            if let Ok(t) = read_tensors(&file, true) {
                let _ = from_pytorch(&t, &file);
                let _ = from_keras(&t, &file);
            }
        });
    }
}

#[test]
fn mutated_npy_arrays_never_panic_or_overallocate() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("w.npz");
    let mut t = gru_engine::interop::Tensors::new();
    t.insert(
        "a".into(),
        gru_engine::interop::Tensor {
            shape: vec![3, 4],
            data: (0..12).map(|v| v as f32).collect(),
        },
    );
    write_npz(&npz, &t).unwrap();
    // The archive stores its member uncompressed: the .npy bytes are in it as they are.
    let zip = std::fs::read(&npz).unwrap();
    let at = zip.windows(6).position(|w| w == b"\x93NUMPY").unwrap();
    let hlen = u16::from_le_bytes([zip[at + 8], zip[at + 9]]) as usize;
    let npy = &zip[at..at + 10 + hlen + 48];
    assert!(gru_engine::interop::parse_npy(npy).is_ok());
    fuzz("npy", npy, 4, &|b| {
        let _ = gru_engine::interop::parse_npy(b);
    });
}

#[test]
fn mutated_csv_files_never_panic_or_overallocate() {
    let seed = b"label,text\nspam,\"buy now, cheap\"\nham,see you at 10\nspam,win 1000000\n\
                 ham,\"quoted \"\"inner\"\" text\"\nrising,0.1,0.2,0.3\n";
    fuzz("csv", seed, 5, &|b| {
        if let Ok(rows) = gru_engine::csvdata::records_from_bytes(b, Path::new("fuzz.csv")) {
            for (i, r) in rows.iter().enumerate() {
                for (c, f) in r.iter().enumerate() {
                    let _ = gru_engine::csvdata::number(Path::new("fuzz.csv"), i + 1, c, f);
                }
                let _ = gru_engine::csvdata::all_numeric(r.iter());
            }
        }
    });
}

/// ONNX models: a PyTorch export (GRU nodes behind Slice/Concat/Unsqueeze constants), a
/// tf2onnx export of a Keras 2 bidirectional layer (a GRU node), and a Keras 3 export of a
/// masked Bidirectional layer (two Loops, a ReverseSequence, a Concat).
#[test]
fn mutated_onnx_models_never_panic_or_overallocate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.onnx");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    for (name, salt) in [
        ("torch_3_layers_bidirectional", 6),
        ("keras_bidirectional", 7),
        ("keras3_masked_bidirectional_reset_before", 8),
    ] {
        let seed = std::fs::read(fixtures.join(format!("{name}.onnx"))).unwrap();
        assert!(gru_engine::onnx::gru_from_onnx(&fixtures.join(format!("{name}.onnx"))).is_ok());
        fuzz(&format!("onnx {name}"), &seed, salt, &|b| {
            std::fs::write(&file, b).unwrap();
            let _ = gru_engine::onnx::gru_from_onnx(&file);
        });
    }
}

/// One structural edit of an ONNX graph (the outer graph or a Loop body): an input
/// rewired to another value, an op replaced, an attribute or a tensor dimension set to a
/// nasty number, a node dropped or duplicated with its inputs reversed.
fn edit_graph(m: &mut gru_engine::io::onnx::ModelProto, rng: &mut Rng) {
    const OPS: [&str; 20] = [
        "Identity",
        "Concat",
        "Slice",
        "Split",
        "Transpose",
        "Reshape",
        "Squeeze",
        "Unsqueeze",
        "Add",
        "Mul",
        "Sub",
        "MatMul",
        "Sigmoid",
        "Tanh",
        "Not",
        "Cast",
        "Gather",
        "ReverseSequence",
        "Loop",
        "GRU",
    ];
    const INTS: [i64; 8] = [-1, 0, 1, 2, 3, 1 << 31, i64::MAX, i64::MIN];
    let mut pick = |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    let outer = m.graph.as_mut().unwrap();
    let in_body = pick(2) == 0 && outer.node.iter().any(|n| n.op_type == "Loop");
    let g: &mut gru_engine::io::onnx::GraphProto = if in_body {
        let loops: Vec<usize> = (0..outer.node.len())
            .filter(|&k| outer.node[k].op_type == "Loop")
            .collect();
        let k = loops[pick(loops.len())];
        match outer.node[k]
            .attribute
            .iter_mut()
            .find_map(|a| a.g.as_deref_mut())
        {
            Some(body) => body,
            None => return,
        }
    } else {
        outer
    };
    if g.node.is_empty() {
        return;
    }
    let names: Vec<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.clone())
        .chain(g.initializer.iter().map(|t| t.name.clone()))
        .collect();
    let k = pick(g.node.len());
    match pick(6) {
        0 if !g.node[k].input.is_empty() => {
            let i = pick(g.node[k].input.len());
            g.node[k].input[i] = names[pick(names.len())].clone();
        }
        1 => g.node[k].op_type = OPS[pick(OPS.len())].into(),
        2 if !g.node[k].attribute.is_empty() => {
            let a = pick(g.node[k].attribute.len());
            let v = INTS[pick(INTS.len())];
            let attr = &mut g.node[k].attribute[a];
            attr.i = v;
            if !attr.ints.is_empty() {
                let j = pick(attr.ints.len());
                attr.ints[j] = v;
            }
        }
        3 if !g.initializer.is_empty() => {
            let t = pick(g.initializer.len());
            let dims = &mut g.initializer[t].dims;
            if !dims.is_empty() {
                let j = pick(dims.len());
                dims[j] = INTS[pick(INTS.len())];
            }
        }
        4 => {
            g.node.remove(k);
        }
        _ => {
            let mut n = g.node[k].clone();
            n.input.reverse();
            g.node.insert(k, n);
        }
    }
}

/// Structural edits of real exports (what a crafted file can hold that byte flips rarely
/// reach): no panic, no hang, no allocation out of proportion to the file.
#[test]
fn edited_onnx_graphs_never_panic_or_overallocate() {
    use gru_engine::io::onnx::{read_model, write_model};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.onnx");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    for (name, salt) in [
        ("torch_3_layers_bidirectional", 9),
        ("keras3_masked_bidirectional_reset_before", 10),
        ("keras3_bidirectional_2_layers", 11),
        ("keras_reset_before_2_layers", 12),
    ] {
        let model = read_model(&fixtures.join(format!("{name}.onnx"))).unwrap();
        let base = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20261123u64);
        let mut rng = Rng::new(base ^ salt);
        let mut worst = 0;
        for case in 0..cases() / 3 {
            let mut m = model.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                edit_graph(&mut m, &mut rng);
            }
            write_model(&file, &m).unwrap();
            let size = std::fs::metadata(&file).unwrap().len() as usize;
            let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
            let before = LIVE.load(Ordering::Relaxed);
            PEAK.store(before, Ordering::Relaxed);
            let r = catch_unwind(AssertUnwindSafe(|| gru_engine::onnx::gru_from_onnx(&file)));
            let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
            if r.is_err() || peak > 16 * size + (4 << 20) {
                std::fs::copy(&file, format!("/tmp/fuzz-onnx-{name}-{case}.onnx")).ok();
            }
            assert!(r.is_ok(), "{name}: edit {case} panicked");
            assert!(
                peak <= 16 * size + (4 << 20),
                "{name}: edit {case} allocated {peak} bytes for a {size}-byte file"
            );
            worst = worst.max(peak);
        }
        eprintln!("onnx edits {name}: largest peak {worst} bytes");
    }
}
