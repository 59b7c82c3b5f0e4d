#!/usr/bin/env python3
"""PyTorch at its best on one GPU, the peer of bench/gpt2-124m-gpu.yaml.

Trains the GPT-2 of tests/gpt_reference.py (the same parameter table as
ringmaster's GPT: tied classifier, vocabulary padded to a multiple of 64)
with the job's shape, micro-batch, gradient accumulation, AdamW settings,
clipping and precision, on ringmaster's own token split, and prints tokens/s
and MFU as JSON. scripts/gpu-check.sh runs it beside `ringmaster run
bench/gpt2-124m-gpu.yaml` on the same GPU.

The baseline gets every advantage that is cheap to give it:
  * attention through F.scaled_dot_product_attention (causal), so PyTorch
    picks its fastest kernel (flash on Hopper in bf16); the backend it
    picks for the model's q/k/v is reported;
  * bf16 through torch.autocast with fp32 master weights (ringmaster's
    train.precision bf16), tf32 through allow_tf32, fp32 with neither;
  * AdamW fused=True (foreach where the device or version has no fused
    kernel; the JSON says which);
  * the whole train split sits on the device as int64 windows: a step's
    batch is one index on the device (ringmaster copies each from the host);
  * --compile auto (the default) first trains eagerly, then tries
    torch.compile in a child process under --compile-timeout seconds (or
    what --time-limit leaves) and reports the faster; a compile that fails
    or runs out of time leaves the eager figure, with the reason in the
    JSON's `compile_note`;
  * the clock starts after --warmup untimed steps and torch.cuda.synchronize(),
    and stops after the last step's synchronize: every queued kernel counts.

MFU is llm.c's (train_gpt2.cu, gpt2_estimate_mfu): FLOPs per token =
6 N + 6 L C T, N every parameter of the model (the padded token table, the
position table, biases and LayerNorms included, as llm.c's num_parameters
counts them), L layers, C the width, T the context; against the datasheet's
dense peak of the precision for this GPU (table below, keyed on
torch.cuda.get_device_name()) and against the measured cuBLAS GEMM rate
(ringmaster-bench-gemm-gpu's JSON, --gemm-json).

On a machine without a GPU, `--device cpu` with a tiny shape runs the same
code (older PyTorch lacks SDPA, fused AdamW and compile: each falls back
with a note), and --dry-run prints the job and its FLOPs without training.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import types

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"torch_gpt_gpu.py: cannot import {e.name} with {sys.executable}")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from gpt_reference import GPT, Block  # noqa: E402  (the fixture's module)
from torch_gpt_ddp import gpt2_init, lr_at, read_split, windows  # noqa: E402
from torch_gpu import read_resolved_config  # noqa: E402

# Dense (no sparsity) tensor-core peaks from NVIDIA's datasheets, TFLOP/s:
# bf16 and tf32 on the tensor cores, fp32 on the CUDA cores. The first
# entry whose key is in the device name wins. H200 and GH200 have the
# H100 SXM's compute (llm.c's mfu.h: HOPPER scaled to 528 SMs at 1830 MHz
# gives the same 989 bf16).
PEAK_TFLOPS = [
    ("H200", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H100 80GB HBM3", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # H100 SXM5
    ("H100 SXM", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H100 NVL", {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
]


def datasheet_peak(device_name, precision):
    """(TFLOP/s, table key) of the first matching entry, or (None, None)."""
    for key, peaks in PEAK_TFLOPS:
        if key in device_name:
            return peaks[precision], key
    return None, None


def causal_attention(q, k, v):
    """softmax(q k^T / sqrt(d), causal) v through SDPA where this PyTorch has it."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v


class SdpaBlock(Block):
    """The reference block with its attention through causal_attention."""

    def attn(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        return self.attn_proj(causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C))


class Gpt2(GPT):
    """The reference GPT with SDPA blocks, positions made on the input's
    device, and the classifier over the whole padded table (a product of a
    multiple-of-64 width, as llm.c runs it); the padding's logits are cut
    before the loss, so they never count. Returns the loss only."""

    def __init__(self, layers, heads, dim, context, vocab, padded_vocab):
        super().__init__(layers, heads, dim, context, vocab, padded_vocab)
        self.h = nn.ModuleList(SdpaBlock(dim, heads) for _ in range(layers))

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)[..., : self.vocab]
        return F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1))


def attention_backend(model, dtype, device, micro_batch, context):
    """Which kernel SDPA picks for the model's q/k/v (shape, dtype, causal)."""
    if not hasattr(F, "scaled_dot_product_attention"):
        return f"math (explicit softmax: PyTorch {torch.__version__} has no scaled_dot_product_attention)"
    if device.type != "cuda":
        return "sdpa on the CPU"
    heads, dim = model.h[0].heads, model.wte.weight.shape[1]
    q = torch.randn(micro_batch, heads, context, dim // heads, device=device, dtype=dtype)
    choice = getattr(torch._C, "_fused_sdp_choice", None) or getattr(torch, "_fused_sdp_choice", None)
    if choice is not None:
        try:
            from torch.nn.attention import SDPBackend

            names = {int(v): k.lower() for k, v in SDPBackend.__members__.items()}
            return "sdpa: " + names.get(int(choice(q, q, q, None, 0.0, True)), "unknown")
        except Exception as e:  # private API: fall through to probing
            probe_error = str(e)
    else:
        probe_error = "no _fused_sdp_choice"
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel(backend):
                    F.scaled_dot_product_attention(q, q, q, is_causal=True)
                return f"sdpa: {backend.name.lower()} (accepted when forced; {probe_error})"
            except RuntimeError:
                continue
    except ImportError:
        pass
    return f"sdpa: unknown ({probe_error})"


def job_from_args(a):
    """The job: the flags, with ringmaster's resolved config over them."""
    job = dict(layers=a.layers, heads=a.heads, dim=a.dim, context=a.context, global_batch=a.global_batch,
               grad_accum=a.grad_accum, steps=a.steps, lr=a.lr, beta1=0.9, beta2=0.95, eps=1e-8,
               weight_decay=0.1, grad_clip=1.0, warmup=a.warmup_lr_steps, min_lr_ratio=0.1,
               precision=a.precision, seed=1, data=a.data)
    if a.config:
        c = read_resolved_config(a.config)
        for key, name, kind in (("model.layers", "layers", int), ("model.heads", "heads", int),
                                ("model.dim", "dim", int), ("model.context", "context", int),
                                ("train.global_batch", "global_batch", int), ("train.grad_accum", "grad_accum", int),
                                ("train.steps", "steps", int),
                                ("train.lr", "lr", float), ("train.beta1", "beta1", float),
                                ("train.beta2", "beta2", float), ("train.eps", "eps", float),
                                ("train.weight_decay", "weight_decay", float), ("train.grad_clip", "grad_clip", float),
                                ("train.warmup_steps", "warmup", int), ("train.min_lr_ratio", "min_lr_ratio", float),
                                ("train.precision", "precision", str), ("train.seed", "seed", int),
                                ("data.dir", "data", str)):
            if key in c:
                job[name] = kind(c[key])
        if a.data:  # a dataset named on the command line wins over the config's relative path
            job["data"] = a.data
    if job["global_batch"] % job["grad_accum"]:
        sys.exit(f"torch_gpt_gpu.py: global batch {job['global_batch']} does not divide into "
                 f"{job['grad_accum']} micro-steps")
    job["micro_batch"] = job["global_batch"] // job["grad_accum"]
    return job


def vocab_of(data_dir):
    for line in open(os.path.join(data_dir, "train", "index.rmi")):
        if line.startswith("vocab "):
            return int(line.split()[1])
    sys.exit(f"torch_gpt_gpu.py: {data_dir}/train/index.rmi names no vocab")


def build(job, vocab, device):
    padded = (vocab + 63) // 64 * 64
    torch.manual_seed(job["seed"])
    # Made on the device where this PyTorch can: GPT-2 124M's init is seconds on one CPU core.
    ctx = device if hasattr(torch.device, "__enter__") else None
    if ctx is not None:
        with ctx:
            model = Gpt2(job["layers"], job["heads"], job["dim"], job["context"], vocab, padded)
    else:
        model = Gpt2(job["layers"], job["heads"], job["dim"], job["context"], vocab, padded).to(device)
    gpt2_init(model, job["layers"])
    return model


def optimizer(model, job, device):
    decay = [t for _, t, d in model.tensors() if d]
    rest = [t for _, t, d in model.tensors() if not d]
    groups = [{"params": decay, "weight_decay": job["weight_decay"]}, {"params": rest, "weight_decay": 0.0}]
    kw = dict(lr=job["lr"], betas=(job["beta1"], job["beta2"]), eps=job["eps"])
    try:
        return torch.optim.AdamW(groups, fused=True, **kw), "fused"
    except (TypeError, RuntimeError) as e:
        note = str(e).splitlines()[0] if str(e) else type(e).__name__
        return torch.optim.AdamW(groups, foreach=True, **kw), f"foreach (fused refused on {device.type}: {note})"


def train(a, job, compiled):
    """Trains --warmup + --timed-steps steps; returns the result dict."""
    device = torch.device(a.device)
    precision = job["precision"]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
    vocab = vocab_of(job["data"])
    model = build(job, vocab, device)
    n_params = sum(p.numel() for p in model.parameters())
    L, C, T = job["layers"], job["dim"], job["context"]
    flops_per_token = 6 * n_params + 6 * L * C * T
    opt, opt_kind = optimizer(model, job, device)
    fwd = torch.compile(model) if compiled else model
    train_windows = torch.from_numpy(windows(read_split(os.path.join(job["data"], "train")), T)).to(device)
    gen = torch.Generator(device=device).manual_seed(job["seed"])
    micro, accum = job["micro_batch"], job["grad_accum"]
    amp_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    lr_args = types.SimpleNamespace(lr=job["lr"], warmup=job["warmup"], steps=job["steps"],
                                    min_lr_ratio=job["min_lr_ratio"])

    def step(i):
        for g in opt.param_groups:
            g["lr"] = lr_at(min(i, job["steps"] - 1), lr_args)
        total = 0.0
        for _ in range(accum):
            idx = torch.randint(0, train_windows.shape[0], (micro,), device=device, generator=gen)
            batch = train_windows[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = fwd(batch[:, :-1], batch[:, 1:])
            (loss / accum).backward()
            total = total + loss.detach() / accum
        if job["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), job["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t_start = time.perf_counter()
    for i in range(a.warmup):
        step(i)
    sync()
    warmup_s = time.perf_counter() - t_start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(a.warmup, a.warmup + a.timed_steps):
        loss = step(i)
    sync()
    elapsed = time.perf_counter() - t0
    tokens_per_s = a.timed_steps * job["global_batch"] * T / elapsed
    result = {
        "framework": f"pytorch {torch.__version__}" + (" compiled" if compiled else " eager"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": precision,
        "attention": attention_backend(model, amp_dtype, device, micro, T),
        "optimizer": f"adamw {opt_kind}",
        "parameters": n_params,
        "flops_per_token": flops_per_token,
        "micro_batch": micro, "grad_accum": accum, "global_batch": job["global_batch"], "context": T,
        "warmup_steps": a.warmup, "warmup_seconds": warmup_s, "timed_steps": a.timed_steps,
        "train_seconds": elapsed, "step_s": elapsed / a.timed_steps,
        "tokens_per_second": tokens_per_s,
        "last_loss": float(loss),
    }
    if device.type == "cuda":
        result["peak_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        result["peak_memory_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    return result


def add_mfu(result, a):
    """MFU against the datasheet peak and the measured GEMM rate, where known."""
    achieved = result["tokens_per_second"] * result["flops_per_token"]
    result["achieved_tflops"] = achieved / 1e12
    peak, key = datasheet_peak(result["device"], result["precision"])
    result["datasheet_peak_tflops"], result["datasheet_entry"] = peak, key
    result["mfu_datasheet"] = achieved / (peak * 1e12) if peak else None
    result["gemm_tflops"] = result["mfu_gemm"] = None
    if a.gemm_json and os.path.exists(a.gemm_json):
        gemm = json.load(open(a.gemm_json)).get(f"{result['precision']}_tflops")
        if gemm:
            result["gemm_tflops"] = gemm
            result["mfu_gemm"] = achieved / (gemm * 1e12)


def compiled_in_child(a, timeout_s):
    """Runs this script with --compile on in a child under timeout_s; its
    result, or (None, why not)."""
    out = (a.json or os.path.join(os.environ.get("TMPDIR", "/tmp"), "torch_gpt_gpu")) + ".compiled.json"
    argv = [sys.executable, os.path.abspath(__file__)] + [x for x in sys.argv[1:]] + ["--compile", "on", "--json", out]
    t0 = time.perf_counter()
    try:
        child = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, f"torch.compile did not finish within {timeout_s:.0f} s"
    if child.returncode != 0:
        tail = [l for l in child.stdout.strip().splitlines() if l.strip()][-1:] or ["no output"]
        return None, f"torch.compile failed (exit {child.returncode}): {tail[0][:300]}"
    result = json.load(open(out))
    result["compile_wall_seconds"] = time.perf_counter() - t0
    return result, None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="ringmaster's resolved config (RUN_DIR/config.yaml): shape, batch, optimizer, precision")
    p.add_argument("--data", help="the token dataset (DIR/train/index.rmi); default: the config's data.dir")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--global-batch", type=int, default=32, help="sequences per optimizer step")
    p.add_argument("--grad-accum", type=int, default=2, help="micro-steps per optimizer step")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup-lr-steps", type=int, default=10, help="the lr schedule's warmup")
    p.add_argument("--steps", type=int, default=40, help="the lr schedule's length")
    p.add_argument("--precision", choices=("bf16", "tf32", "fp32"), default="bf16")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("--timed-steps", type=int, default=20)
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="auto: eager, then torch.compile in a child under --compile-timeout; report the faster")
    p.add_argument("--compile-timeout", type=float, default=180, help="seconds the compiled child may take")
    p.add_argument("--time-limit", type=float,
                   help="seconds this whole run may take: the compiled child gets at most what the eager run leaves")
    p.add_argument("--gemm-json", help="ringmaster-bench-gemm-gpu's output: MFU against the measured GEMM rate")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu for a tiny check without a GPU")
    p.add_argument("--dry-run", action="store_true", help="print the job and its FLOPs; train nothing")
    p.add_argument("--json", metavar="FILE", help="also write the result to FILE")
    a = p.parse_args()
    started = time.perf_counter()
    job = job_from_args(a)
    if not job["data"]:
        sys.exit("torch_gpt_gpu.py: name the dataset (--data DIR or --config with data.dir)")
    if a.dry_run:
        vocab = vocab_of(job["data"])
        with torch.device("meta") if hasattr(torch.device, "__enter__") else torch.no_grad():
            model = Gpt2(job["layers"], job["heads"], job["dim"], job["context"], vocab, (vocab + 63) // 64 * 64)
        n = sum(p.numel() for p in model.parameters())
        fpt = 6 * n + 6 * job["layers"] * job["dim"] * job["context"]
        print(json.dumps({"job": job, "vocab": vocab, "parameters": n, "flops_per_token": fpt,
                          "tokens_per_step": job["global_batch"] * job["context"]}))
        return

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"torch_gpt_gpu.py: PyTorch {torch.__version__} sees no CUDA device (--device cpu for a tiny check)")
    if a.device == "cpu" and job["precision"] == "tf32":
        job["precision"] = "fp32"  # tf32 is a tensor-core mode; on the CPU it is fp32

    compile_note = None
    if a.compile == "on":
        result = train(a, job, compiled=True)
    else:
        result = train(a, job, compiled=False)
        if a.compile == "auto":
            if not hasattr(torch, "compile"):
                compile_note = f"PyTorch {torch.__version__} has no torch.compile"
            else:
                if a.device.startswith("cuda"):
                    torch.cuda.empty_cache()  # the child needs the memory this process cached
                eager = result
                limit = a.compile_timeout
                if a.time_limit:
                    limit = min(limit, a.time_limit - (time.perf_counter() - started) - 10)
                if limit < 30:
                    compiled, compile_note = None, f"no time left for torch.compile ({limit:.0f} s of --time-limit)"
                else:
                    compiled, compile_note = compiled_in_child(a, limit)
                if compiled is not None:
                    result = compiled if compiled["tokens_per_second"] > eager["tokens_per_second"] else eager
                    compile_note = (f"compiled {compiled['tokens_per_second']:.0f} tokens/s, eager "
                                    f"{eager['tokens_per_second']:.0f}: reporting "
                                    f"{'compiled' if result is compiled else 'eager'}")
                result["eager_tokens_per_second"] = eager["tokens_per_second"]
                if compiled is not None:
                    result["compiled_tokens_per_second"] = compiled["tokens_per_second"]
    result["compile_note"] = compile_note
    add_mfu(result, a)
    print(json.dumps(result))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
