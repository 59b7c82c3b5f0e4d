#!/usr/bin/python3
"""PyTorch DistributedDataParallel baseline for bench/mlp-1024.yaml.

Trains the same MLP (784-1024-1024-10, ReLU, fp32) on Fashion-MNIST with
the same global batch, optimizer (SGD with momentum, constant lr) and step
count as the ringmaster job, in N processes on the gloo backend with one
thread per rank, and prints the training throughput.

Fairness:
  * same model, batch (global, split evenly over ranks), precision (fp32);
  * one compute thread per rank: torch.set_num_threads(1), and the OpenBLAS
    that Debian's torch calls for its matrix products is held to one thread
    too (torch.set_num_threads does not reach it);
  * the whole split is decoded into one float tensor before training, so
    reading and decoding are not timed (ringmaster prefetches on a loader
    thread); gathering each step's rows from it is timed, it is the step;
  * the timed steps (after --warmup untimed ones) include forward, backward
    with DDP's bucketed all-reduce, and the optimizer step; the throughput is
    global_batch * steps / the slowest rank's elapsed time.

Run with Debian's python3-torch: /usr/bin/python3 bench/torch_ddp.py.
"""
import argparse
import ctypes
import ctypes.util
import gzip
import json
import math
import os
import socket
import struct
import sys
import time

try:
    import numpy as np
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"torch_ddp.py: cannot import {e.name}: install Debian's PyTorch with "
             f"'apt-get install python3-torch' and run this with /usr/bin/python3 ({sys.executable} was used)")


def read_idx(path):
    """Reads an IDX file (gzipped or not) into a numpy array."""
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


def load_split(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x.contiguous(), y


def blas_threads(n):
    """Holds the OpenBLAS that torch's addmm calls to n threads; returns
    (library, threads now) or (None, None) when torch does not use OpenBLAS."""
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        lib.openblas_set_num_threads(ctypes.c_int(n))
        return name, lib.openblas_get_num_threads()
    return None, None


class MLP(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def reset_like_ringmaster(self, seed):
        # The same distributions as rm_mlp_init_params (not the same values):
        # uniform +-sqrt(6/fan_in) before a ReLU, +-sqrt(3/fan_in) at the end.
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                gain = 3.0 if i == len(self.layers) - 1 else 6.0
                bound = math.sqrt(gain / layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=g) * 2 - 1) * bound)
                layer.bias.zero_()

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


def rank_main(rank, args, port, result_q):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    blas_name, blas_n = blas_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    world = args.ranks
    local = args.global_batch // world

    x, y = load_split(args.data, "train")
    n_train = x.shape[0]
    dims = [x.shape[1]] + args.hidden + [10]
    torch.manual_seed(args.seed)
    model = MLP(dims)
    model.reset_like_ringmaster(args.seed)  # identical on every rank; DDP broadcasts rank 0's anyway
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb,
                                              gradient_as_bucket_view=True)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=args.momentum)
    params = sum(p.numel() for p in model.parameters())

    # Sample order: one permutation per epoch, shared by all ranks (same
    # seed); rank r takes its contiguous part of each global batch.
    gen = torch.Generator().manual_seed(args.seed)
    perm, epoch_pos = torch.randperm(n_train, generator=gen), 0
    xb = torch.empty(local, x.shape[1])
    yb = torch.empty(local, dtype=torch.int64)

    def next_batch():
        nonlocal perm, epoch_pos
        if epoch_pos + args.global_batch > n_train:  # drop the ragged tail, reshuffle
            perm, epoch_pos = torch.randperm(n_train, generator=gen), 0
        idx = perm[epoch_pos + rank * local: epoch_pos + (rank + 1) * local]
        epoch_pos += args.global_batch
        torch.index_select(x, 0, idx, out=xb)
        torch.index_select(y, 0, idx, out=yb)
        return xb, yb

    def step():
        xs, ys = next_batch()
        out = ddp(xs)
        loss = F.cross_entropy(out, ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    ddp.train()
    for _ in range(args.warmup):
        step()
    dist.barrier()
    loss_sum, t0 = 0.0, time.perf_counter()
    for _ in range(args.steps):
        loss_sum += step().item()
    elapsed = time.perf_counter() - t0
    t = torch.tensor([elapsed, loss_sum / args.steps], dtype=torch.float64)
    slowest = t.clone()
    dist.all_reduce(slowest[:1], op=dist.ReduceOp.MAX)
    dist.all_reduce(t[1:], op=dist.ReduceOp.SUM)

    result = None
    if rank == 0:
        result = {
            "framework": f"pytorch {torch.__version__} DDP (gloo)",
            "ranks": world,
            "threads_per_rank": torch.get_num_threads(),
            "blas": blas_name,
            "blas_threads_per_rank": blas_n,
            "parameters": params,
            "global_batch": args.global_batch,
            "warmup_steps": args.warmup,
            "steps": args.steps,
            "train_seconds": slowest[0].item(),
            "samples_per_second": args.global_batch * args.steps / slowest[0].item(),
            "mean_train_loss_timed_steps": t[1].item() / world,
        }
        if args.eval:
            xt, yt = load_split(args.data, "t10k")
            model.eval()
            with torch.no_grad():
                logits = model(xt)
                result["test_loss"] = F.cross_entropy(logits, yt).item()
                result["test_accuracy"] = (logits.argmax(1) == yt).double().mean().item()
        result_q.put(result)
    dist.barrier()
    # Leave without tearing DDP and the gloo group down: in torch 1.13 the
    # group's destructor (run from ~Reducer when this frame is freed) can
    # deadlock a rank at exit, which would hang the whole benchmark. The
    # result is already in the pipe; nothing else needs flushing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"),
                   help="directory with the Fashion-MNIST IDX .gz files")
    p.add_argument("--hidden", default="1024,1024", help="hidden widths, comma separated")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=1200, help="timed steps")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps before the timed ones")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--bucket-mb", type=float, default=25.0, help="DDP bucket_cap_mb (the PyTorch default)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip the (untimed) test evaluation")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    p.add_argument("--exit-grace-s", type=float, default=30.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.hidden = [int(h) for h in args.hidden.split(",") if h]
    if args.global_batch % args.ranks:
        p.error("--global-batch must divide evenly over --ranks")
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        if not os.path.isfile(os.path.join(args.data, f)):
            sys.exit(f"torch_ddp.py: {args.data} has no {f} (apt-get install dataset-fashion-mnist, or --data DIR)")

    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    procs = mp.start_processes(rank_main, args=(args, free_port(), q), nprocs=args.ranks, join=False,
                               start_method="spawn")
    r, settled = None, None
    # join() raises if a rank fails; once the result is in, give the ranks
    # a little while to leave and end any that hang instead of waiting.
    while not procs.join(timeout=1):
        if r is None and not q.empty():
            r, settled = q.get(), time.monotonic()
        if settled is not None and time.monotonic() - settled > args.exit_grace_s:
            print(f"torch_ddp.py: warning: ranks still running {args.exit_grace_s:.0f} s after the result; "
                  "ending them", file=sys.stderr)
            for p_ in procs.processes:
                if p_.is_alive():
                    p_.terminate()
            break
    if r is None:
        if q.empty():
            sys.exit("torch_ddp.py: the ranks exited without a result")
        r = q.get()
    print(f"pytorch {torch.__version__} DDP gloo: {r['ranks']} ranks x {r['threads_per_rank']} thread "
          f"(OpenBLAS threads per rank: {r['blas_threads_per_rank']}), global batch {r['global_batch']}, "
          f"{r['steps']} timed steps after {r['warmup_steps']} warm-up")
    print(f"train {r['train_seconds']:.2f} s, mean loss {r['mean_train_loss_timed_steps']:.4f}"
          + (f", test accuracy {r['test_accuracy']:.4f}" if "test_accuracy" in r else ""))
    print(f"samples_per_second {r['samples_per_second']:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
