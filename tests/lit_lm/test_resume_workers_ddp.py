"""Exact resume where users run it, and BERT's second phase at a longer sequence length (README: Resume; Deviations).

- Loader workers (cli.yaml runs 4): a fit with ``num_workers 2`` SIGKILLed mid-epoch and resumed with
  ``--ckpt_path last`` replays the uninterrupted run's batches and ends with identical weights. The workers fetch
  batches ahead of the training step; the saved position counts the batches trained, not the ones fetched.
- DDP: a 2-rank CPU fit (gloo, one loader worker per rank) killed mid-epoch and resumed: every rank sees the
  uninterrupted run's samples again (the position is per rank), and the weights are identical.
- Two phases (BERT: 90% of the steps at length 128, then 10% at 512; here 32, then 64): resuming with another
  ``--data.max_seq_len`` says so in one line, continues at the saved global step on a fresh epoch of the new pairs,
  and the learning-rate schedule (``--model.schedule_steps``) runs on across the two runs.

Every fit is a real ``python -m lit_lm fit`` subprocess (SIGKILL needs a process of its own; Lightning's ``ddp``
relaunches the command once per rank), started in two waves of concurrent processes. About 65 s on the 2 shared,
loaded development cores.
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from data_modules.sampling import ResumableSampler
from data_modules.wikitext import WikiText103DataModule
from lit_lm.optim import lr_factor
from lit_lm.pretraining import MLMPretraining
from resume_helpers import (REPO, assert_same_weights_and_optimizer, finish, fit_config, launch_fit, load_checkpoint,
                            max_abs_diff, read_records)

KILLED = -signal.SIGKILL
NOTICE = "the training data differs from the checkpoint's"


def _datamodule(cache: Path, max_seq_len: int, **kwargs) -> WikiText103DataModule:
    # the data settings of configs/quickstart.yaml, so the cache is the one the fits use
    return WikiText103DataModule(data_dir=str(REPO / "data_modules/samples/wikitext"), cache_dir=str(cache),
                                 vocab_size=4096, max_seq_len=max_seq_len, num_workers=0, **kwargs)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The quickstart corpus preprocessed once for every fit below (the cache key ignores max_seq_len)."""
    cache = tmp_path_factory.mktemp("resume-cache")
    _datamodule(cache, 128).prepare_data()
    return cache


@pytest.fixture(scope="module")
def train_sizes(cache) -> dict[int, int]:
    """Train pairs per max_seq_len: BERT's walk cuts chunks to the target length, so a longer one makes fewer."""
    sizes = {}
    for max_seq_len in (32, 64, 128):
        dm = _datamodule(cache, max_seq_len)
        dm.setup("fit")
        sizes[max_seq_len] = len(dm.datasets["train"])
    assert sizes[32] > sizes[64] > sizes[128], sizes
    return sizes


def _write_config(tmp: Path, max_steps: int, every: int, batch_size: int, num_workers: int, extra: str) -> None:
    """The quickstart (tiny model, dropout 0.1, fp32) with frequent checkpoints and the recorders; ``extra`` is a
    second config file on top (one YAML document cannot name ``trainer`` twice)."""
    recorders = ["resume_helpers.Recorder", "resume_helpers.LrRecorder"]
    data = {"batch_size": batch_size, "num_workers": num_workers}
    (tmp / "test.yaml").write_text(fit_config(max_steps, every, recorders, data))
    (tmp / "extra.yaml").write_text(textwrap.dedent(extra))


def _fit(tmp: Path, run: str, cache: Path, record: str, *extra: str, kill_at: int | None = None):
    args = ["--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--config", str(tmp / "test.yaml"),
            "--config", str(tmp / "extra.yaml"), f"--trainer.logger.init_args.save_dir={tmp / run}",
            f"--data.cache_dir={cache}", *extra]
    env = {"LIT_LM_RECORD": str(tmp / f"{record}{{rank}}.jsonl"),
           "LIT_LM_LR_RECORD": str(tmp / f"{record}{{rank}}.lr.jsonl")}
    if kill_at is not None:
        args.append("--trainer.callbacks+=resume_helpers.KillAt")
        env["LIT_LM_KILL_AT"] = str(kill_at)
    return launch_fit(args, env)


def _finish_all(procs: dict[str, tuple]) -> dict[str, str]:
    """Wait for every fit (and clean up its process group) before failing on any."""
    outs, errors = {}, []
    for name, (proc, rc) in procs.items():
        try:
            outs[name] = finish(proc, rc)
        except Exception as e:  # noqa: BLE001 - reported below, after the others are done
            errors.append(f"{name}: {e}")
    assert not errors, "\n".join(errors)
    return outs


def _assert_same_weights_and_optimizer(tmp: Path) -> None:
    full = load_checkpoint(tmp / "full/quickstart/checkpoints/last.ckpt")
    resumed = load_checkpoint(tmp / "killed/quickstart/checkpoints/last.ckpt")
    assert_same_weights_and_optimizer(full, resumed)
    assert full["CorpusDataModule"] == resumed["CorpusDataModule"]


# ---- the fits: the uninterrupted, the doomed and phase 1 side by side, then the resumes and phase 2 -----------------

# loader workers: 474 pairs are 16 batches of 29 an epoch; the resume (from step 12) crosses into epoch 1
W_STEPS, W_EVERY, W_KILL = 20, 4, 14
# DDP: 8 batches of 28 per rank and epoch; the resume (from step 6) crosses into epoch 1
D_WORLD, D_BATCH, D_STEPS, D_EVERY, D_KILL = 2, 28, 12, 3, 7
DDP = ("--trainer.strategy", "ddp", "--trainer.devices", str(D_WORLD), "--trainer.accelerator", "cpu")
# phases: phase 1 (max_seq_len 32) stops at step 4 of an 18-step schedule, phase 2 (64) runs the rest; 729 pairs at
# 64 are 11 batches an epoch, so phase 2 runs the whole of epoch 0 on the new pairs and 3 batches of epoch 1
P_BATCH, P_WARMUP, P_SWITCH, P_STEPS = 64, 2, 4, 18


@pytest.fixture(scope="module")
def fits(tmp_path_factory, cache) -> dict:
    """All fits in two waves of concurrent processes (the start-up, imports and all, is most of each fit's time)."""
    w, d, p = (tmp_path_factory.mktemp(name) for name in ("resume-workers", "resume-ddp", "resume-phases"))
    # workers: a validation between the checkpoints, with its own (persistent) workers
    _write_config(w, W_STEPS, W_EVERY, 29, 2, """
        trainer:
          val_check_interval: 10
          limit_val_batches: 2
        """)
    _write_config(d, D_STEPS, D_EVERY, D_BATCH, 1, """
        trainer:
          limit_val_batches: 0
        """)
    _write_config(p, P_SWITCH, 2, P_BATCH, 0, f"""
        trainer:
          limit_val_batches: 0
        model:
          init_args:
            warmup_steps: {P_WARMUP}
            schedule_steps: {P_STEPS}
        data:
          init_args:
            max_seq_len: 32
        """)
    first = _finish_all({
        "workers full": (_fit(w, "full", cache, "full"), 0),
        "workers killed": (_fit(w, "killed", cache, "killed", kill_at=W_KILL), KILLED),
        "ddp full": (_fit(d, "full", cache, "full", *DDP), 0),
        "ddp killed": (_fit(d, "killed", cache, "killed", *DDP, kill_at=D_KILL), KILLED),
        "phase 1": (_fit(p, "run", cache, "phase1"), 0),
    })
    restored = {tmp: load_checkpoint(tmp / "killed/quickstart/checkpoints/last.ckpt")["global_step"] for tmp in (w, d)}
    second = _finish_all({
        "workers resumed": (_fit(w, "killed", cache, "resumed", "--ckpt_path", "last"), 0),
        "ddp resumed": (_fit(d, "killed", cache, "resumed", *DDP, "--ckpt_path", "last"), 0),
        "phase 2": (_fit(p, "run", cache, "phase2", "--data.max_seq_len", "64", "--trainer.max_steps", str(P_STEPS),
                         "--ckpt_path", "last"), 0),
    })
    for name in ("workers resumed", "ddp resumed", "phase 2"):
        assert "Restored all states from the checkpoint" in second[name], name
    for name in ("workers resumed", "ddp resumed"):
        assert NOTICE not in second[name], name  # the same data: nothing to say
    return {"workers": SimpleNamespace(tmp=w, restored=restored[w]), "ddp": SimpleNamespace(tmp=d, restored=restored[d]),
            "phases": SimpleNamespace(tmp=p, out1=first["phase 1"], out2=second["phase 2"])}


# ---- loader workers -----------------------------------------------------------------------------------------------


def test_workers_resume_replays_the_uninterrupted_batches(fits):
    tmp = fits["workers"].tmp
    full = read_records(tmp / "full0.jsonl")
    assert [r["step"] for r in full] == list(range(W_STEPS))
    assert [r["epoch"] for r in full] == [0] * 16 + [1] * (W_STEPS - 16)
    assert read_records(tmp / "killed0.jsonl") == full[: W_KILL + 1]  # the recorder sees the step the kill hits
    k = fits["workers"].restored
    assert k == W_KILL // W_EVERY * W_EVERY  # the last checkpoint before the kill, mid-epoch
    resumed = read_records(tmp / "resumed0.jsonl")
    assert [r["step"] for r in resumed] == list(range(k, W_STEPS))
    for r in resumed:  # same pairs, masks, NSP labels, epoch and position, and the same dropout RNG going in
        assert r == full[r["step"]], f"step {r['step']} differs:\n resumed {r}\n full    {full[r['step']]}"


def test_workers_resume_ends_with_identical_weights(fits):
    _assert_same_weights_and_optimizer(fits["workers"].tmp)


# ---- DDP, 2 ranks on CPU ------------------------------------------------------------------------------------------


def _without_rng(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "rng"}


def test_ddp_resume_gives_every_rank_the_uninterrupted_samples(fits, train_sizes):
    tmp, k = fits["ddp"].tmp, fits["ddp"].restored
    assert k == D_KILL // D_EVERY * D_EVERY
    resumed_ranks = []
    for rank in range(D_WORLD):
        full = read_records(tmp / f"full{rank}.jsonl")
        assert [r["step"] for r in full] == list(range(D_STEPS))
        for epoch in (0, 1):  # the uninterrupted run takes this rank's share of each epoch's permutation, in order
            ids = [i for r in full if r["epoch"] == epoch for i in r["index"]]
            expected = ResumableSampler(train_sizes[128], seed=42, num_replicas=D_WORLD, rank=rank).indices(epoch)
            assert ids == expected[: len(ids)].tolist(), f"rank {rank} epoch {epoch}"
        assert read_records(tmp / f"killed{rank}.jsonl") == full[: D_KILL + 1], f"rank {rank}"
        resumed = read_records(tmp / f"resumed{rank}.jsonl")
        assert [r["step"] for r in resumed] == list(range(k, D_STEPS)), f"rank {rank}"
        assert {r["epoch"] for r in resumed} == {0, 1}
        for r in resumed:  # same pairs, masks and NSP labels on this rank, step for step
            assert _without_rng(r) == _without_rng(full[r["step"]]), f"rank {rank} step {r['step']}"
        resumed_ranks.append(resumed)
    assert all(not set(a["index"]) & set(b["index"]) for a, b in zip(*resumed_ranks))  # still disjoint shards


def test_ddp_resume_restores_every_ranks_dropout_rng(fits):
    tmp = fits["ddp"].tmp
    for rank in range(D_WORLD):
        full = read_records(tmp / f"full{rank}.jsonl")
        for r in read_records(tmp / f"resumed{rank}.jsonl"):
            assert r["rng"] == full[r["step"]]["rng"], f"rank {rank} step {r['step']}"


def test_ddp_resume_ends_with_identical_weights(fits):
    _assert_same_weights_and_optimizer(fits["ddp"].tmp)


# ---- BERT's two phases: a longer max_seq_len on resume ------------------------------------------------------------


def test_phase_two_says_once_that_the_data_changed(fits, train_sizes):
    assert NOTICE not in fits["phases"].out1
    lines = [line for line in fits["phases"].out2.splitlines() if NOTICE in line]
    assert lines == [f"[data] {NOTICE} ({train_sizes[32]:,} samples at max_seq_len 32, now {train_sizes[64]:,} at "
                     f"max_seq_len 64): epoch 0 restarts at its first batch on the new data, global step {P_SWITCH} "
                     f"continues"], lines


def test_phase_two_continues_at_the_saved_step_on_a_fresh_epoch_of_the_new_pairs(fits, train_sizes):
    tmp = fits["phases"].tmp
    one, two = read_records(tmp / "phase10.jsonl"), read_records(tmp / "phase20.jsonl")
    assert [r["step"] for r in one] == list(range(P_SWITCH))
    assert [r["step"] for r in two] == list(range(P_SWITCH, P_STEPS))
    n = train_sizes[64]
    per_epoch = n // P_BATCH
    # the whole epoch on the new pairs (not the remainder of phase 1's epoch), then the next one
    assert [r["epoch"] for r in two] == [0] * per_epoch + [1] * (P_STEPS - P_SWITCH - per_epoch)
    assert [r["batch_idx"] for r in two] == list(range(per_epoch)) + list(range(P_STEPS - P_SWITCH - per_epoch))
    for epoch in (0, 1):  # each from the start of that epoch's permutation of the 64-token pairs
        ids = [i for r in two if r["epoch"] == epoch for i in r["index"]]
        assert ids == ResumableSampler(n, seed=42).indices(epoch)[: len(ids)].tolist(), f"epoch {epoch}"
    state = load_checkpoint(tmp / "run/quickstart/checkpoints/last.ckpt")
    assert state["global_step"] == P_STEPS
    assert state["CorpusDataModule"]["sampler"] == {"epoch": 1, "start": (P_STEPS - P_SWITCH - per_epoch) * P_BATCH}
    assert {k: v for k, v in state["CorpusDataModule"]["data"].items() if k != "digest"} == {
        "num_samples": n, "max_seq_len": 64}


def test_the_schedule_runs_on_across_the_phases(fits):
    tmp = fits["phases"].tmp
    lrs = read_records(tmp / "phase10.lr.jsonl") + read_records(tmp / "phase20.lr.jsonl")
    assert [r["step"] for r in lrs] == list(range(P_STEPS))
    # quickstart lr 1e-3; warmup, then linear decay to zero at schedule_steps, whichever run takes the step
    expected = [1e-3 * lr_factor(s, P_WARMUP, P_STEPS) for s in range(P_STEPS)]
    assert [r["lr"] for r in lrs] == pytest.approx(expected, rel=1e-9, abs=1e-15)


# ---- the pieces, in process ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_module() -> MLMPretraining:
    module = MLMPretraining(config="tiny", vocab_size=64, lr=1.0, warmup_steps=2)
    module._trainer = SimpleNamespace(estimated_stepping_batches=4)  # max_steps 4: all configure_optimizers asks
    return module


def _factors(module: MLMPretraining, steps: int, **hparams) -> list[float]:
    module.hparams.update({"schedule_steps": None, "budget": "steps", **hparams})
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    return [scheduler.lr_lambdas[0](s) for s in range(steps)]


def test_schedule_steps_sets_the_schedule_length_and_is_checked(tiny_module):
    assert _factors(tiny_module, 5) == [lr_factor(s, 2, 4) for s in range(5)]  # max_steps, as before
    assert _factors(tiny_module, 11, schedule_steps=10) == [lr_factor(s, 2, 10) for s in range(11)]
    with pytest.raises(ValueError, match=r"^--model.schedule_steps=3: expected >= --trainer.max_steps=4$"):
        _factors(tiny_module, 1, schedule_steps=3)
    with pytest.raises(ValueError, match="not with --model.budget time"):
        _factors(tiny_module, 1, schedule_steps=10, budget="time")


def test_resume_position_same_data_older_checkpoints_and_other_data(cache, train_sizes, capsys):
    """Exact on the checkpoint's data (and from checkpoints that did not record it); a fresh epoch on other data."""
    dm, other = _datamodule(cache, 32, batch_size=64), _datamodule(cache, 64)
    dm.setup("fit")
    other.setup("fit")
    same, changed = dm._train_identity(dm.datasets["train"]), other._train_identity(other.datasets["train"])
    assert same["num_samples"] == train_sizes[32] and changed["num_samples"] == train_sizes[64]

    def position(state: dict) -> tuple[int, int]:
        dm.load_state_dict(state)
        sampler = dm.train_dataloader().sampler
        return sampler.epoch, sampler.start

    end32, end64 = train_sizes[32] // 64 * 64, train_sizes[64] // 64 * 64  # where the epochs end, in samples
    assert position({"sampler": {"epoch": 2, "start": 128}}) == (2, 128)  # a checkpoint that did not say
    assert position({"sampler": {"epoch": 2, "start": 128}, "data": same}) == (2, 128)
    assert position({"sampler": {"epoch": 2, "start": end32}, "data": same}) == (3, 0)  # written at the epoch's end
    assert capsys.readouterr().err == ""
    assert position({"sampler": {"epoch": 2, "start": 128}, "data": changed}) == (2, 0)
    assert position({"sampler": {"epoch": 2, "start": end64}, "data": changed}) == (3, 0)  # the old epoch had ended
    # same length, other pairs (another seed or corpus)
    assert position({"sampler": {"epoch": 2, "start": 128}, "data": {**same, "digest": "0" * 16}}) == (2, 0)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith(f"[wikitext] {NOTICE} (") for line in err), err
    assert err[0].endswith(f"({train_sizes[64]:,} samples at max_seq_len 64, now {train_sizes[32]:,} at max_seq_len 32): "
                           f"epoch 2 restarts at its first batch on the new data")
