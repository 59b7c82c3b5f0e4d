#!/usr/bin/python3
"""Writes tests/fixtures/gpt_tiny.bin: a tiny GPT-2 computed by PyTorch, for
tests/test_gpt_reference.c to hold ringmaster's CPU GPT against.

Run by hand (CI has no torch; the tests read only the committed fixture),
with Debian's interpreter and packages:

    apt-get install python3-torch python3-numpy
    /usr/bin/python3 tests/gpt_reference.py [tests/fixtures/gpt_tiny.bin]

The model is written out plainly below, nanoGPT's GPT-2: x = wte[tok] +
wpe[pos]; per block x += c_proj(attn(ln_1(x))), x += mlp.c_proj(gelu_tanh(
c_fc(ln_2(x)))); ln_f; logits = ln_f(x) wte[:vocab]^T (tied); mean
next-token cross-entropy. fp32, one thread, deterministic algorithms.

Weights: torch.manual_seed(SEED), then drawn wider than GPT-2's own init
(matrices and embeddings normal(0, 0.2), residual projections 0.2 /
sqrt(2 layers), biases normal(0, 0.05), LayerNorm weights 1 + normal(0, 0.1)
and biases normal(0, 0.05)), so that attention is far from uniform and every
tensor's gradient stands well above float rounding. wte has padded_vocab
rows; the padding rows are 0 and no token reaches them, so they stay 0.

Fixture format (all little-endian):

    magic    8 bytes  b"RMGPTFX1"
    count    u32      number of sections
    then `count` sections, each:
      name   24 bytes ASCII, NUL-padded
      dtype  u32      1 f32, 2 i32, 3 f64, 4 i64, 5 u8 (text)
      n      u64      elements
      data   n elements of dtype

Sections, in this order:

    shape            i32[8]  layers, heads, dim, context, vocab, padded_vocab,
                             batch, adamw_steps
    tensor_names     u8[]    the tensors' Hugging Face GPT2LMHeadModel names
                             (transformer.wte.weight, ...), '\\n'-separated,
                             in buffer order
    tensor_spans     i64[3k] per tensor: offset and numel in the flat buffer,
                             and 1 where weight decay applies (wte, wpe, the
                             2-D matrices), 0 otherwise (biases, LayerNorm)
    params           f32[N]  the initial weights in ringmaster's flat layout
                             (common/gpt_layout.h: wte, wpe, blocks, lnf;
                             matrices [out x in] as torch.nn.Linear's)
    inputs           i32[B*T] batch x context input tokens
    targets          i32[B*T] the next token after each input
    logits           f32[B*T*vocab] the real vocabulary's logits only
    loss             f64[1]  the mean cross-entropy (torch's fp32 value)
    grads            f32[N]  d(mean loss)/d(params), flat layout (padding 0)
    adamw            f64[6]  lr, beta1, beta2, eps, weight_decay, clip_norm
    adamw_losses     f64[S]  step s's mean loss (its forward, before its update)
    adamw_grad_norms f64[S]  step s's global gradient norm, before clipping
    adamw_params     f32[N]  the weights after the S steps

The AdamW steps: torch.optim.AdamW(lr, betas, eps) with weight_decay on the
decaying tensors only (decoupled, as torch applies it: w -= lr wd w), the
gradient clipped to global norm clip_norm by clip_grad_norm_ first, constant
lr, the same batch every step.
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 1234
LAYERS, HEADS, DIM, CONTEXT, VOCAB, BATCH = 2, 3, 24, 20, 70, 3
VOCAB_ALIGN = 64  # RM_GPT_VOCAB_ALIGN
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
CLIP_NORM = 1.0
ADAMW_STEPS = 5


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim, eps=1e-5)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.attn_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-5)
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.mlp_proj = nn.Linear(4 * dim, dim)

    def attn(self, x):
        B, T, C = x.shape
        hs = C // self.heads
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.heads, hs).transpose(1, 2)
        k = k.view(B, T, self.heads, hs).transpose(1, 2)
        v = v.view(B, T, self.heads, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.attn_proj(y)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, layers, heads, dim, context, vocab, padded_vocab):
        super().__init__()
        self.vocab = vocab
        self.wte = nn.Embedding(padded_vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.h = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight[: self.vocab].t()
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1))
        return logits, loss

    def tensors(self):
        """(Hugging Face name, tensor, decays) in ringmaster's buffer order."""
        out = [("transformer.wte.weight", self.wte.weight, True), ("transformer.wpe.weight", self.wpe.weight, True)]
        for i, b in enumerate(self.h):
            p = "transformer.h.%d." % i
            out += [
                (p + "ln_1.weight", b.ln_1.weight, False),
                (p + "ln_1.bias", b.ln_1.bias, False),
                (p + "attn.c_attn.weight", b.c_attn.weight, True),
                (p + "attn.c_attn.bias", b.c_attn.bias, False),
                (p + "attn.c_proj.weight", b.attn_proj.weight, True),
                (p + "attn.c_proj.bias", b.attn_proj.bias, False),
                (p + "ln_2.weight", b.ln_2.weight, False),
                (p + "ln_2.bias", b.ln_2.bias, False),
                (p + "mlp.c_fc.weight", b.c_fc.weight, True),
                (p + "mlp.c_fc.bias", b.c_fc.bias, False),
                (p + "mlp.c_proj.weight", b.mlp_proj.weight, True),
                (p + "mlp.c_proj.bias", b.mlp_proj.bias, False),
            ]
        out += [("transformer.ln_f.weight", self.ln_f.weight, False), ("transformer.ln_f.bias", self.ln_f.bias, False)]
        return out


def init_weights(model):
    residual_std = 0.2 / math.sqrt(2 * LAYERS)
    with torch.no_grad():
        for name, t, decays in model.tensors():
            if name.endswith("c_proj.weight"):
                t.normal_(0.0, residual_std)
            elif decays:
                t.normal_(0.0, 0.2)
            elif ".ln_" in name and name.endswith(".weight"):
                t.normal_(1.0, 0.1)
            else:
                t.normal_(0.0, 0.05)
        model.wte.weight[VOCAB:].zero_()


def flat(model, grads=False):
    parts = []
    for _, t, _ in model.tensors():
        v = t.grad if grads else t
        parts.append(v.detach().reshape(-1).numpy().astype("<f4"))
    return np.concatenate(parts)


def section(name, dtype, array):
    codes = {"f32": (1, "<f4"), "i32": (2, "<i4"), "f64": (3, "<f8"), "i64": (4, "<i8"), "u8": (5, "u1")}
    code, np_type = codes[dtype]
    data = np.ascontiguousarray(np.asarray(array).astype(np_type).reshape(-1))
    assert len(name) < 24
    return name.encode().ljust(24, b"\0") + struct.pack("<IQ", code, data.size) + data.tobytes()


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures", "gpt_tiny.bin")
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    padded = (VOCAB + VOCAB_ALIGN - 1) // VOCAB_ALIGN * VOCAB_ALIGN
    model = GPT(LAYERS, HEADS, DIM, CONTEXT, VOCAB, padded)
    init_weights(model)
    tokens = torch.randint(0, VOCAB, (BATCH, CONTEXT + 1))
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    names, spans, at = [], [], 0
    for name, t, decays in model.tensors():
        names.append(name)
        spans += [at, t.numel(), int(decays)]
        at += t.numel()
    params0 = flat(model)

    logits, loss = model(inputs, targets)
    loss.backward()
    grads = flat(model, grads=True)

    decay = [t for _, t, d in model.tensors() if d]
    no_decay = [t for _, t, d in model.tensors() if not d]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ADAMW["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"], foreach=False)
    losses, norms = [], []
    for _ in range(ADAMW_STEPS):
        opt.zero_grad(set_to_none=True)
        _, step_loss = model(inputs, targets)
        step_loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)))
        opt.step()
        losses.append(float(step_loss))
    params_after = flat(model)

    sections = [
        section("shape", "i32", [LAYERS, HEADS, DIM, CONTEXT, VOCAB, padded, BATCH, ADAMW_STEPS]),
        section("tensor_names", "u8", np.frombuffer("\n".join(names).encode(), dtype=np.uint8)),
        section("tensor_spans", "i64", spans),
        section("params", "f32", params0),
        section("inputs", "i32", inputs.numpy()),
        section("targets", "i32", targets.numpy()),
        section("logits", "f32", logits.detach().numpy()),
        section("loss", "f64", [float(loss)]),
        section("grads", "f32", grads),
        section("adamw", "f64", [ADAMW["lr"], ADAMW["betas"][0], ADAMW["betas"][1], ADAMW["eps"],
                                 ADAMW["weight_decay"], CLIP_NORM]),
        section("adamw_losses", "f64", losses),
        section("adamw_grad_norms", "f64", norms),
        section("adamw_params", "f32", params_after),
    ]
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(b"RMGPTFX1" + struct.pack("<I", len(sections)))
        for s in sections:
            f.write(s)
    print("%s: %d parameters, loss %.6f, AdamW losses %s" % (out_path, at, float(loss),
                                                              " ".join("%.6f" % x for x in losses)))


if __name__ == "__main__":
    main()
