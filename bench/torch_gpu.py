#!/usr/bin/env python3
"""PyTorch baseline on one GPU for ringmaster's GPU backend.

Trains the same MLP as a ringmaster job (dims, ReLU, global batch, optimizer
and its settings, constant lr, precision) on Fashion-MNIST on one CUDA
device and prints the training throughput as JSON. scripts/gpu-check.sh
runs it on the same GPU as `ringmaster run bench/mlp-8192-gpu.yaml`.

Fairness (the baseline is given every advantage that is cheap to give):
  * the whole training split sits on the GPU as fp32 before timing, so a
    step's batch is one index_select on the device (ringmaster copies each
    batch from host memory);
  * precision as ringmaster's train.precision: fp32 (TF32 off), tf32
    (torch.backends.cuda.matmul.allow_tf32) or bf16 (torch.autocast with
    bf16, fp32 master weights, as ringmaster's bf16);
  * AdamW runs fused (fused=True), SGD with foreach;
  * timed steps follow --warmup untimed ones; the clock stops after
    torch.cuda.synchronize(), so all queued work is counted;
  * --compile additionally wraps the model in torch.compile.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"torch_gpu.py: cannot import {e.name} with {sys.executable}")


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != math.prod(shape):
        raise ValueError(f"{path}: {arr.size} bytes of data for shape {shape}")
    return arr.reshape(shape)


def load_split(data_dir, prefix, device):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x.to(device).contiguous(), y.to(device)


def read_resolved_config(path):
    """The few keys needed from a ringmaster resolved config (flat YAML,
    written by rm_config_write: `section:` lines, then `  key: value`)."""
    cfg, section = {}, ""
    for line in open(path):
        if not line.strip() or line.startswith(("#", "---")):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, val = line.strip().partition(":")
        val = val.strip().strip('"')
        if indent == 0:
            section = key
            if val:
                cfg[key] = val
        else:
            cfg[f"{section}.{key}"] = val
    return cfg


class MLP(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        # The same distributions as ringmaster's initial weights (not the same values).
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                gain = 3.0 if i == len(self.layers) - 1 else 6.0
                bound = math.sqrt(gain / layer.in_features)
                layer.weight.uniform_(-bound, bound)
                layer.bias.zero_()

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="ringmaster's resolved config (RUN_DIR/config.yaml)")
    p.add_argument("--data", default=os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"),
                   help="directory with the Fashion-MNIST IDX .gz files")
    p.add_argument("--steps", type=int, help="timed steps (default: the config's train.steps)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps before the timed ones")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--json", metavar="FILE", help="also write the result to FILE")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_gpu.py: torch sees no CUDA device")
    cfg = read_resolved_config(args.config)
    if cfg.get("model.activation", "relu") != "relu":
        sys.exit("torch_gpu.py: the baseline models ReLU only")
    hidden = [int(h) for h in cfg["model.hidden"].strip("[]").split(",") if h.strip()]
    batch = int(cfg["train.global_batch"])
    steps = args.steps or int(cfg["train.steps"]) or 200
    precision = cfg.get("train.precision", "fp32")
    lr = float(cfg["train.lr"])

    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.manual_seed(int(cfg.get("train.seed", "1")))
    x, y = load_split(args.data, "train", dev)
    dims = [x.shape[1]] + hidden + [10]
    model = MLP(dims).to(dev)
    if cfg["train.optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(float(cfg["train.beta1"]), float(cfg["train.beta2"])),
                                eps=float(cfg["train.eps"]), weight_decay=float(cfg["train.weight_decay"]),
                                fused=True)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(cfg["train.momentum"]),
                              weight_decay=float(cfg["train.weight_decay"]), foreach=True)
    fwd = torch.compile(model) if args.compile else model
    n_train = x.shape[0]
    gen = torch.Generator(device=dev).manual_seed(1)
    perm, pos = torch.randperm(n_train, device=dev, generator=gen), 0

    def step():
        nonlocal perm, pos
        if pos + batch > n_train:
            perm, pos = torch.randperm(n_train, device=dev, generator=gen), 0
        idx = perm[pos:pos + batch]
        pos += batch
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(fwd(xb), yb, reduction="mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses = [step() for _ in range(steps)]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    mean_loss = torch.stack(losses).float().mean().item()
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    result = {
        "framework": f"pytorch {torch.__version__}" + (" compiled" if args.compile else ""),
        "device": torch.cuda.get_device_name(),
        "dims": dims,
        "global_batch": batch,
        "precision": precision,
        "optimizer": cfg["train.optimizer"],
        "warmup_steps": args.warmup,
        "steps": steps,
        "train_seconds": elapsed,
        "samples_per_second": batch * steps / elapsed,
        "train_flops_per_sample": 6.0 * weights,
        "mean_train_loss_timed_steps": mean_loss,
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
