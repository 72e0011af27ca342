#!/usr/bin/env python3
"""Golden fixtures for gru-engine, computed by the real frameworks.

Writes tests/fixtures/*.safetensors: for each configuration the weights (in the
framework's own names and layout), the inputs, the outputs, h_n, and the gradients of
L = sum(output * r_output) + sum(h_n * r_h_n) with respect to the input, h0 and every
weight; plus a 20-step training run (Embedding -> GRU -> Linear, cross-entropy, Adam,
global-norm clipping) and 3-step runs of each optimiser and loss (SGD with momentum and
L2, Adam with L2, AdamW, clip_grad_value_, BCE-with-logits, MSE, Keras' MaxNorm) with
the gradients and parameters of every step. The Rust tests (tests/golden.rs) compare the engine against them;
CI needs no Python.

Set-up used (2026-11-23), CPU only:
    pip install torch==2.15.0 keras==3.15.1 safetensors==0.8.0 numpy==2.4.6
    KERAS_BACKEND=torch python3 scripts/make_fixtures.py

Keras runs on its torch backend so both frameworks' gradients come from autograd.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def save(name, tensors, meta):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    meta = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()}
    meta["versions"] = f"torch {torch.__version__}, keras {keras.__version__} ({keras.backend.backend()})"
    save_file(tensors, os.path.join(OUT, name + ".safetensors"), metadata=meta)
    print("wrote", name)


def torch_case(name, T, B, I, H, L, bidir, lengths=None, with_h0=True, seed=0):
    torch.manual_seed(seed)
    gru = nn.GRU(I, H, num_layers=L, bidirectional=bidir)
    D = 2 if bidir else 1
    x = torch.randn(T, B, I, requires_grad=True)
    h0 = (0.5 * torch.randn(L * D, B, H)).requires_grad_() if with_h0 else None
    if lengths is not None:
        packed = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        out_p, hn = gru(packed, h0)
        out, _ = pad_packed_sequence(out_p, total_length=T)
    else:
        out, hn = gru(x, h0)
    r1, r2 = torch.randn_like(out), torch.randn_like(hn)
    ((out * r1).sum() + (hn * r2).sum()).backward()
    t = dict(gru.state_dict())
    t.update({"input": x, "output": out, "h_n": hn, "r_output": r1, "r_h_n": r2, "grad.input": x.grad})
    if h0 is not None:
        t.update({"h0": h0, "grad.h0": h0.grad})
    if lengths is not None:
        t["lengths"] = torch.tensor(lengths, dtype=torch.int64)
    for n, p in gru.named_parameters():
        t["grad." + n] = p.grad
    save(name, t, {"framework": "pytorch", "config": dict(T=T, B=B, I=I, H=H, layers=L, bidirectional=bidir)})


def keras_case(name, T, B, I, H, L, bidir, reset_after, seed=0):
    keras.utils.set_random_seed(seed)
    torch.manual_seed(seed)
    D = 2 if bidir else 1
    x = torch.randn(B, T, I, requires_grad=True)
    h0 = (0.5 * torch.randn(L * D, B, H)).requires_grad_()
    cur, finals, t, weights = x, [], {}, []
    for k in range(L):
        def make():
            return keras.layers.GRU(
                H, return_sequences=True, return_state=True, reset_after=reset_after,
                bias_initializer=keras.initializers.RandomUniform(-0.5, 0.5))
        if bidir:
            layer = keras.layers.Bidirectional(make())
            res = layer(cur, initial_state=[h0[k * 2], h0[k * 2 + 1]])
            cur, finals = res[0], finals + [res[1], res[2]]
            cells = [("forward.", layer.forward_layer.cell), ("backward.", layer.backward_layer.cell)]
        else:
            res = make()
            out = res(cur, initial_state=[h0[k]])
            cur, finals = out[0], finals + [out[1]]
            cells = [("", res.cell)]
        for prefix, cell in cells:
            for n in ("kernel", "recurrent_kernel", "bias"):
                weights.append((f"layer{k}.{prefix}{n}", getattr(cell, n).value))
    hn = torch.stack(finals)
    r1, r2 = torch.randn_like(cur), torch.randn_like(hn)
    ((cur * r1).sum() + (hn * r2).sum()).backward()
    for n, v in weights:
        t[n] = v
        t["grad." + n] = v.grad
    t.update({"input": x, "h0": h0, "output": cur, "h_n": hn, "r_output": r1, "r_h_n": r2,
              "grad.input": x.grad, "grad.h0": h0.grad})
    save(name, t, {"framework": "keras", "config": dict(T=T, B=B, I=I, H=H, layers=L, bidirectional=bidir, reset_after=reset_after)})


class CharModel(nn.Module):
    def __init__(self, V, E, H):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.gru = nn.GRU(E, H, batch_first=True)
        self.fc = nn.Linear(H, V)

    def forward(self, x):
        return self.fc(self.gru(self.embedding(x))[0])


def training_case(name, steps=20, V=11, E=6, H=13, B=4, T=9, lr=1e-2, clip=0.5, seed=3):
    torch.manual_seed(seed)
    model = CharModel(V, E, H)
    init = {"init." + k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.randint(0, V, (steps, B, T + 1))
    losses = []
    for s in range(steps):
        x, y = data[s, :, :-1], data[s, :, 1:]
        loss = nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
    t = dict(init)
    t.update({"final." + k: v for k, v in model.state_dict().items()})
    t["tokens"] = data
    t["losses"] = torch.tensor(losses, dtype=torch.float32)
    save(name, t, {"framework": "pytorch", "config": dict(V=V, E=E, H=H, B=B, T=T, steps=steps, lr=lr, clip_norm=clip,
                                                          optimizer="Adam (PyTorch defaults)")})


class LastStateModel(nn.Module):
    """GRU over features -> final state of the last layer -> Linear (classifier, forecaster)."""

    def __init__(self, I, H, C, L=1):
        super().__init__()
        self.gru = nn.GRU(I, H, num_layers=L, batch_first=True)
        self.fc = nn.Linear(H, C)

    def forward(self, x):
        return self.fc(self.gru(x)[1][-1])


def keras_max_norm(model, c):
    """Keras `MaxNorm(c)` (axis 0 of Keras' layouts) on each GRU kernel, recurrent kernel
    and bias: per row of PyTorch's [3H, in] layout, per (b_ih[j], b_hh[j]) pair."""
    mn = keras.constraints.MaxNorm(max_value=c, axis=0)
    with torch.no_grad():
        for name, p in model.gru.named_parameters():
            if name.startswith("weight_"):
                p.copy_(torch.as_tensor(mn(p.T)).T)
        for l in range(model.gru.num_layers):
            b_ih, b_hh = getattr(model.gru, f"bias_ih_l{l}"), getattr(model.gru, f"bias_hh_l{l}")
            both = torch.as_tensor(mn(torch.stack([b_ih, b_hh])))
            b_ih.copy_(both[0])
            b_hh.copy_(both[1])


def optim_case(name, kind, make_opt, steps=3, clip_value=None, max_norm=None, seed=0, **cfg):
    """A few training steps of a tiny model with per-step losses, gradients (before any
    clipping) and parameters (after the step), for the optimiser and loss under test."""
    torch.manual_seed(seed)
    B, T = 3, 5
    if kind == "lm":
        V, E, H = 7, 4, 5
        model = CharModel(V, E, H)
        data = torch.randint(0, V, (steps, B, T + 1))
    else:
        I, H, C = 3, 6, cfg.get("C", 1)
        model = LastStateModel(I, H, C)
        data = torch.randn(steps, B, T, I)
        targets = (torch.randint(0, 2, (steps, B, C)).float() if kind == "bce"
                   else torch.randn(steps, B, C))
    opt = make_opt(model.parameters())
    t = {"init." + k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    for s in range(steps):
        if kind == "lm":
            x, y = data[s, :, :-1], data[s, :, 1:]
            loss = nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        elif kind == "bce":
            loss = nn.functional.binary_cross_entropy_with_logits(model(data[s]), targets[s])
        else:
            loss = nn.functional.mse_loss(model(data[s]), targets[s])
        opt.zero_grad()
        loss.backward()
        for k, p in model.named_parameters():
            t[f"grad.{s}.{k}"] = p.grad.clone()
        if clip_value is not None:
            nn.utils.clip_grad_value_(model.parameters(), clip_value)
        opt.step()
        if max_norm is not None:
            keras_max_norm(model, max_norm)
        for k, v in model.state_dict().items():
            t[f"param.{s}.{k}"] = v.clone()
        losses.append(loss.item())
    t["inputs"] = data
    if kind != "lm":
        t["targets"] = targets
    t["losses"] = torch.tensor(losses, dtype=torch.float32)
    save(name, t, {"framework": "pytorch" if max_norm is None else "pytorch + keras MaxNorm",
                   "config": dict(kind=kind, B=B, T=T, steps=steps, optimizer=repr(opt).replace("\n", " "),
                                  clip_value=clip_value, max_norm=max_norm)})


def main():
    os.makedirs(OUT, exist_ok=True)
    torch_case("torch_t1_b1", T=1, B=1, I=3, H=5, L=1, bidir=False, with_h0=False, seed=1)
    torch_case("torch_2layer_lengths", T=33, B=4, I=7, H=13, L=2, bidir=False, lengths=[33, 20, 1, 7], seed=2)
    torch_case("torch_3layer_bidir_lengths", T=31, B=3, I=6, H=67, L=3, bidir=True, lengths=[31, 12, 5], seed=3)
    keras_case("keras_reset_after_t1_b1", T=1, B=1, I=3, H=5, L=1, bidir=False, reset_after=True, seed=4)
    keras_case("keras_reset_after_2layer", T=32, B=3, I=5, H=11, L=2, bidir=False, reset_after=True, seed=5)
    keras_case("keras_reset_before", T=35, B=2, I=4, H=13, L=1, bidir=False, reset_after=False, seed=6)
    keras_case("keras_reset_before_bidir", T=9, B=2, I=3, H=7, L=1, bidir=True, reset_after=False, seed=7)
    training_case("torch_training_adam_clip")
    optim = torch.optim
    optim_case("torch_sgd_momentum_l2", "lm", lambda p: optim.SGD(p, lr=0.5, momentum=0.9, weight_decay=0.05), seed=10)
    optim_case("torch_adam_l2", "lm", lambda p: optim.Adam(p, lr=0.05, weight_decay=0.1), seed=11)
    optim_case("torch_adamw", "lm", lambda p: optim.AdamW(p, lr=0.05, weight_decay=0.5), seed=12)
    optim_case("torch_clip_value", "lm", lambda p: optim.SGD(p, lr=1.0), clip_value=0.02, seed=13)
    optim_case("torch_bce", "bce", lambda p: optim.SGD(p, lr=0.5, momentum=0.5), seed=14)
    optim_case("torch_mse", "mse", lambda p: optim.Adam(p, lr=0.05), C=2, seed=15)
    optim_case("keras_max_norm", "lm", lambda p: optim.SGD(p, lr=1.0), max_norm=0.3, seed=16)


if __name__ == "__main__":
    sys.exit(main())
