"""What a run prints: progress lines (not bars) off a terminal, steps against max_steps, the model summary's FLOPs,
no library advertisement or pytree deprecation, a summary line at the end (with the peak memory), tensors read only
on the steps that report, and --trainer.default_root_dir."""

from __future__ import annotations

import re
import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_lm import console
from lit_lm.console import ModelSummary, ProgressBar, quiet_library_notices
from lit_lm.flops import training_flops
from one_line import run_main
from syncs import SyncCounter
from tiny_fit import TinyRegression


def _loader(n: int = 8) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(n, 4)), batch_size=2)  # n / 2 batches an epoch


def _fit(bar: ProgressBar, tmp_path, **trainer) -> L.Trainer:
    t = L.Trainer(max_steps=6, max_epochs=-1, callbacks=[bar], logger=False, enable_checkpointing=False,
                  enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0, **trainer)
    t.fit(TinyRegression(), _loader(), _loader())
    return t


def test_off_a_terminal_progress_is_lines_every_n_steps(tmp_path, capsys):
    _fit(ProgressBar(interactive=False), tmp_path, log_every_n_steps=2, val_check_interval=4)
    out = capsys.readouterr().out
    assert "\r" not in out and "it/s" not in out  # no tqdm bar refreshes
    steps = re.findall(r"^step (\d+)/6 \((\d+)%\) · epoch (\d) · train/loss [\d.e-]+ · [\d.]+ steps/s · elapsed "
                       r"0:00:\d\d, left \d:\d\d:\d\d$", out, flags=re.M)
    assert [s[0] for s in steps] == ["2", "4", "6"] and steps[1][1] == "67" and steps[2][2] == "1"
    assert re.findall(r"^validation at step (\d+): val/acc 25\.0%$", out, flags=re.M) == ["4"]


def test_in_a_terminal_the_bar_counts_steps_against_max_steps(tmp_path):
    bar = ProgressBar(interactive=True)
    _fit(bar, tmp_path, log_every_n_steps=2)
    train = bar.train_progress_bar
    # two epochs of 4 batches: the bar ran to max_steps=6, across the epoch boundary, with no bogus epoch total
    assert (train.total, train.n) == (6, 6) and train.desc.rstrip(": ") == "Epoch 1 · step"


@pytest.mark.parametrize("interactive, limit", [(False, dict(max_steps=-1, max_epochs=2)),  # Lightning's batch path
                                                (True, dict(max_steps=10, max_epochs=-1))],  # the bar's postfix
                         ids=["lines-epoch-limited", "bar-step-limited"])
def test_tensors_are_read_only_on_the_steps_that_report(tmp_path, capsys, interactive, limit):
    bar = ProgressBar(interactive=interactive)
    trainer = L.Trainer(callbacks=[bar], logger=False, enable_checkpointing=False, enable_model_summary=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0, log_every_n_steps=5, **limit)
    # every host read of a tensor made while console.py is on the stack, itself or through Lightning (tests/lit_lm/syncs.py)
    reads = SyncCounter(within=console.__file__, when=lambda: trainer.global_step)
    with reads:
        trainer.fit(TinyRegression(), _loader(10), _loader(4))  # 5 batches an epoch, 10 steps, validation after each epoch
    assert trainer.global_step == 10
    # steps 5 and 10 print (or refresh the bar's metrics) and end a validation; the other eight read nothing
    assert set(reads.moments) == {5, 10}, reads.calls


def test_summary_shows_training_flops_not_a_column_of_zeros(tmp_path, caplog):
    from data_modules.wikitext import SAMPLE_DIR, WikiText103DataModule
    from lit_lm.pretraining import MLMPretraining

    dm = WikiText103DataModule(data_dir=str(SAMPLE_DIR), cache_dir=str(tmp_path), vocab_size=300, batch_size=4,
                               max_seq_len=32, num_workers=0)
    model = MLMPretraining(config="tiny", vocab_size=300)
    caplog.set_level("INFO")
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[ModelSummary()], limit_val_batches=0,
                        accumulate_grad_batches=2, default_root_dir=tmp_path)
    trainer.fit(model, dm)
    text = caplog.text
    assert "FLOPs" not in text.split("Trainable params")[0] and "Total Flops" not in text  # no column, no zero total
    expected = 2 * training_flops(model.config, 4 * 32, 32, round(0.15 * 4 * 32))
    from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

    assert re.search(rf"^{re.escape(get_human_readable_count(expected))} +Training FLOPs per optimizer step and "
                     rf"device \(full sequences: 2 x 4 x 32 tokens", text, flags=re.M), text


def test_library_notices_are_silenced_by_name_and_other_warnings_stay(caplog):
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.utilities._pytree import _tree_flatten

    caplog.set_level("INFO")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_notices()
        L.Trainer(logger=CSVLogger("unused"), enable_progress_bar=False)
        _tree_flatten({"a": 1})  # Lightning's pytree helper builds the deprecated LeafSpec
        warnings.warn("a warning about the user's run", FutureWarning)
    assert "litlogger" not in caplog.text and "GPU available" in caplog.text  # the run's own lines stay
    messages = [str(w.message) for w in caught]
    assert not any("LeafSpec" in m for m in messages) and "a warning about the user's run" in messages


PEAK_MEMORY = (r"peak memory: main process \d+\.\d\d GB RSS"
               r"(, \d+ workers?( \d+\.\d\d GB PSS)? \(each up to \d+\.\d\d GB RSS\))?")  # no CUDA on a CPU run


def test_fit_ends_with_a_summary_line_and_honours_default_root_dir(quickstart_run, tmp_path, capfd, monkeypatch):
    pretraining = (quickstart_run / "summary.txt").read_text()
    assert re.fullmatch(r"pretraining: 30 steps in \d:\d\d:\d\d; val/mlm_acc \d+\.\d%, val/perplexity [\d.]+, val/nsp_acc \d+\.\d%; "
                        rf"{PEAK_MEMORY}; checkpoint {re.escape(str(quickstart_run))}/checkpoints/last\.ckpt; logs .*\n", pretraining)
    root = tmp_path / "elsewhere"
    code, out = run_main(["fit", "--config", "configs/quickstart_sst2.yaml",
                          f"--model.pretrained={quickstart_run / 'checkpoints' / 'last.ckpt'}",
                          "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=2",
                          f"--trainer.default_root_dir={root}",
                          f"--data.cache_dir={tmp_path / 'cache'}"], capfd, monkeypatch)
    assert code == 0, out
    run = root / "quickstart_sst2"  # DIR/<logger name>/, not runs/
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    line = (run / "summary.txt").read_text().strip()
    assert re.fullmatch(rf"fine-tuning \(sst2\): 2 steps in \d:\d\d:\d\d; val/acc \d+\.\d%; {PEAK_MEMORY}; checkpoint "
                        rf"{re.escape(str(run))}/checkpoints/last\.ckpt; logs {re.escape(str(run))}/?", line), line
    assert line in out.splitlines()
