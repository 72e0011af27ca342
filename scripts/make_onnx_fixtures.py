#!/usr/bin/env python3
"""Golden ONNX fixtures for tests/onnx_import.rs: GRUs exported by torch.onnx.export (the
TorchScript exporter, which writes ONNX GRU nodes) and ONNX Runtime's outputs for them.

    python3 scripts/make_onnx_fixtures.py tests/fixtures/onnx

Each case NAME writes NAME.onnx (the export, with the tool versions added to its
metadata_props) and NAME.npz: `input` [T, B, I], `h0` [layers*dirs, B, H], and ONNX
Runtime's `output` [T, B, dirs*H] and `h_n`.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch


class Wrap(torch.nn.Module):
    def __init__(self, gru):
        super().__init__()
        self.gru = gru

    def forward(self, x, h0):
        return self.gru(x, h0)


CASES = [
    # name, input, hidden, layers, bidirectional, bias
    ("torch_1_layer", 5, 7, 1, False, True),
    ("torch_2_layers", 4, 6, 2, False, True),
    ("torch_3_layers_bidirectional", 3, 5, 3, True, True),
    ("torch_bidirectional_no_bias", 4, 3, 1, True, False),
]


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    for name, i, h, layers, bidir, bias in CASES:
        gru = torch.nn.GRU(i, h, num_layers=layers, bidirectional=bidir, bias=bias).eval()
        dirs = 2 if bidir else 1
        t, b = 6, 3
        x = rng.uniform(-1, 1, (t, b, i)).astype(np.float32)
        h0 = rng.uniform(-0.5, 0.5, (layers * dirs, b, h)).astype(np.float32)
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(
            Wrap(gru), (torch.from_numpy(x), torch.from_numpy(h0)), path,
            input_names=["input", "h0"], output_names=["output", "h_n"],
            dynamic_axes={"input": {0: "time", 1: "batch"}, "h0": {1: "batch"}},
            opset_version=14, dynamo=False,
        )
        model = onnx.load(path)
        for k, v in [("torch_version", torch.__version__), ("onnx_version", onnx.__version__),
                     ("onnxruntime_version", ort.__version__)]:
            model.metadata_props.add(key=k, value=v)
        onnx.save(model, path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        y, hn = sess.run(["output", "h_n"], {"input": x, "h0": h0})
        with torch.no_grad():
            ty, thn = gru(torch.from_numpy(x), torch.from_numpy(h0))
        gap = max(np.abs(y - ty.numpy()).max(), np.abs(hn - thn.numpy()).max())
        np.savez(os.path.join(out, name + ".npz"), input=x, h0=h0, output=y, h_n=hn)
        ops = sorted({n.op_type for n in model.graph.node})
        print(f"{name}: ops {ops}, ONNX Runtime vs torch {gap:.1e}")
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/onnx")
