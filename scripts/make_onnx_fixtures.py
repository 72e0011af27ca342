#!/usr/bin/env python3
"""Golden ONNX fixtures for tests/onnx_import.rs: GRUs exported by torch.onnx.export (the
TorchScript exporter, which writes ONNX GRU nodes, with `sequence_lens` for packed
sequences), by tf2onnx from Keras 2 (tf_keras: GRU nodes for reset_after=True, a Loop
per layer for reset_after=False) and by Keras 3's own export (a Loop per layer), and ONNX
Runtime's outputs for them.

    pip install torch onnx onnxruntime tensorflow-cpu tf_keras tf2onnx
    python3 scripts/make_onnx_fixtures.py tests/fixtures/onnx

Each case NAME writes NAME.onnx (the export, with the tool versions added to its
metadata_props) and NAME.npz, time-major whatever the exporter's layout: `input`
[T, B, I], `h0` [layers*dirs, B, H], `lengths` [B] (as float32, where the case has
them), and ONNX Runtime's `output` [T, B, dirs*H] and `h_n`.
"""
import os
import subprocess
import sys

# Keras 2 (tf_keras) for tf.keras: tf2onnx's GRU rewriter matches its graphs.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Wrap(torch.nn.Module):
    def __init__(self, gru):
        super().__init__()
        self.gru = gru

    def forward(self, x, h0):
        return self.gru(x, h0)


class Packed(torch.nn.Module):
    """nn.GRU over a PackedSequence: the exporter passes `lengths` as sequence_lens."""

    def __init__(self, gru):
        super().__init__()
        self.gru = gru

    def forward(self, x, lengths, h0):
        y, h = self.gru(pack_padded_sequence(x, lengths), h0)
        return pad_packed_sequence(y, total_length=x.shape[0])[0], h


CASES = [
    # name, input, hidden, layers, bidirectional, bias, dynamo exporter
    ("torch_1_layer", 5, 7, 1, False, True, False),
    ("torch_2_layers", 4, 6, 2, False, True, False),
    ("torch_3_layers_bidirectional", 3, 5, 3, True, True, False),
    ("torch_bidirectional_no_bias", 4, 3, 1, True, False, False),
    ("torch_dynamo_2_layers_bidirectional", 3, 4, 2, True, True, True),
]


def stamp(path, tools):
    """Adds the tool versions to the model's metadata_props."""
    model = onnx.load(path)
    for k, v in tools + [("onnx_version", onnx.__version__),
                         ("onnxruntime_version", ort.__version__)]:
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)
    return sorted({n.op_type for n in model.graph.node})


def run(path, feeds):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def torch_cases(out, rng):
    torch.manual_seed(0)
    tools = [("torch_version", torch.__version__)]
    for name, i, h, layers, bidir, bias, dynamo in CASES:
        gru = torch.nn.GRU(i, h, num_layers=layers, bidirectional=bidir, bias=bias).eval()
        dirs = 2 if bidir else 1
        t, b = 6, 3
        x = rng.uniform(-1, 1, (t, b, i)).astype(np.float32)
        h0 = rng.uniform(-0.5, 0.5, (layers * dirs, b, h)).astype(np.float32)
        path = os.path.join(out, name + ".onnx")
        names = dict(input_names=["input", "h0"], output_names=["output", "h_n"])
        if dynamo:
            # The default exporter since torch 2.9 (torch.export and onnxscript).
            torch.onnx.export(Wrap(gru), (torch.from_numpy(x), torch.from_numpy(h0)), path,
                              dynamo=True, external_data=False, **names)
        else:
            torch.onnx.export(
                Wrap(gru), (torch.from_numpy(x), torch.from_numpy(h0)), path,
                dynamic_axes={"input": {0: "time", 1: "batch"}, "h0": {1: "batch"}},
                opset_version=14, dynamo=False, **names,
            )
        ops = stamp(path, tools)
        y, hn = run(path, {"input": x, "h0": h0})
        with torch.no_grad():
            ty, thn = gru(torch.from_numpy(x), torch.from_numpy(h0))
        gap = max(np.abs(y - ty.numpy()).max(), np.abs(hn - thn.numpy()).max())
        np.savez(os.path.join(out, name + ".npz"), input=x, h0=h0, output=y, h_n=hn)
        print(f"{name}: ops {ops}, ONNX Runtime vs torch {gap:.1e}")

    # Packed sequences (lengths sorted longest first, as pack_padded_sequence wants).
    name, i, h, layers = "torch_packed_lengths_bidirectional", 4, 5, 2
    gru = torch.nn.GRU(i, h, num_layers=layers, bidirectional=True).eval()
    t, b = 7, 4
    x = rng.uniform(-1, 1, (t, b, i)).astype(np.float32)
    lengths = np.array([7, 5, 3, 1], dtype=np.int64)
    h0 = rng.uniform(-0.5, 0.5, (layers * 2, b, h)).astype(np.float32)
    path = os.path.join(out, name + ".onnx")
    args = (torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(h0))
    torch.onnx.export(
        Packed(gru), args, path,
        input_names=["input", "lengths", "h0"], output_names=["output", "h_n"],
        dynamic_axes={"input": {0: "time", 1: "batch"}, "lengths": {0: "batch"},
                      "h0": {1: "batch"}},
        opset_version=14, dynamo=False,
    )
    ops = stamp(path, tools)
    y, hn = run(path, {"input": x, "lengths": lengths, "h0": h0})
    with torch.no_grad():
        ty, thn = Packed(gru)(*args)
    gap = max(np.abs(y - ty.numpy()).max(), np.abs(hn - thn.numpy()).max())
    np.savez(os.path.join(out, name + ".npz"), input=x, h0=h0,
             lengths=lengths.astype(np.float32), output=y, h_n=hn)
    print(f"{name}: ops {ops}, ONNX Runtime vs torch {gap:.1e}")


def keras_cases(out, rng):
    import tensorflow as tf
    import tf2onnx
    import tf_keras as keras

    tools = [("tensorflow_version", tf.__version__), ("tf_keras_version", keras.__version__),
             ("tf2onnx_version", tf2onnx.__version__)]
    i, h, t, b = 4, 5, 6, 3

    def randomize(model):
        # Fresh Keras biases are zeros; random ones make the bias mapping count.
        model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                           for w in model.get_weights()])

    def convert(model, spec, name):
        path = os.path.join(out, name + ".onnx")
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=14, output_path=path)
        return path, stamp(path, tools)

    x = rng.uniform(-1, 1, (b, t, i)).astype(np.float32)
    x_spec = tf.TensorSpec((None, None, i), tf.float32, name="x")
    time_major = x.transpose(1, 0, 2)

    # Two stacked layers, the first from a given initial state: tf2onnx writes GRU nodes
    # for reset_after=True, and a Loop of MatMul/Sigmoid/Tanh ops per layer for False.
    h_first = rng.uniform(-0.5, 0.5, (b, h)).astype(np.float32)
    for name, reset_after in [("keras_2_layers_initial_state", True),
                              ("keras_reset_before_2_layers", False)]:
        xi, hi = keras.Input((None, i), name="x"), keras.Input((h,), name="h0")
        y1, s1 = keras.layers.GRU(h, return_sequences=True, return_state=True,
                                  reset_after=reset_after)(xi, initial_state=hi)
        y2, s2 = keras.layers.GRU(h, return_sequences=True, return_state=True,
                                  reset_after=reset_after)(y1)
        model = keras.Model([xi, hi], [y2, s1, s2])
        randomize(model)
        h_spec = tf.TensorSpec((None, h), tf.float32, name="h0")
        path, ops = convert(model, (x_spec, h_spec), name)
        y, hn1, hn2 = run(path, {"x": x, "h0": h_first})
        ky, k1, k2 = (v.numpy() for v in model([x, h_first]))
        gap = max(np.abs(y - ky).max(), np.abs(hn1 - k1).max(), np.abs(hn2 - k2).max())
        np.savez(os.path.join(out, name + ".npz"), input=time_major,
                 h0=np.stack([h_first, np.zeros_like(h_first)]),
                 output=y.transpose(1, 0, 2), h_n=np.stack([hn1, hn2]))
        print(f"{name}: ops {ops}, ONNX Runtime vs Keras {gap:.1e}")

    # A bidirectional reset_after=True layer (tf2onnx merges the two into one node).
    xi = keras.Input((None, i), name="x")
    y, f, r = keras.layers.Bidirectional(
        keras.layers.GRU(h, return_sequences=True, return_state=True))(xi)
    model = keras.Model(xi, [y, f, r])
    randomize(model)
    name = "keras_bidirectional"
    path, ops = convert(model, (x_spec,), name)
    y, f, r = run(path, {"x": x})
    ky, kf, kr = (v.numpy() for v in model(x))
    gap = max(np.abs(y - ky).max(), np.abs(f - kf).max(), np.abs(r - kr).max())
    np.savez(os.path.join(out, name + ".npz"), input=time_major,
             h0=np.zeros((2, b, h), np.float32), output=y.transpose(1, 0, 2),
             h_n=np.stack([f, r]))
    print(f"{name}: ops {ops}, ONNX Runtime vs Keras {gap:.1e}")


def keras3_cases(out, rng):
    """Keras 3's own ONNX export (model.export, through tf2onnx on the TensorFlow backend):
    every GRU layer is a Loop."""
    import keras
    import tensorflow as tf
    import tf2onnx

    tools = [("keras_version", keras.__version__), ("keras_backend", keras.backend.backend()),
             ("tensorflow_version", tf.__version__), ("tf2onnx_version", tf2onnx.__version__)]
    i, h, t, b = 3, 4, 5, 2
    x = rng.uniform(-1, 1, (b, t, i)).astype(np.float32)

    def export(model, name):
        model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                           for w in model.get_weights()])
        path = os.path.join(out, name + ".onnx")
        model(x)  # Keras exports only models that have been called
        model.export(path, format="onnx", verbose=False)
        return path, stamp(path, tools)

    for name, kwargs in [("keras3_reset_after", {}),
                         ("keras3_reset_before_no_bias", {"reset_after": False,
                                                          "use_bias": False})]:
        xi = keras.Input((None, i), name="x")
        y, s = keras.layers.GRU(h, return_sequences=True, return_state=True, **kwargs)(xi)
        model = keras.Model(xi, [y, s])
        path, ops = export(model, name)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        y, hn = sess.run(None, {sess.get_inputs()[0].name: x})
        ky, ks = (np.asarray(v) for v in model(x))
        gap = max(np.abs(y - ky).max(), np.abs(hn - ks).max())
        np.savez(os.path.join(out, name + ".npz"), input=x.transpose(1, 0, 2),
                 h0=np.zeros((1, b, h), np.float32), output=y.transpose(1, 0, 2),
                 h_n=hn[None])
        print(f"{name}: ops {ops}, ONNX Runtime vs Keras {gap:.1e}")

    # Two stacked Bidirectional layers (a forward Loop and a reversed one each), every
    # direction's final state returned.
    xi = keras.Input((None, i), name="x")
    y1, f1, b1 = keras.layers.Bidirectional(keras.layers.GRU(
        h, return_sequences=True, return_state=True))(xi)
    y2, f2, b2 = keras.layers.Bidirectional(keras.layers.GRU(
        h, return_sequences=True, return_state=True))(y1)
    model = keras.Model(xi, [y2, f1, b1, f2, b2])
    name = "keras3_bidirectional_2_layers"
    path, ops = export(model, name)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y, *states = sess.run(None, {sess.get_inputs()[0].name: x})
    ky, *kstates = (np.asarray(v) for v in model(x))
    gap = max([np.abs(y - ky).max()] + [np.abs(a - k).max() for a, k in zip(states, kstates)])
    np.savez(os.path.join(out, name + ".npz"), input=x.transpose(1, 0, 2),
             h0=np.zeros((4, b, h), np.float32), output=y.transpose(1, 0, 2),
             h_n=np.stack(states))
    print(f"{name}: ops {ops}, ONNX Runtime vs Keras {gap:.1e}")

    # A Bidirectional classifier's layer: only the two final states, concatenated.
    xi = keras.Input((None, i), name="x")
    model = keras.Model(xi, keras.layers.Bidirectional(
        keras.layers.GRU(h, reset_after=False))(xi))
    name = "keras3_bidirectional_last_state"
    path, ops = export(model, name)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (last,) = sess.run(None, {sess.get_inputs()[0].name: x})
    gap = np.abs(last - np.asarray(model(x))).max()
    np.savez(os.path.join(out, name + ".npz"), input=x.transpose(1, 0, 2),
             h0=np.zeros((2, b, h), np.float32), h_n=np.stack([last[:, :h], last[:, h:]]))
    print(f"{name}: ops {ops}, ONNX Runtime vs Keras {gap:.1e}")

    # Masked layers (Masking on zero rows, as Embedding(mask_zero=True) masks padding):
    # the final states equal gru-engine's with per-row lengths.
    lengths = np.array([t, 2], dtype=np.int64)
    xm = x.copy()
    for row, n in enumerate(lengths):
        xm[row, n:] = 0.0
    for name, bidirectional in [("keras3_masked", False),
                                ("keras3_masked_bidirectional_reset_before", True)]:
        xi = keras.Input((None, i), name="x")
        masked = keras.layers.Masking(0.0)(xi)
        # The per-step outputs are returned too (a Bidirectional's concatenation is how
        # its two Loops read as one layer), but only the final states are compared:
        # Keras repeats the last output over masked steps, gru-engine writes zeros.
        if bidirectional:
            y, f, r = keras.layers.Bidirectional(keras.layers.GRU(
                h, return_sequences=True, return_state=True, reset_after=False))(masked)
            model = keras.Model(xi, [y, f, r])
        else:
            y, f = keras.layers.GRU(h, return_sequences=True, return_state=True)(masked)
            model = keras.Model(xi, [y, f])
        path, ops = export(model, name)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        _, *states = sess.run(None, {sess.get_inputs()[0].name: xm})
        _, *kstates = model(xm)
        gap = max(np.abs(a - np.asarray(k)).max() for a, k in zip(states, kstates))
        np.savez(os.path.join(out, name + ".npz"), input=xm.transpose(1, 0, 2),
                 h0=np.zeros((len(states), b, h), np.float32),
                 lengths=lengths.astype(np.float32), h_n=np.stack(states))
        print(f"{name}: ops {ops}, ONNX Runtime vs Keras {gap:.1e}")

    # Refused: a reversed Loop alone, and directions summed instead of concatenated.
    xi = keras.Input((None, i), name="x")
    model = keras.Model(xi, keras.layers.GRU(h, go_backwards=True)(xi))
    print("keras3_go_backwards_refused: ops", export(model, "keras3_go_backwards_refused")[1])
    xi = keras.Input((None, i), name="x")
    model = keras.Model(xi, keras.layers.Bidirectional(
        keras.layers.GRU(h, return_sequences=True), merge_mode="sum")(xi))
    print("keras3_bidirectional_sum_refused: ops",
          export(model, "keras3_bidirectional_sum_refused")[1])


def keras3_torch_case(out):
    """Keras 3 on the torch backend (its own process: the backend is chosen at import):
    model.export unrolls the recurrence, one block of ops per step (refused)."""
    import keras

    tools = [("keras_version", keras.__version__), ("keras_backend", keras.backend.backend()),
             ("torch_version", torch.__version__)]
    xi = keras.Input((5, 3), name="x")
    model = keras.Model(xi, keras.layers.GRU(4)(xi))
    model(np.zeros((2, 5, 3), np.float32))
    path = os.path.join(out, "keras3_torch_unrolled_refused.onnx")
    model.export(path, format="onnx", verbose=False)
    print("keras3_torch_unrolled_refused: ops", stamp(path, tools))


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1)
    torch_cases(out, rng)
    keras_cases(out, rng)
    keras3_cases(out, rng)
    env = dict(os.environ, KERAS_BACKEND="torch")
    subprocess.run([sys.executable, __file__, "--keras3-torch", out], env=env, check=True)
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--keras3-torch"]:
        keras3_torch_case(sys.argv[2])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/onnx")
