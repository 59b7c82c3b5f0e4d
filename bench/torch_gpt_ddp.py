#!/usr/bin/python3
"""The PyTorch side of bench/gpt-cpu.sh: the GPT-2 module of
tests/gpt_reference.py trained with DistributedDataParallel (gloo, one
process per rank, one thread each) on ringmaster's own token split, with
the same hyperparameters as the ringmaster job; prints and writes tokens/s
and the validation loss after the same number of tokens.

The data: the train split's shards read as ringmaster lays them out
(64-byte header, little-endian uint16 tokens), cut into the same windows
(shard s holds floor((tokens_s - 1) / T) windows of T + 1 tokens); each
step draws global_batch windows at random (seeded), rank r takes its
slice. Validation: the first eval_tokens / T windows of the val split, as
ringmaster evaluates them.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from gpt_reference import GPT  # noqa: E402  (the fixture's module)


def read_split(path):
    shards = []
    for line in open(os.path.join(path, "index.rmi")):
        f = line.split()
        if f and f[0] == "shard":
            raw = np.fromfile(os.path.join(path, f[1]), dtype="<u2", offset=64)
            shards.append(raw[: int(f[2])].astype(np.int64))
    return shards


def windows(shards, T):
    out = []
    for tokens in shards:
        n = (len(tokens) - 1) // T
        for j in range(n):
            out.append(tokens[j * T: j * T + T + 1])
    return np.stack(out)


def lr_at(step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def gpt2_init(model, layers):
    with torch.no_grad():
        for name, t, decays in model.tensors():
            if name.endswith("c_proj.weight"):
                t.normal_(0.0, 0.02 / math.sqrt(2 * layers))
            elif decays:
                t.normal_(0.0, 0.02)
            elif ".ln_" in name and name.endswith(".weight") or name == "transformer.ln_f.weight":
                t.fill_(1.0)
            else:
                t.zero_()
        model.wte.weight[model.vocab:].zero_()


def worker(rank, a):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(a.port)
    dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    torch.manual_seed(a.seed)
    padded = (a.vocab + 63) // 64 * 64
    model = GPT(a.layers, a.heads, a.dim, a.context, a.vocab, padded)
    gpt2_init(model, a.layers)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    decay = [t for _, t, d in model.tensors() if d]
    rest = [t for _, t, d in model.tensors() if not d]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    train = torch.from_numpy(windows(read_split(os.path.join(a.data, "train")), a.context))
    rng = np.random.default_rng(a.seed)
    local = a.global_batch // a.ranks
    timed_s, timed_steps = 0.0, 0
    for step in range(a.steps):
        idx = rng.integers(0, len(train), size=a.global_batch)[rank * local:(rank + 1) * local]
        batch = train[idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        t0 = time.perf_counter()
        _, loss = ddp(batch[:, :-1], batch[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if step >= a.warmup_timing:
            timed_s += dt
            timed_steps += 1
        if rank == 0 and (step + 1) % 50 == 0:
            print(f"step {step + 1}/{a.steps} loss {loss.item():.4f} {local * a.context * a.ranks / dt:.0f} tokens/s",
                  flush=True)
    # the slowest rank's time is the job's
    t = torch.tensor([timed_s])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    val = windows(read_split(os.path.join(a.data, "val")), a.context)
    val = torch.from_numpy(val[: max(1, a.eval_tokens // a.context)])
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(rank, len(val), a.ranks * 8):
            chunk = val[i: i + 8]
            _, loss = model(chunk[:, :-1], chunk[:, 1:])
            total += loss.item() * chunk.shape[0] * a.context
            count += chunk.shape[0] * a.context
    sums = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(sums)
    if rank == 0:
        tokens_per_s = timed_steps * a.global_batch * a.context / t.item()
        out = {"framework": f"PyTorch {torch.__version__} DDP (gloo, {a.ranks} ranks x 1 thread)",
               "tokens_per_second": tokens_per_s, "timed_steps": timed_steps, "train_seconds": t.item(),
               "val_loss": (sums[0] / sums[1]).item(), "val_tokens": int(sums[1].item()), "steps": a.steps}
        print(json.dumps(out))
        json.dump(out, open(a.json, "w"), indent=2)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    for k, v in (("data", str), ("json", str), ("ranks", int), ("global-batch", int), ("steps", int), ("layers", int),
                 ("heads", int), ("dim", int), ("context", int), ("vocab", int), ("lr", float), ("warmup", int),
                 ("min-lr-ratio", float), ("weight-decay", float), ("eval-tokens", int), ("seed", int)):
        p.add_argument("--" + k, type=v, required=True)
    p.add_argument("--warmup-timing", type=int, default=5, help="untimed first steps")
    p.add_argument("--port", type=int, default=29533)
    a = p.parse_args()
    mp.spawn(worker, args=(a,), nprocs=a.ranks, join=True)


if __name__ == "__main__":
    main()
