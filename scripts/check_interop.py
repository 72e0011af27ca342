#!/usr/bin/env python3
"""Round trips through the `gru` binary with the real frameworks (not run in CI).

1. An nn.GRU inside a module (prefix `rnn.`) saved as safetensors runs with
   `gru forward` and gives PyTorch's output and h_n.
2. `gru convert --to pytorch` of that file loads into a fresh nn.GRU with
   load_state_dict(strict=True) and gives the same outputs.
3. A Keras GRU (reset_after=False, bidirectional) saved as .npz runs with
   `gru forward --format keras` and gives Keras' outputs; `gru convert --to keras` of the
   PyTorch file loads into Keras layers with set_weights and matches PyTorch.

Exits 1 when any difference exceeds BOUND (1e-5).

    cargo build --release && KERAS_BACKEND=torch python3 scripts/check_interop.py
"""

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

GRU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "gru")


def run(*args):
    subprocess.run([GRU, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


BOUND = 1e-5
failures = []


def worst(a, b):
    return float((torch.as_tensor(np.asarray(a)) - torch.as_tensor(np.asarray(b))).abs().max())


def report(what, *diffs):
    """Prints the worst differences and records those above BOUND."""
    print(f"{what}: " + ", ".join(f"{name} {d:.2e}" for name, d in diffs))
    failures.extend(f"{what}: {name} {d:.2e} > {BOUND:.0e}" for name, d in diffs if not d <= BOUND)


def main():
    d = tempfile.mkdtemp()
    p = lambda n: os.path.join(d, n)  # noqa: E731
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(5, 9, num_layers=2, bidirectional=True)

    net = Net()
    save_file(net.state_dict(), p("torch.safetensors"))
    x = torch.randn(12, 3, 5)
    out, hn = net.rnn(x)
    save_file({"input": x}, p("x.safetensors"))
    run("forward", "--weights", p("torch.safetensors"), "--input", p("x.safetensors"), "--output", p("y.safetensors"), "-q")
    y = load_file(p("y.safetensors"))
    report("gru forward vs PyTorch (prefix rnn., 2 bidirectional layers)",
           ("output", worst(y["output"], out.detach())), ("h_n", worst(y["h_n"], hn.detach())))

    run("convert", "--from", "pytorch", "--to", "pytorch", p("torch.safetensors"), p("plain.safetensors"))
    fresh = nn.GRU(5, 9, num_layers=2, bidirectional=True)
    fresh.load_state_dict(load_file(p("plain.safetensors")), strict=True)
    out2, _ = fresh(x)
    report("gru convert --to pytorch, load_state_dict(strict=True)", ("output", worst(out2.detach(), out.detach())))

    run("convert", "--from", "pytorch", "--to", "keras", p("torch.safetensors"), p("keras.npz"))
    w = np.load(p("keras.npz"))
    cur = x.permute(1, 0, 2)
    for k in range(2):
        layer = keras.layers.Bidirectional(keras.layers.GRU(9, return_sequences=True))
        layer.build(tuple(cur.shape))
        layer.forward_layer.set_weights([w[f"layer{k}.forward.{n}"] for n in ("kernel", "recurrent_kernel", "bias")])
        layer.backward_layer.set_weights([w[f"layer{k}.backward.{n}"] for n in ("kernel", "recurrent_kernel", "bias")])
        cur = layer(cur)
    report("gru convert --to keras, Keras set_weights", ("output", worst(cur.detach().permute(1, 0, 2), out.detach())))

    keras.utils.set_random_seed(1)
    kl = keras.layers.GRU(7, return_sequences=True, reset_after=False,
                          bias_initializer=keras.initializers.RandomUniform(-0.5, 0.5))
    xb = torch.randn(2, 10, 4)
    ky = kl(xb)
    kernel, rec, bias = kl.get_weights()
    np.savez(p("kgru.npz"), kernel=kernel, recurrent_kernel=rec, bias=bias)
    save_file({"input": xb}, p("xb.safetensors"))
    run("forward", "--weights", p("kgru.npz"), "--format", "keras", "--input", p("xb.safetensors"), "--output", p("yk.safetensors"), "-q")
    yk = load_file(p("yk.safetensors"))
    report("gru forward --format keras vs Keras (reset_after=False, .npz)", ("output", worst(yk["output"], ky.detach())))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"all within {BOUND:.0e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
