"""Training-step throughput: lit-lm's BertForPreTraining against transformers' on the same weights and batch.

One step = forward + loss + backward + AdamW step. Batches: random ids at sequence length T, a quarter of the
rows padded over their last half, 15% of the real positions masked (labels there, -100 elsewhere), random NSP
labels. Throughput counts real (non-pad) tokens per second. Runs alternate (ours, HF eager, HF sdpa, ours, ...)
and each side reports the median of its repeats; the HF figure is the faster of its two attention kernels.
Before timing, the losses of both sides on the same batch with dropout off are compared (must agree to 1e-4).

    python benchmarks/train_step.py --size mini --batch 32                   # CPU, fp32 and bf16
    python benchmarks/train_step.py --device cuda --size base --batch 128 256 512 --compile both --peak-tflops 790

Imports only torch, transformers and lit_lm.model (no lightning, datasets or jsonargparse), so it runs on a
bare GPU image.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import default_out, tee  # noqa: E402  (benchmarks/report.py, beside this script)
from lit_lm.config import BertConfig  # noqa: E402
from lit_lm.convert import to_hf  # noqa: E402
from lit_lm.model import BertForPreTraining  # noqa: E402
from lit_lm.optim import param_groups  # noqa: E402
from lit_lm.pretraining import training_flops  # noqa: E402


def make_batch(B: int, T: int, V: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    att = torch.ones(B, T, dtype=torch.long)
    att[: B // 4, T // 2 :] = 0  # a quarter of the rows padded over their last half
    ids[att == 0] = 0
    ids[:, 0] = 2
    tt = torch.zeros_like(ids)
    tt[:, T // 2 :] = 1
    masked = (torch.rand(B, T, generator=g) < 0.15) & att.bool()
    masked[:, 0] = False
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    ids = torch.where(masked, torch.full_like(ids, 4), ids)
    nsp = torch.randint(0, 2, (B,), generator=g)
    return {k: v.to(device) for k, v in dict(input_ids=ids, token_type_ids=tt, attention_mask=att, labels=labels, nsp=nsp).items()}


def ours_loss(model: BertForPreTraining, b: dict[str, torch.Tensor]) -> torch.Tensor:
    masked = b["labels"] != -100
    mlm, nsp = model(b["input_ids"], b["token_type_ids"], b["attention_mask"], masked)
    return F.cross_entropy(mlm.float(), b["labels"][masked]) + F.cross_entropy(nsp.float(), b["nsp"])


def hf_loss(model, b: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"],
                labels=b["labels"], next_sentence_label=b["nsp"])
    return out.loss


def run(step_fn, model, opt, batch, steps: int, warmup: int, device: str, autocast_dtype) -> float:
    """Seconds per step (mean of ``steps`` after ``warmup``)."""
    ctx = torch.autocast(device_type=device, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()

    def one():
        with ctx:
            loss = step_fn(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="mini")
    p.add_argument("--batch", type=int, nargs="+", default=[32])
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", choices=["off", "on", "both"], default="off", help="torch.compile our model")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (H200 bf16 measured: 790)")
    p.add_argument("--hf", choices=["both", "sdpa", "eager", "none"], default="both")
    p.add_argument("--out", default=default_out("train_step"), help="the raw output goes here too")
    a = p.parse_args()
    with tee(a.out):
        _run(a)


def _run(a: argparse.Namespace) -> None:
    if a.threads:
        torch.set_num_threads(a.threads)
    import transformers

    torch.manual_seed(0)
    config = BertConfig.from_name(a.size)
    print(f"# {a.size}: L{config.n_layer}/H{config.n_embd}, seq {a.seq}, device {a.device}, threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    base = BertForPreTraining(config)

    def fresh_ours(compiled: bool):
        m = BertForPreTraining(config)
        m.load_state_dict(base.state_dict())
        m.to(a.device).train()
        if compiled:
            m.compile(dynamic=False)
        fused = a.device == "cuda"
        opt = torch.optim.AdamW(param_groups(m, 0.01), lr=1e-4, eps=1e-6, fused=fused, foreach=None if fused else True)
        return m, opt

    def fresh_hf(attn: str):
        hf = to_hf(base)
        hf.set_attn_implementation(attn)
        hf.to(a.device).train()
        # transformers' Trainer default optimizer ("adamw_torch"): torch AdamW with torch's own defaults.
        decay = [p for n, p in hf.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
        no_decay = [p for n, p in hf.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, eps=1e-6)
        return hf, opt

    # The same computation: losses from the same weights and batch, dropout off, fp32.
    check = make_batch(8, a.seq, config.vocab_size, a.device, seed=1)
    ours_m, _ = fresh_ours(False)
    hf_m, _ = fresh_hf("eager")
    ours_m.eval(), hf_m.eval()
    with torch.no_grad():
        lo, lh = ours_loss(ours_m, check).item(), hf_loss(hf_m, check).item()
    print(f"# loss check (dropout off, fp32): ours {lo:.6f}  HF {lh:.6f}  |diff| {abs(lo - lh):.2e}", flush=True)
    assert abs(lo - lh) < 1e-4, "our loss differs from HF's: the benchmark would compare different computations"
    del ours_m, hf_m

    compiles = {"off": [False], "on": [True], "both": [False, True]}[a.compile]
    hf_kinds = {"both": ["eager", "sdpa"], "sdpa": ["sdpa"], "eager": ["eager"], "none": []}[a.hf]
    print("| size | batch | precision | ours | ours tok/s | HF eager tok/s | HF sdpa tok/s | ratio (ours / best HF) | ours MFU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for B in a.batch:
        batch = make_batch(B, a.seq, config.vocab_size, a.device)
        real = int(batch["attention_mask"].sum())
        n_masked = int((batch["labels"] != -100).sum())
        flops = training_flops(config, real, a.seq, n_masked, n_query_rows=B * a.seq)  # what ours computes
        for prec in a.precision:
            dtype = torch.bfloat16 if prec == "bf16" else None
            times: dict[str, list[float]] = {}
            for r in range(a.repeats):  # interleaved: ours, HF eager, HF sdpa, ours, ...
                for c in compiles:
                    m, opt = fresh_ours(c)
                    times.setdefault(f"ours{'+compile' if c else ''}", []).append(run(ours_loss, m, opt, batch, a.steps, a.warmup + (3 if c and r == 0 else 0), a.device, dtype))
                    del m, opt
                for kind in hf_kinds:
                    m, opt = fresh_hf(kind)
                    times.setdefault(f"hf_{kind}", []).append(run(hf_loss, m, opt, batch, a.steps, a.warmup, a.device, dtype))
                    del m, opt
            med = {k: statistics.median(v) for k, v in times.items()}
            hf_tps = {k: real / med[f"hf_{k}"] for k in hf_kinds}
            best_hf = max(hf_tps.values()) if hf_tps else float("nan")
            for c in compiles:
                key = f"ours{'+compile' if c else ''}"
                tps = real / med[key]
                mfu = f"{flops / med[key] / (a.peak_tflops * 1e12):.1%}" if a.peak_tflops else "-"
                print(f"| {a.size} | {B} | {prec} | {key} | {tps:,.0f} | {hf_tps.get('eager', float('nan')):,.0f} | "
                      f"{hf_tps.get('sdpa', float('nan')):,.0f} | {tps / best_hf:.2f}x | {mfu} |", flush=True)


if __name__ == "__main__":
    main()
