//! A seeded mutation loop over every file loader: checkpoints, safetensors weights,
//! `.npz` archives, `.npy` arrays and CSV files. Each mutated file must give `Ok` or
//! `Err`, never a panic, and never an allocation out of proportion to its size (a
//! counting global allocator measures the peak each load reaches).
//!
//! Cases per loader: `PROPTEST_CASES` (default 3000); the seed: `FUZZ_SEED`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::Ordering;

use gru_engine::checkpoint::Checkpoint;
use gru_engine::interop::{
    from_keras, from_pytorch, read_tensors, to_keras, to_pytorch, write_npz, write_safetensors,
};
use gru_engine::model::{Batch, ModelConfig, ModelParams};
use gru_engine::rng::Rng;
use gru_engine::train::{CpuTrainer, TrainOptions, Trainer};
use gru_engine::{GruConfig, GruWeights};

#[path = "counting/mod.rs"]
mod counting;
use counting::{LIVE, PEAK};

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

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

/// The peak of live bytes `f` allocates above what was live before, and its result.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    counting::peak_during(f)
}

/// A Keras 3 export whose Loop body feeds its candidate through `n` chained `op(a, a)`
/// nodes before the Tanh: expanded as a tree, 2^n copies of the step's forms (a 13 KB
/// file once grew import to 8 GB). Read as shared sub-expressions, the import ends at
/// once, refused (the step is no longer a GRU's), in memory of the file's order.
#[test]
fn size_amplifying_loop_bodies_are_refused_in_bounded_memory() {
    use gru_engine::io::onnx::{read_model, write_model, NodeProto};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.onnx");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let model = read_model(&fixtures.join("keras3_reset_after.onnx")).unwrap();
    for (op, n) in [("Add", 20), ("Mul", 22), ("Add", 60), ("Mul", 150)] {
        let mut m = model.clone();
        let g = m.graph.as_mut().unwrap();
        let lp = g.node.iter_mut().find(|n| n.op_type == "Loop").unwrap();
        let body = lp.attribute[0].g.as_mut().unwrap();
        let at = body.node.iter().position(|n| n.op_type == "Tanh").unwrap();
        let mut v = body.node[at].input[0].clone();
        for k in 0..n {
            let out = format!("amplified_{k}");
            body.node.insert(
                at + k,
                NodeProto {
                    op_type: op.into(),
                    input: vec![v.clone(), v.clone()],
                    output: vec![out.clone()],
                    ..Default::default()
                },
            );
            v = out;
        }
        body.node[at + n].input[0] = v;
        write_model(&file, &m).unwrap();
        let size = std::fs::metadata(&file).unwrap().len() as usize;
        let start = std::time::Instant::now();
        let (r, peak) = peak_of(|| gru_engine::onnx::gru_from_onnx(&file));
        let e = r.unwrap_err().to_string();
        assert!(e.contains("its body is not a GRU step"), "{op} x{n}: {e}");
        assert!(
            peak <= 16 * size + (4 << 20),
            "{op} x{n}: {peak} bytes for a {size}-byte file"
        );
        assert!(
            start.elapsed().as_secs() < 10,
            "{op} x{n}: {:?}",
            start.elapsed()
        );
    }
}

/// A GRU export whose input weights `W` live in an external file of each kind: a
/// regular file and a link to one inside the folder read; a link out of the folder (to
/// /etc/passwd or a sibling folder), a FIFO (without blocking), a folder, an empty
/// location and a sparse file declared as 100 GB are refused, by name, in bounded
/// memory.
#[test]
fn external_data_of_every_file_type() {
    use gru_engine::io::onnx::{read_model, write_model, StringStringEntryProto};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("m.onnx");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let model = read_model(&fixtures.join("torch_1_layer.onnx")).unwrap();
    let want = gru_engine::onnx::gru_from_onnx(&fixtures.join("torch_1_layer.onnx")).unwrap();
    let w = model.graph.as_ref().unwrap().initializer[0].clone();
    std::fs::write(dir.join("w.bin"), &w.raw_data).unwrap();
    std::fs::write(root.path().join("outside.bin"), &w.raw_data).unwrap();
    std::os::unix::fs::symlink(dir.join("w.bin"), dir.join("link_in")).unwrap();
    std::os::unix::fs::symlink(root.path().join("outside.bin"), dir.join("link_out")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    std::fs::create_dir(dir.join("folder")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .is_ok_and(|s| s.success());
    let sparse = std::fs::File::create(dir.join("sparse")).unwrap();
    sparse.set_len(200 << 30).unwrap();
    let with = |location: &str, dims: Option<Vec<i64>>| {
        let mut m = model.clone();
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.raw_data.clear();
        t.data_location = 1;
        t.external_data = vec![StringStringEntryProto {
            key: "location".into(),
            value: location.into(),
        }];
        if let Some(d) = dims {
            t.dims = d;
        }
        write_model(&file, &m).unwrap();
        let (r, peak) = peak_of(|| gru_engine::onnx::gru_from_onnx(&file));
        assert!(peak <= 64 << 20, "{location}: {peak} bytes");
        r
    };
    assert_eq!(with("w.bin", None).unwrap(), want);
    assert_eq!(with("link_in", None).unwrap(), want);
    for (location, why) in [
        ("link_out", "outside the model's folder"),
        ("passwd", "outside the model's folder"),
        ("folder", "not a regular file (a folder)"),
        ("", "empty location"),
        ("../outside.bin", "leaves the model's folder"),
        ("missing.bin", "No such file"),
    ] {
        let e = with(location, None).unwrap_err().to_string();
        assert!(e.contains(why), "{location:?}: {e}");
    }
    if fifo {
        // In a thread: a blocking open would hang the test, not fail it.
        let (tx, rx) = std::sync::mpsc::channel();
        let f = file.clone();
        let m = model.clone();
        std::thread::spawn(move || {
            let mut m = m;
            let t = &mut m.graph.as_mut().unwrap().initializer[0];
            t.raw_data.clear();
            t.data_location = 1;
            t.external_data = vec![StringStringEntryProto {
                key: "location".into(),
                value: "fifo".into(),
            }];
            write_model(&f, &m).unwrap();
            let _ = tx.send(gru_engine::onnx::gru_from_onnx(&f).map_err(|e| e.to_string()));
        });
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a FIFO location blocked the import")
            .unwrap_err();
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
    }
    // 25·2^30 f32 values: 100 GB, which the 200 GB sparse file holds.
    let e = with("sparse", Some(vec![25 << 30]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs") && e.contains("memory"), "{e}");
}
