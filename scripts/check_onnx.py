#!/usr/bin/env python3
"""Runs gru-engine's ONNX exports in ONNX Runtime and prints the largest difference from
gru-engine's own predictions.

    cargo run --release --example onnx_cases -- /tmp/onnx_cases
    python3 scripts/check_onnx.py /tmp/onnx_cases

Each case is NAME.onnx (the export), NAME.inputs.npz (the graph's inputs as f32: token
ids and lengths are whole numbers, cast here to the graph's int64/int32) and
NAME.expected.npz (gru-engine's CPU reference: `logits`, or `output` and `h_n` for the GRU
stack alone, compared by name). A model with initial-state
inputs `h0_l<k>` (a stateful export) runs in two chunks of time: the first from zeros, the
second from the first's `h_n_l<k>`. Every model is also checked with onnx.checker. Exits non-zero past 1e-5 (relative to max(1, |value|)).
"""
import glob
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

TYPES = {"tokens": np.int64, "lengths": np.int32, "features": np.float32,
         "input": np.float32, "h0": np.float32}


def chunked(sess, inputs, states):
    """Per-step logits of a stateful export over two chunks of the time axis, each layer's
    final state fed back as the next chunk's initial state."""
    first = next(iter(inputs.values()))
    batch, steps = first.shape[0], first.shape[1]
    h = {s.name: np.zeros((s.shape[0], batch, s.shape[2]), np.float32) for s in states}
    outs = []
    for part in (slice(0, steps // 2), slice(steps // 2, steps)):
        feeds = {k: v[:, part] if v.ndim > 1 else v for k, v in inputs.items()}
        feeds.update(h)
        names = ["logits"] + [s.name.replace("h0_l", "h_n_l") for s in states]
        logits, *finals = sess.run(names, feeds)
        h = {s.name: f for s, f in zip(states, finals)}
        outs.append(logits)
    return outs


def main(folder):
    worst = 0.0
    cases = sorted(glob.glob(os.path.join(folder, "*.onnx")))
    if not cases:
        sys.exit(f"no .onnx files in {folder}")
    for path in cases:
        name = path[: -len(".onnx")]
        onnx.checker.check_model(onnx.load(path), full_check=True)
        inputs = {k: v.astype(TYPES[k]) for k, v in np.load(name + ".inputs.npz").items()}
        expected = dict(np.load(name + ".expected.npz"))
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        states = [i for i in sess.get_inputs() if i.name.startswith("h0_l")]
        if states:
            got = {"logits": np.concatenate(chunked(sess, inputs, states), axis=1)}
        else:
            got = dict(zip(expected, sess.run(list(expected), inputs)))
        diff = max(float(np.max(np.abs(got[k].reshape(w.shape) - w) / np.maximum(1.0, np.abs(w))))
                   for k, w in expected.items())
        print(f"{os.path.basename(name)}: largest difference {diff:.2e}")
        worst = max(worst, diff)
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}: "
          f"largest difference over {len(cases)} models {worst:.2e}")
    sys.exit(0 if worst <= 1e-5 else 1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/onnx_cases")
