"""Does our pretraining help? SST-2 dev accuracy, pretrained vs random init, mean ± sd over seeds.

The fair protocol: both arms use the pretraining checkpoint's tokenizer, configs/sst2.yaml's regularisation (encoder
dropout 0.1 whatever the pretraining used, classifier dropout 0.1, gradient clipping 1.0) and the same budget; the
seed of a run sets the head's initialisation and the data order; only the encoder's starting weights differ. Each
run is the real CLI in this process; the last checkpoint's dev accuracy counts (no selection on dev).

    # pretrain with a config first (the whole comparison from the config) ...
    python benchmarks/sst2_pretraining_helps.py --config configs/cpu_hour.yaml \
        --wikitext-dir ../shared/data/wikitext-2 --data-dir ../shared/data/SST-2 --seeds 1 2 3 --subset 2000
    # ... or from an existing pretraining checkpoint
    python benchmarks/sst2_pretraining_helps.py --pretrained runs/cpu_hour/checkpoints/last.ckpt \
        --data-dir ../shared/data/SST-2 --seeds 1 2 3 --subset 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lit_lm.lightning_cli import make_cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def pretrain(config: str, wikitext_dir: str, out: Path) -> str:
    """Run ``fit --config cli.yaml --config CONFIG`` and return its last checkpoint."""
    name = Path(config).stem
    args = ["fit", "--config", str(REPO / "cli.yaml"), "--config", config, "--data.data_dir", wikitext_dir,
            "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", name]
    make_cli(args)
    return str(out / name / "checkpoints" / "last.ckpt")


def fine_tune(arm: str, ckpt: str, data_dir: str, seed: int, subset: int | None, epochs: int, lr: float,
              max_len: int, out: Path, precision: str) -> dict:
    # the random arm: the same architecture (the checkpoint's encoder config) and tokenizer, random weights
    init = ["--model.pretrained", ckpt] if arm == "pretrained" else ["--data.tokenizer", ckpt, "--model.config", ckpt]
    name = f"{arm}-{'full' if subset is None else subset}-seed{seed}"
    args = ["fit", "--config", str(REPO / "configs" / "sst2.yaml"), *init,
            "--data.data_dir", data_dir, "--data.max_seq_len", str(max_len), "--data.num_workers", "0",
            "--data.cache_dir", str(out / "cache"), "--seed_everything", str(seed),
            "--trainer.precision", precision, "--trainer.accelerator", "cpu", "--trainer.max_epochs", str(epochs),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", name,
            "--model.lr", str(lr)]
    if subset is not None:
        args += ["--data.train_subset", str(subset), "--data.subset_seed", "0"]
    t0 = time.perf_counter()
    cli = make_cli(args)
    acc = float(cli.trainer.callback_metrics["val/acc"])
    return {"arm": arm, "train": "full" if subset is None else subset, "seed": seed, "dev_acc": acc,
            "steps": cli.trainer.global_step, "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", help="a lit-lm pretraining checkpoint (its tokenizer serves both arms)")
    p.add_argument("--config", help="without --pretrained: pretrain first with cli.yaml + this config")
    p.add_argument("--wikitext-dir", help="with --config: the corpus in the WikiText release layout")
    p.add_argument("--precision", default="32-true", help="fine-tuning precision (bf16-mixed on CPUs with AVX512-BF16)")
    p.add_argument("--data-dir", required=True, help="GLUE SST-2 directory (train.tsv, dev.tsv, test.tsv)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--subset", type=int, default=2000, help="size of the fixed small training set")
    p.add_argument("--epochs-full", type=int, default=1)
    p.add_argument("--epochs-subset", type=int, default=5)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--out", default="runs/sst2_compare")
    p.add_argument("--sizes", nargs="+", default=["subset", "full"], choices=["subset", "full"])
    a = p.parse_args()
    out = Path(a.out)
    if a.pretrained is None:
        if a.config is None or a.wikitext_dir is None:
            p.error("give --pretrained CKPT, or --config CONFIG and --wikitext-dir DIR to pretrain first")
        a.pretrained = pretrain(a.config, a.wikitext_dir, out)
        print(json.dumps({"pretrained": a.pretrained}), flush=True)
    results = []
    for size in a.sizes:
        subset, epochs = (a.subset, a.epochs_subset) if size == "subset" else (None, a.epochs_full)
        for seed in a.seeds:
            for arm in ("pretrained", "random"):
                r = fine_tune(arm, a.pretrained, a.data_dir, seed, subset, epochs, a.lr, a.max_len, out, a.precision)
                results.append(r)
                print(json.dumps(r), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| train set | arm | dev acc (mean ± sd) | per seed | steps | wall s (mean) |")
    print("|---|---|---|---|---|---|")
    for size in a.sizes:
        for arm in ("pretrained", "random"):
            rs = [r for r in results if r["arm"] == arm and (r["train"] == "full") == (size == "full")]
            accs = [100 * r["dev_acc"] for r in rs]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            label = "full (67,349)" if size == "full" else f"subset ({a.subset:,})"
            print(f"| {label} | {arm} | {statistics.mean(accs):.1f} ± {sd:.1f} | {', '.join(f'{x:.1f}' for x in accs)} | "
                  f"{rs[0]['steps']} | {statistics.mean(r['wall_s'] for r in rs):.0f} |")


if __name__ == "__main__":
    main()
