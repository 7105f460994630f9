"""Every path that reads a checkpoint a user names reads it weights-only: a tampered checkpoint carrying a pickled
call (here: one that creates a marker file) is refused in one line, exit code 2, and its code never runs.

Paths: ``fit/validate/predict --ckpt_path PATH`` (LightningCLI's hyper-parameter pre-read), ``--ckpt_path last``
(resolved and read by the trainer's strategy, also under ``--weights_only false`` and without AtomicCheckpointIO),
``--model.pretrained`` (a .ckpt or an HF directory's pytorch_model.bin), a .ckpt as ``--data.tokenizer`` or
``--model.config``, ``lit_lm.load``, ``lit-lm export``, and
FSDP: refused on a CPU before anything is read; on a GPU its own loader (an unrestricted unpickler) only runs after
the same weights-only read, which is tested here on Lightning's FSDPStrategy object itself.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from one_line import cli_error, run_main

from lit_lm.config import BertConfig

REFUSED = "refused by torch.load(weights_only=True)"


class _Payload:
    """Pickles as a call of ``open(marker, "w")``: a harmless stand-in for the code a tampered checkpoint runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    from data_modules.tokenizer import train_tokenizer

    return train_tokenizer(["a small corpus", "of two short sentences"], 60, show_progress=False).to_str()


@pytest.fixture
def bad(tmp_path, tokenizer_json) -> tuple[Path, Path]:
    """(a tampered checkpoint that looks like a lit-lm pretraining checkpoint, the marker its payload would create)."""
    marker = tmp_path / "code-ran"
    ckpt = {"lit_lm_kind": "pretraining", "bert_config": BertConfig.from_name("tiny").asdict(),
            "tokenizer": tokenizer_json, "state_dict": {"model.w": torch.zeros(8)}, "epoch": 0, "global_step": 1,
            "pytorch-lightning_version": L.__version__, "hyper_parameters": {"lr": _Payload(marker)}}
    path = tmp_path / "tampered.ckpt"
    torch.save(ckpt, path)
    # the control: an unrestricted load of this file does run the payload, so "no marker" below means something
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path, marker


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights-only-cache")  # the quickstart's prepared data, shared by the tests


def _pretrain(runs: Path, cache: Path) -> list[str]:
    return ["--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.max_steps=1",
            "--trainer.limit_val_batches=1", "--trainer.limit_predict_batches=1", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--data.num_workers=0", f"--data.cache_dir={cache}",
            f"--trainer.logger.init_args.save_dir={runs}"]


def _finetune(runs: Path) -> list[str]:
    return ["--config", "configs/quickstart_sst2.yaml", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", f"--data.cache_dir={runs / 'cache'}",
            f"--trainer.logger.init_args.save_dir={runs}"]


@pytest.mark.parametrize("command", [
    ["fit", "PRETRAIN", "--ckpt_path", "BAD"],
    ["validate", "FINETUNE", "--ckpt_path", "BAD"],
    ["predict", "FINETUNE", "--ckpt_path", "BAD"],
    # FSDP with a named file: LightningCLI's pre-read refuses it before the strategy (and its loader) exists
    ["fit", "PRETRAIN", "--trainer.strategy=fsdp", "--ckpt_path", "BAD"],
    ["fit", "FINETUNE", "--model.pretrained", "BAD"],
    ["fit", "FINETUNE", "--model.pretrained=null", "--data.tokenizer", "BAD"],
    ["fit", "FINETUNE", "--model.pretrained=null", "--data.tokenizer", "TOKENIZER", "--model.config", "BAD"],
    ["export", "BAD", "OUT"],
], ids=["fit", "validate", "predict", "fsdp", "pretrained", "tokenizer", "config", "export"])
def test_a_named_tampered_checkpoint_is_refused(command, bad, cache, tokenizer_json, tmp_path, capfd, monkeypatch):
    path, marker = bad
    (tmp_path / "tokenizer.json").write_text(tokenizer_json)
    expand = {"PRETRAIN": _pretrain(tmp_path / "runs", cache), "FINETUNE": _finetune(tmp_path / "runs"),
              "BAD": [str(path)], "OUT": [str(tmp_path / "hf")], "TOKENIZER": [str(tmp_path / "tokenizer.json")]}
    args = [a for word in command for a in expand.get(word, [word])]
    cli_error(args, capfd, monkeypatch, str(path), REFUSED)
    assert not marker.exists()
    assert not (tmp_path / "hf").exists()  # export wrote nothing


@pytest.mark.parametrize("subcommand,extra", [
    ("fit", []),
    # an explicit --weights_only false reaches the strategy's loader: it is read weights-only first all the same
    ("fit", ["--weights_only=false"]),
    ("validate", ["--weights_only=false"]),
    ("predict", ["--weights_only=false"]),
    # without AtomicCheckpointIO and with torch's default flipped by the environment, the guard still holds
    ("fit", ["--trainer.plugins=null", "ENV"]),
], ids=["fit", "fit-weights-only-false", "validate-weights-only-false", "predict-weights-only-false", "no-plugin"])
def test_ckpt_path_last_is_read_weights_only(subcommand, extra, bad, cache, tmp_path, capfd, monkeypatch):
    """``last`` is resolved by the trainer (LightningCLI's pre-read skips it) to the newest ``last*.ckpt`` in the
    ModelCheckpoint directory: ``<save_dir>/<logger name>/<version>/checkpoints``, ``version: ""`` in the configs."""
    path, marker = bad
    runs = tmp_path / "runs"
    last = runs / "quickstart" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    shutil.copy(path, last)
    if "ENV" in extra:
        extra = [a for a in extra if a != "ENV"]
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    cli_error([subcommand, *_pretrain(runs, cache), *extra, "--ckpt_path", "last"], capfd, monkeypatch,
              str(last), REFUSED)
    assert not marker.exists()


def test_fsdp_on_a_cpu_is_refused_before_any_checkpoint_is_read(bad, cache, tmp_path, capfd, monkeypatch):
    """Lightning refuses FSDP without a GPU when the trainer is built, before it resolves or reads ``last``."""
    path, marker = bad
    runs = tmp_path / "runs"
    last = runs / "quickstart" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    shutil.copy(path, last)
    # ours: one line naming the strategy (the reason after it is Lightning's wording), and the payload never ran
    cli_error(["fit", *_pretrain(runs, cache), "--trainer.strategy=fsdp", "--ckpt_path", "last"], capfd, monkeypatch,
              "fsdp")
    assert not marker.exists()


def _fsdp_strategy():
    from lightning.pytorch.strategies import FSDPStrategy

    strategy = FSDPStrategy()
    # what the trainer has attached by the time it restores (enough for the loader to get to the file)
    strategy.model = torch.nn.Linear(1, 1)
    strategy._lightning_module = L.LightningModule()
    return strategy


def test_fsdp_loader_is_unrestricted_and_the_guard_reads_weights_only_first(bad):
    """On a GPU the CLI's trainer restores through FSDPStrategy.load_checkpoint, whose lazy loader unpickles without
    restriction (the control); with the guard the CLI installs, the file is refused before that loader runs."""
    from lit_lm.callbacks import guard_checkpoint_reads

    path, marker = bad
    with contextlib.suppress(Exception):  # after the payload ran, the stand-in module does not fit the state dict
        _fsdp_strategy().load_checkpoint(path)
    assert marker.exists(), "Lightning's FSDP loader no longer runs pickled code: revisit the guard and the README"
    marker.unlink()

    strategy = _fsdp_strategy()
    guard_checkpoint_reads(strategy)
    with pytest.raises(ValueError) as e:
        strategy.load_checkpoint(path)
    message = str(e.value)
    assert message.startswith(f"{path}: not a readable checkpoint ({REFUSED}") and "\n" not in message, message
    assert not marker.exists()


def test_the_guard_refuses_a_sharded_checkpoint_directory(tmp_path):
    """torch.distributed.checkpoint reads a sharded checkpoint's .metadata with plain pickle.load: not read at all."""
    from lit_lm.callbacks import guard_checkpoint_reads

    sharded = tmp_path / "epoch=0-step=1.ckpt"
    sharded.mkdir()
    torch.save({"global_step": 1}, sharded / "meta.pt")
    strategy = _fsdp_strategy()
    guard_checkpoint_reads(strategy)
    with pytest.raises(ValueError, match=r"a directory \(a sharded FSDP checkpoint\?\); lit-lm reads single-file"):
        strategy.load_checkpoint(sharded)


def test_the_guard_passes_a_good_checkpoint_to_the_strategy(tmp_path, monkeypatch):
    from lightning.pytorch.strategies import SingleDeviceStrategy

    import lit_lm.callbacks as callbacks

    checks = []
    real_check = callbacks.check_weights_only
    monkeypatch.setattr(callbacks, "check_weights_only", lambda path: checks.append(path) or real_check(path))
    strategy = SingleDeviceStrategy(torch.device("cpu"), checkpoint_io=callbacks.AtomicCheckpointIO())
    callbacks.guard_checkpoint_reads(strategy)
    callbacks.guard_checkpoint_reads(strategy)  # idempotent: one weights-only read first, not two
    torch.save({"global_step": 3, "state_dict": {"w": torch.arange(4.0)}}, tmp_path / "good.ckpt")
    ckpt = strategy.load_checkpoint(tmp_path / "good.ckpt")
    assert ckpt["global_step"] == 3 and torch.equal(ckpt["state_dict"]["w"], torch.arange(4.0))
    assert checks == [tmp_path / "good.ckpt"]


def _hf_dir_with(pytorch_model_bin: Path, tokenizer_json: str, hf: Path) -> Path:
    from tokenizers import Tokenizer

    hf.mkdir()
    (hf / "config.json").write_text(json.dumps(BertConfig.from_name("tiny").to_hf_dict()))
    vocab = sorted(Tokenizer.from_str(tokenizer_json).get_vocab().items(), key=lambda kv: kv[1])
    (hf / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in vocab))
    shutil.copy(pytorch_model_bin, hf / "pytorch_model.bin")
    return hf


def test_pretrained_huggingface_directory_with_a_tampered_pytorch_model_bin_runs_no_code(bad, tokenizer_json, tmp_path,
                                                                                       capfd, monkeypatch):
    path, marker = bad
    hf = _hf_dir_with(path, tokenizer_json, tmp_path / "hf")
    code, output = run_main(["fit", *_finetune(tmp_path / "runs"), "--model.pretrained", str(hf)], capfd, monkeypatch)
    assert code == 2, output
    assert "Traceback" not in output and "refused by torch.load(weights_only=True)" in output  # the weights-only unpickler
    assert not marker.exists()


def test_pretrained_huggingface_directory_with_a_tampered_pytorch_model_bin_is_one_line(bad, tokenizer_json, tmp_path,
                                                                                      capfd, monkeypatch):
    path, _ = bad
    hf = _hf_dir_with(path, tokenizer_json, tmp_path / "hf")
    cli_error(["fit", *_finetune(tmp_path / "runs"), "--model.pretrained", str(hf)], capfd, monkeypatch,
              "pytorch_model.bin", REFUSED)


def test_lit_lm_load_refuses_in_one_line(bad):
    import lit_lm

    path, marker = bad
    with pytest.raises(ValueError) as e:
        lit_lm.load(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and REFUSED in message and "\n" not in message, message
    assert not marker.exists()
