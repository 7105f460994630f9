"""A 2-process CPU DDP fit (gloo) of the quickstart through the real command line, in a subprocess (Lightning's
``ddp`` relaunches the whole command once per extra rank). About 30-40 s on 2 cores.

Checks: the ranks' training samples never overlap and together follow the sampler's permutation (our sampler shards;
Lightning's automatic DistributedSampler is off), the logged validation metrics are those of both ranks' shards
together (recomputed here from per-rank counts), the checkpoint loads with ``weights_only=True`` and restores a
model, and no process group is left for the interpreter's exit.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data_modules.sampling import ResumableSampler
from resume_helpers import fit_config

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent

WORLD = 2
BATCH = 28
MAX_STEPS = 10  # ~474 pairs on the bundled corpus: 8 batches of 28 per rank and epoch, so it crosses into epoch 1
CONFIG = fit_config(MAX_STEPS, 5, ["resume_helpers.Recorder", "resume_helpers.ValRecorder",
                                     "resume_helpers.ValShardCounts", "resume_helpers.SamplerProbe"],
                    data={"batch_size": BATCH, "num_workers": 0}, val_check_interval=5, limit_val_batches=2)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "ddp.yaml").write_text(CONFIG)
    args = [sys.executable, "-m", "lit_lm", "fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml",
            "--config", str(tmp / "ddp.yaml"), "--trainer.strategy", "ddp", "--trainer.devices", str(WORLD),
            "--trainer.accelerator", "cpu", f"--trainer.logger.init_args.save_dir={tmp / 'runs'}",
            f"--data.cache_dir={tmp / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")]),
           "LIT_LM_RECORD": str(tmp / "train{rank}.jsonl"), "LIT_LM_VAL_RECORD": str(tmp / "val{rank}.jsonl"),
           "LIT_LM_VAL_COUNTS": str(tmp / "valcounts{rank}.jsonl"),
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


def _metrics_of(batches: list[dict]) -> dict[str, float]:
    """The validation metrics over these batches, as defined (token- and pair-weighted means, not batch means)."""
    n = sum(b["n_masked"] for b in batches)
    pairs = sum(b["n_pairs"] for b in batches)
    mlm_loss = sum(b["mlm_loss_sum"] for b in batches) / n
    return {"val/mlm_loss": mlm_loss, "val/perplexity": math.exp(mlm_loss),
            "val/mlm_acc": sum(b["mlm_right"] for b in batches) / n,
            "val/nsp_loss": sum(b["nsp_loss_sum"] for b in batches) / pairs,
            "val/nsp_acc": sum(b["nsp_right"] for b in batches) / pairs}


def test_logged_validation_metrics_are_those_of_both_shards_together(ddp_run):
    """Each rank validates its own shard; the value logged (on every rank) must be the metric over the union of the
    shards, as torchmetrics' sync in ``compute()`` gives. Without that sync, Lightning's ``sync_dist=True`` would
    still make the ranks agree, on the mean of the two shard values: mlm_acc tells the two apart, because the shards
    hold different numbers of masked tokens (checked below, so the comparison can fail)."""
    tmp = ddp_run["tmp"]
    vals = [_jsonl(tmp / f"val{rank}.jsonl") for rank in range(WORLD)]
    counts = [_jsonl(tmp / f"valcounts{rank}.jsonl") for rank in range(WORLD)]
    assert [v["step"] for v in vals[0]] == [5, 10] and [c["step"] for c in counts[0]] == [5, 10]
    for i, step in enumerate([5, 10]):
        shards = [counts[rank][i]["batches"] for rank in range(WORLD)]
        seen = [[j for b in shard for j in b["index"]] for shard in shards]
        assert seen[0] and not set(seen[0]) & set(seen[1]), "the ranks validated overlapping samples"
        for rank in range(WORLD):
            assert seen[rank] == vals[rank][i]["index"]  # the counts cover exactly what the rank validated
        union = _metrics_of(shards[0] + shards[1])
        logged_by_rank = [{k: v for k, v in vals[rank][i].items() if k.startswith("val/")} for rank in range(WORLD)]
        baselines = {"val/baseline_unigram_acc", "val/baseline_left_bigram_acc", "val/baseline_both_neighbours_acc"}
        for rank, logged in enumerate(logged_by_rank):
            assert set(logged) == set(union) | baselines
            assert {k: logged[k] for k in baselines} == {k: logged_by_rank[0][k] for k in baselines}
            for name, expected in union.items():
                # float32 sums in the metrics; exp() turns the loss's rounding into a relative one on perplexity
                rel = 5e-6 if name == "val/perplexity" else 1e-6
                assert logged[name] == pytest.approx(expected, rel=rel), f"step {step} rank {rank} {name}"
        # The data can tell a correct sync from the ways it goes wrong, a rank's own shard or the mean of the two
        # shards' values: mlm_acc, a ratio of integer counts over shards of different sizes, differs from both by
        # far more than the tolerance above. (The NSP shards are equal in size, so their mean is their union.)
        assert sum(b["n_masked"] for b in shards[0]) != sum(b["n_masked"] for b in shards[1])
        own = [_metrics_of(shard)["val/mlm_acc"] for shard in shards]
        for wrong in (*own, sum(own) / 2):
            assert abs(wrong - union["val/mlm_acc"]) > 2e-5 * union["val/mlm_acc"], f"step {step}: {own}"


def test_checkpoint_loads_safely_and_restores_a_model(ddp_run):
    from lit_lm.pretraining import MLMPretraining

    path = ddp_run["tmp"] / "runs/quickstart/checkpoints/last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == MAX_STEPS
    assert all(k.startswith("model.") for k in ckpt["state_dict"])  # no DDP "module." wrapper in the keys
    # the sampler position is per rank and the same on every rank: 2 batches into epoch 1
    assert ckpt["CorpusDataModule"]["sampler"] == {"epoch": 1, "start": (MAX_STEPS - 8) * BATCH}
    module = MLMPretraining.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
    for k, v in module.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k]), k
    ids = torch.tensor([[2, 10, 11, 12, 3, 13, 14, 3]])
    with torch.no_grad():
        mlm, nsp = module.model(ids, torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]]))
    assert torch.isfinite(mlm).all() and torch.isfinite(nsp).all()
