"""Input-pipeline throughput: NSP pairing + MLM masking + batching, per DataLoader worker, on the WikiText-2 cache.

Three measurements on the real data module (``WikiText103DataModule``, max_seq_len 128, batch 32):

1. ``NSPDataset.__getitem__`` alone and ``MLMCollator`` alone, in this process (no DataLoader): the cost per sample
   of each stage.
   Counted per CPU-second (``time.process_time``), so the figure is what one dedicated worker core delivers even
   on a shared host.
2. The training DataLoader (sampler -> pairs -> masking collator -> tensors) with ``num_workers`` 0, 1, 2, ...:
   wall-clock samples/s, real (non-pad) tokens/s and samples/s per worker, after a warm-up that hides worker
   start-up. On a host with fewer free cores than workers these are bounded by the host, not the code.

Then the arithmetic for one GPU: BERT-base at seq 128 needs ~6 * 110M * 128 = 84.5 GFLOP per sequence for training
(``6 N T``; attention adds ~5%), so an H100-class GPU (~990 TFLOP/s dense bf16) at 50% MFU eats ~5.5-5.9k sequences/s,
which the default ``num_workers`` (cli.yaml: 4 per GPU, 2 in the DataModule's signature) must supply.

    python benchmarks/dataloader.py                       # builds the WikiText-2 cache in a temp dir first
    python benchmarks/dataloader.py --cache-dir ~/.cache/lit-lm --workers 0 1 2 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from data_modules.wikitext import WikiText103DataModule  # noqa: E402
from report import default_out, tee  # noqa: E402  (benchmarks/report.py, beside this script)

GPU_SEQ_PER_S = 0.5 * 990e12 / (6 * 110e6 * 128)  # 50% MFU of ~990 dense bf16 TFLOP/s, 6 N T flops a sequence


def per_stage(dm: WikiText103DataModule, n: int) -> tuple[float, float]:
    """Samples per CPU-second of the pair dataset alone and of the collator alone, in this process. CPU time, not
    wall time: on a shared host the wall clock measures the neighbours; CPU time is what one worker core costs."""
    ds, collate = dm.datasets["train"], dm._collator(dm.seed)
    keys = [(0, int(i)) for i in np.random.default_rng(0).choice(len(ds), n, replace=len(ds) < n)]
    t = time.process_time()
    samples = [ds[k] for k in keys]
    pair_rate = n / (time.process_time() - t)
    t = time.process_time()
    for i in range(0, n, dm.batch_size):
        collate(samples[i : i + dm.batch_size])
    return pair_rate, n / (time.process_time() - t)


def loader_rate(kw: dict, workers: int, batches: int, warmup: int) -> tuple[float, float]:
    """(samples/s, real tokens/s) of the train DataLoader with ``workers`` worker processes."""
    dm = WikiText103DataModule(**kw, num_workers=workers)
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    for _ in range(warmup):
        next(it)
    t = time.perf_counter()
    samples = tokens = 0
    for _ in range(batches):
        b = next(it)
        samples += len(b["index"])
        tokens += int(b["attention_mask"].sum())
    dt = time.perf_counter() - t
    del it
    return samples / dt, tokens / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "wikitext-2"))
    p.add_argument("--cache-dir", default=None, help="cache to build or reuse (default: a temp dir)")
    p.add_argument("--vocab-size", type=int, default=30522)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batches", type=int, default=300, help="timed batches per setting")
    p.add_argument("--stage-samples", type=int, default=10000)
    p.add_argument("--out", default=default_out("dataloader"), help="the raw output goes here too")
    args = p.parse_args()
    with tee(args.out):
        _run(args)


def _run(args: argparse.Namespace) -> None:

    with tempfile.TemporaryDirectory(prefix="lit-lm-dl-") as tmp:
        kw = dict(data_dir=args.data_dir, cache_dir=args.cache_dir or tmp, vocab_size=args.vocab_size,
                  tokenizer_sample_bytes=2_000_000, max_seq_len=128, batch_size=32)
        dm = WikiText103DataModule(**kw, num_workers=0)
        dm.prepare_data()
        load_before = os.getloadavg()[0]
        dm.setup("fit")
        pair, coll = per_stage(dm, args.stage_samples)
        both = 1 / (1 / pair + 1 / coll)
        print(f"per CPU-second, one process: NSP pair {pair:,.0f}/s, MLM masking+collate {coll:,.0f}/s, "
              f"together {both:,.0f}/s ({1e6 / pair:.0f} + {1e6 / coll:.0f} us)", flush=True)
        rows = []
        for w in args.workers:
            rate, tok = loader_rate(kw, w, args.batches, warmup=max(4, 4 * w))
            rows.append((w, rate, tok))
            print(f"num_workers={w}: {rate:,.0f} samples/s", flush=True)
        load_after = os.getloadavg()[0]

    print(f"\nhost: {os.cpu_count()} CPUs, load average {load_before:.2f} before, {load_after:.2f} after; WikiText-2 "
          f"train, max_seq_len 128, batch 32")
    print("\n| num_workers | samples/s | real tokens/s | samples/s per worker |")
    print("|---:|---:|---:|---:|")
    for w, rate, tok in rows:
        print(f"| {w} | {rate:,.0f} | {tok:,.0f} | {rate / max(w, 1):,.0f} |")
    need = GPU_SEQ_PER_S
    print(f"\none H100-class GPU at 50% MFU, BERT-base, seq 128: ~{need:,.0f} sequences/s "
          f"(0.5 * 990e12 / (6 * 110e6 * 128)). One core-second does ~{both:,.0f} samples/s of pairing + masking, so "
          f"{need / both:.1f} worker cores keep it fed; cli.yaml's 4 workers per GPU give ~{4 * both:,.0f}/s "
          f"({4 * both / need:.1f}x) if each has a core of its own (16-core host, 1 GPU: yes; 8 GPUs: 32 workers on "
          f"16 cores, {16 * both / 8:,.0f}/s per GPU).")


if __name__ == "__main__":
    main()
