"""Exact resume: a quickstart fit SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` sees the same batches,
masks and dropout RNG as an uninterrupted run and ends with identical weights; so does a fit resumed from the
checkpoint written at the end of an epoch. Every fit is a real ``python -m lit_lm fit`` subprocess (SIGKILL needs a
process of its own).

Runs (about 70 s on 2 idle cores): the uninterrupted and the killed fit side by side, then the two resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from resume_helpers import assert_same_weights_and_optimizer, fit_config, load_checkpoint, max_abs_diff

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent

MAX_STEPS = 20
EVERY = 4  # checkpoint interval: steps 4, 8, 12, 16, 20
BATCHES_PER_EPOCH = 16  # the bundled corpus gives ~474 pairs: 16 batches of 29 (checked below)
KILL_AT = 11  # mid-epoch; the last checkpoint before it is step 8

# The quickstart (tiny model, dropout 0.1, one loader worker, fp32) with batch 29, frequent checkpoints and the
# recorder; a validation run at step 8 sits between two checkpoints.
def _config(max_steps: int = MAX_STEPS, every: int = EVERY, **trainer) -> str:
    return fit_config(max_steps, every, ["resume_helpers.Recorder"], data={"batch_size": 29, "num_workers": 1},
                      val_check_interval=8, limit_val_batches=2, **trainer)


def _fit(tmp: Path, run: str, record: str, kill_at: int | None = None, ckpt_path: str | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "lit_lm", "fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml",
            "--config", str(tmp / "resume.yaml"), f"--trainer.logger.init_args.save_dir={tmp / run}",
            f"--data.cache_dir={tmp / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIT_LM_RECORD": str(tmp / record),
           "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}
    if kill_at is not None:
        args.append("--trainer.callbacks+=resume_helpers.KillAt")
        env["LIT_LM_KILL_AT"] = str(kill_at)
    if ckpt_path is not None:
        args += ["--ckpt_path", ckpt_path]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, expect_rc: int) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == expect_rc, f"exit {proc.returncode}, expected {expect_rc}:\n{out[-3000:]}"
    return out


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]




@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("resume")
    (tmp / "resume.yaml").write_text(_config())
    # the uninterrupted run and the doomed one side by side (both may build the cache: the build is atomic)
    full = _fit(tmp, "full", "full.jsonl")
    killed = _fit(tmp, "killed", "killed.jsonl", kill_at=KILL_AT)
    _finish(killed, -signal.SIGKILL)
    _finish(full, 0)
    k = load_checkpoint(tmp / "killed/quickstart/checkpoints/last.ckpt")["global_step"]
    (tmp / "restored.json").write_text(json.dumps({"killed": k, "boundary": BATCHES_PER_EPOCH}))
    # the second resume starts from the checkpoint written at the end of epoch 0 (its sampler position is the
    # epoch's end: the data module must roll over to epoch 1, and Lightning must not replay or skip a batch)
    (start,) = (tmp / "full/quickstart/checkpoints").glob(f"epoch=0-step={BATCHES_PER_EPOCH}.ckpt")
    resumes = [_fit(tmp, "killed", "resumed_killed.jsonl", ckpt_path="last"),
               _fit(tmp, "boundary", "resumed_boundary.jsonl", ckpt_path=str(start))]
    for proc in resumes:
        assert "Restored all states from the checkpoint" in _finish(proc, 0)
    return tmp


def test_the_run_crosses_an_epoch_boundary(runs):
    full = _records(runs / "full.jsonl")
    assert [r["step"] for r in full] == list(range(MAX_STEPS))
    epochs = [r["epoch"] for r in full]
    assert epochs == [0] * BATCHES_PER_EPOCH + [1] * (MAX_STEPS - BATCHES_PER_EPOCH)
    # within an epoch no pair repeats; the next epoch is another permutation
    ids0 = [i for r in full[:BATCHES_PER_EPOCH] for i in r["index"]]
    assert len(set(ids0)) == len(ids0)
    assert full[BATCHES_PER_EPOCH]["index"] != full[0]["index"]


def test_two_fresh_runs_agree(runs):
    full, killed = _records(runs / "full.jsonl"), _records(runs / "killed.jsonl")
    assert [r["step"] for r in killed] == list(range(KILL_AT + 1))  # the recorder sees the step the kill hits
    assert killed == full[: KILL_AT + 1]


@pytest.mark.parametrize("run", ["killed", "boundary"])
def test_resume_restarts_at_the_last_checkpoint_and_replays_the_same_steps(runs, run):
    full = {r["step"]: r for r in _records(runs / "full.jsonl")}
    k = json.loads((runs / "restored.json").read_text())[run]
    if run == "killed":
        assert k == (KILL_AT // EVERY) * EVERY and 0 < k < KILL_AT  # the checkpoint written last before the kill
    resumed = _records(runs / f"resumed_{run}.jsonl")
    steps = [r["step"] for r in resumed]
    assert steps == list(range(k, MAX_STEPS)), steps  # restored at k, ran only the remaining steps
    print(f"\n{run}: restored step {k}, {len(steps)} steps run after the resume ({steps[0]}..{steps[-1]})")
    for r in resumed:
        # same pairs, same masks (digest of input_ids + labels), same NSP labels, same epoch and position,
        # and the same global RNG state going into the step (dropout)
        assert r == full[r["step"]], f"step {r['step']} differs:\n resumed {r}\n full    {full[r['step']]}"


@pytest.mark.parametrize("run", ["killed", "boundary"])
def test_final_weights_and_optimizer_state_are_identical(runs, run):
    full = load_checkpoint(runs / "full/quickstart/checkpoints/last.ckpt")
    resumed = load_checkpoint(runs / run / "quickstart/checkpoints/last.ckpt")
    assert full["global_step"] == MAX_STEPS
    assert_same_weights_and_optimizer(full, resumed, run)
    assert full["lr_schedulers"] == resumed["lr_schedulers"]


def test_intermediate_checkpoints_written_after_a_resume_match(runs):
    """Checkpoints the resumed runs wrote (and a later resume would start from) hold the same weights and the
    same sampler position as the uninterrupted run's at that step."""
    for step in range(EVERY * 3, MAX_STEPS, EVERY):  # 12 and 16 were written by the resumed run
        (name,) = [p.name for p in (runs / "full/quickstart/checkpoints").glob(f"epoch=*-step={step}.ckpt")]
        a, b = load_checkpoint(runs / "full/quickstart/checkpoints" / name), load_checkpoint(runs / "killed/quickstart/checkpoints" / name)
        assert max_abs_diff(a["state_dict"], b["state_dict"]) == 0.0, name
        assert a["CorpusDataModule"] == b["CorpusDataModule"], name
        assert torch.equal(a["rng_states"]["torch"], b["rng_states"]["torch"]), name


def test_no_temporary_checkpoint_files_survive_the_kills(runs):
    ckpts = runs / "killed/quickstart/checkpoints"
    assert not [p.name for p in ckpts.iterdir() if p.name.startswith(".")]


def test_resume_with_gradient_accumulation(tmp_path):
    """The main config accumulates 8 batches per step: with 2 here, a run killed mid-epoch resumes at the last
    optimizer step's checkpoint, replays the same batches and ends with identical weights."""
    (tmp_path / "resume.yaml").write_text(_config(10, 3, accumulate_grad_batches=2))
    full, killed = _fit(tmp_path, "full", "full.jsonl"), _fit(tmp_path, "killed", "killed.jsonl", kill_at=7)
    _finish(killed, -signal.SIGKILL)
    _finish(full, 0)
    assert load_checkpoint(tmp_path / "killed/quickstart/checkpoints/last.ckpt")["global_step"] == 6
    _finish(_fit(tmp_path, "killed", "resumed.jsonl", ckpt_path="last"), 0)
    full_records, resumed = _records(tmp_path / "full.jsonl"), _records(tmp_path / "resumed.jsonl")
    assert len(full_records) == 20 and len(resumed) == 8  # batches 12..19 (steps 6..9), nothing replayed or skipped
    assert resumed == full_records[12:]
    a = load_checkpoint(tmp_path / "full/quickstart/checkpoints/last.ckpt")["state_dict"]
    b = load_checkpoint(tmp_path / "killed/quickstart/checkpoints/last.ckpt")["state_dict"]
    assert max_abs_diff(a, b) == 0.0


# ---- untrusted checkpoint files: never run their code, fail in one line -------------------------------------------


class _Payload:
    """Pickles as a call of ``open(marker, "w")``: a harmless stand-in for code a tampered checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def bad_checkpoints(tmp_path) -> dict[str, Path]:
    """A good-looking lit-lm checkpoint, a truncated copy, and a tampered one with a pickled call in it."""
    from data_modules.tokenizer import train_tokenizer
    from lit_lm.config import BertConfig

    tok = train_tokenizer(["a small corpus", "of two sentences"], 50, show_progress=False)
    good = {"state_dict": {"model.w": torch.zeros(2000)}, "lit_lm_kind": "pretraining",
            "bert_config": BertConfig.from_name("tiny").asdict(), "tokenizer": tok.to_str(), "global_step": 1}
    paths = {name: tmp_path / f"{name}.ckpt" for name in ("good", "truncated", "tampered")}
    torch.save(good, paths["good"])
    data = paths["good"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    marker = tmp_path / "code-ran"
    torch.save({**good, "tokenizer": _Payload(marker)}, paths["tampered"])
    # the control: an unsafe load of the tampered file does run the payload
    torch.load(paths["tampered"], weights_only=False)
    assert marker.exists()
    marker.unlink()
    paths["marker"] = marker
    return paths


def _one_line_error(fn, path: Path) -> str:
    with pytest.raises(ValueError) as e:
        fn(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and "\x1b" not in message, message
    return message


@pytest.mark.parametrize("loader", ["read_checkpoint", "load_tokenizer", "api.load", "AtomicCheckpointIO"])
@pytest.mark.parametrize("damage", ["truncated", "tampered"])
def test_bad_checkpoint_files_are_one_line_errors_and_run_no_code(bad_checkpoints, loader, damage):
    from data_modules.tokenizer import load_tokenizer
    from lit_lm.api import load
    from lit_lm.callbacks import AtomicCheckpointIO
    from lit_lm.classification import read_checkpoint

    fn = {"read_checkpoint": read_checkpoint, "load_tokenizer": load_tokenizer, "api.load": load,
          "AtomicCheckpointIO": AtomicCheckpointIO().load_checkpoint}[loader]
    message = _one_line_error(fn, bad_checkpoints[damage])
    assert "not a readable" in message
    if damage == "tampered":
        assert "refused by torch.load(weights_only=True): Unsupported global: GLOBAL io.open" in message
    assert not bad_checkpoints["marker"].exists()
    assert read_checkpoint(bad_checkpoints["good"])["global_step"] == 1  # the fixture's good file does load


def test_every_torch_load_in_the_package_is_weights_only():
    root = Path(__file__).resolve().parents[2]
    calls = [(p, n, line) for pkg in ("lit_lm", "data_modules") for p in sorted((root / pkg).rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if "torch.load(" in line]
    assert calls
    unsafe = [f"{p.relative_to(root)}:{n}: {line.strip()}" for p, n, line in calls if "weights_only=True" not in line]
    assert not unsafe, unsafe


@pytest.mark.parametrize("damage", ["truncated", "tampered"])
def test_cli_ckpt_path_of_a_bad_file_is_a_one_line_error(bad_checkpoints, damage, tmp_path_factory, monkeypatch, capfd):
    """``fit --ckpt_path`` reads through AtomicCheckpointIO (cli.yaml's plugin): weights-only, one line, exit 2."""
    from one_line import cli_error

    cache = tmp_path_factory.getbasetemp() / "resume-cli-cache"  # shared by both cases
    path = bad_checkpoints[damage]
    line = cli_error(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.max_steps=1",
                      "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                      "--data.num_workers=0", f"--trainer.logger.init_args.save_dir={path.parent / 'runs'}",
                      f"--data.cache_dir={cache}", "--ckpt_path", str(path)], capfd, monkeypatch)
    assert line.startswith(f"lit-lm: error: {path}: not a readable checkpoint ("), line
    assert not bad_checkpoints["marker"].exists()


def test_resume_refuses_a_config_that_changes_the_architecture(quickstart_run, tmp_path, capfd, monkeypatch):
    """A checkpoint resumed under overrides that build another model (ALiBi has no weights, so it would load) is a
    one-line error; a dropout change is allowed."""
    import shutil

    from one_line import cli_error, run_main

    ckpt_dir = tmp_path / "quickstart" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    shutil.copy(quickstart_run / "checkpoints" / "last.ckpt", ckpt_dir / "last.ckpt")
    resume = ["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.max_steps=31",
              "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={tmp_path}",
              f"--data.cache_dir={quickstart_run.parent / 'cache'}", "--ckpt_path", "last"]
    line = cli_error([*resume, "--model.config_overrides={relative_positions: alibi}"], capfd, monkeypatch,
                     "--ckpt_path: the checkpoint's model has relative_positions='none'", "relative_positions='alibi'")
    assert "resume with the config it was trained with" in line
    code, out = run_main([*resume, "--model.config_overrides={hidden_dropout: 0.0}"], capfd, monkeypatch)
    assert code == 0, out
    assert "pretraining: 31 steps in" in out  # resumed at step 30, trained one more
