"""A 2-process CPU DDP fit (gloo) of the quickstart through the real command line, in a subprocess (Lightning's
``ddp`` relaunches the whole command once per extra rank). About 30-40 s on 2 cores.

Checks: the ranks' training samples never overlap and together follow the sampler's permutation (our sampler shards;
Lightning's automatic DistributedSampler is off), validation metrics are synced across ranks, the checkpoint loads
with ``weights_only=True`` and restores a model, and no process group is left for the interpreter's exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from data_modules.sampling import ResumableSampler

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent

WORLD = 2
BATCH = 28
MAX_STEPS = 10  # ~474 pairs on the bundled corpus: 8 batches of 28 per rank and epoch, so it crosses into epoch 1
CONFIG = f"""
trainer:
  max_steps: {MAX_STEPS}
  val_check_interval: 5
  limit_val_batches: 2
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        every_n_train_steps: 5
        save_last: true
        save_top_k: -1
    - class_path: lit_lm.callbacks.DivergenceGuard
    - class_path: resume_helpers.Recorder
    - class_path: resume_helpers.ValRecorder
    - class_path: resume_helpers.SamplerProbe
data:
  init_args:
    batch_size: {BATCH}
    num_workers: 0
"""


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "ddp.yaml").write_text(textwrap.dedent(CONFIG))
    args = [sys.executable, "-m", "lit_lm", "fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml",
            "--config", str(tmp / "ddp.yaml"), "--trainer.strategy", "ddp", "--trainer.devices", str(WORLD),
            "--trainer.accelerator", "cpu", f"--trainer.logger.init_args.save_dir={tmp / 'runs'}",
            f"--data.cache_dir={tmp / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")]),
           "LIT_LM_RECORD": str(tmp / "train{rank}.jsonl"), "LIT_LM_VAL_RECORD": str(tmp / "val{rank}.jsonl"),
           "LIT_LM_PROBE": str(tmp / "probe{rank}.json")}
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    print(f"\n2-rank DDP fit, {MAX_STEPS} steps: {seconds:.1f} s wall (subprocess, imports included)")
    return {"tmp": tmp, "out": out}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_exits_cleanly_with_the_process_group_destroyed(ddp_run):
    out = ddp_run["out"]
    assert "Traceback" not in out and "terminate called" not in out and "Aborted" not in out
    for rank in range(WORLD):
        at_exit = json.loads((ddp_run["tmp"] / f"probe{rank}.json.atexit").read_text())
        assert at_exit == {"process_group_initialized": False}, f"rank {rank}"


def test_our_sampler_shards_and_lightnings_is_off(ddp_run):
    for rank in range(WORLD):
        probe = json.loads((ddp_run["tmp"] / f"probe{rank}.json").read_text())
        assert probe["sampler"] == "ResumableSampler" and probe["use_distributed_sampler"] is False
        assert (probe["num_replicas"], probe["rank"], probe["world_size"], probe["global_rank"]) == (WORLD, rank, WORLD, rank)
        assert probe["backend"] == "gloo"
        assert probe["len"] == probe["num_samples"] // WORLD


def test_ranks_see_disjoint_samples_in_the_sampler_order(ddp_run):
    tmp = ddp_run["tmp"]
    n = json.loads((tmp / "probe0.json").read_text())["num_samples"]
    records = [_jsonl(tmp / f"train{rank}.jsonl") for rank in range(WORLD)]
    for recs in records:
        assert [r["step"] for r in recs] == list(range(MAX_STEPS))
    for step in range(MAX_STEPS):
        a, b = (set(recs[step]["index"]) for recs in records)
        assert not a & b, f"step {step}: ranks share samples {sorted(a & b)}"
    epochs = sorted({r["epoch"] for r in records[0]})
    assert epochs == [0, 1]
    for epoch in epochs:
        seen = []
        for rank, recs in enumerate(records):
            ids = [i for r in recs if r["epoch"] == epoch for i in r["index"]]
            # exactly this rank's share of the epoch's permutation, in order
            expected = ResumableSampler(n, seed=42, num_replicas=WORLD, rank=rank).indices(epoch)[: len(ids)]
            assert ids == expected.tolist(), f"rank {rank} epoch {epoch}"
            seen += ids
        assert len(seen) == len(set(seen)), f"epoch {epoch}: a sample was trained on twice"


def test_validation_metrics_are_synced_across_ranks(ddp_run):
    tmp = ddp_run["tmp"]
    vals = [_jsonl(tmp / f"val{rank}.jsonl") for rank in range(WORLD)]
    assert [v["step"] for v in vals[0]] == [5, 10]
    for v0, v1 in zip(*vals):
        # each rank validated its own shard ...
        assert v0["index"] and not set(v0["index"]) & set(v1["index"])
        # ... and logged the metrics of both shards (torchmetrics syncs in compute())
        m0 = {k: v for k, v in v0.items() if k.startswith("val/")}
        m1 = {k: v for k, v in v1.items() if k.startswith("val/")}
        assert set(m0) == {"val/mlm_loss", "val/nsp_loss", "val/mlm_acc", "val/nsp_acc", "val/perplexity",
                           "val/baseline_unigram_acc", "val/baseline_left_bigram_acc", "val/baseline_both_neighbours_acc"}
        assert m0 == m1


def test_checkpoint_loads_safely_and_restores_a_model(ddp_run):
    from lit_lm.pretraining import MLMPretraining

    path = ddp_run["tmp"] / "runs/quickstart/checkpoints/last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == MAX_STEPS
    assert all(k.startswith("model.") for k in ckpt["state_dict"])  # no DDP "module." wrapper in the keys
    # the sampler position is per rank and the same on every rank: 2 batches into epoch 1
    assert ckpt["WikiText103DataModule"] == {"sampler": {"epoch": 1, "start": (MAX_STEPS - 8) * BATCH}}
    module = MLMPretraining.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
    for k, v in module.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k]), k
    ids = torch.tensor([[2, 10, 11, 12, 3, 13, 14, 3]])
    with torch.no_grad():
        mlm, nsp = module.model(ids, torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]]))
    assert torch.isfinite(mlm).all() and torch.isfinite(nsp).all()
