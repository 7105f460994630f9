"""MLM+NSP pretraining: the module's losses, the quickstart through the real CLI, and real WikiText-2."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_lm.config import BertConfig
from lit_lm.flops import training_flops
from lit_lm.model import BertForPreTraining
from lit_lm.pretraining import MLMPretraining

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data_modules" / "samples" / "wikitext"
SCALARS = ["train/loss", "train/mlm_loss", "train/nsp_loss", "train/mlm_acc", "train/nsp_acc", "train/perplexity",
           "val/mlm_loss", "val/nsp_loss", "val/mlm_acc", "val/nsp_acc", "val/perplexity"]


def _batch(V=200, B=4, T=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    att = torch.ones(B, T, dtype=torch.long)
    att[0, 12:] = 0
    labels = torch.full((B, T), -100)
    pick = (torch.rand(B, T, generator=g) < 0.3) & att.bool()
    labels[pick] = ids[pick]
    return dict(input_ids=ids, token_type_ids=torch.zeros_like(ids), attention_mask=att, labels=labels,
                next_sentence_label=torch.randint(0, 2, (B,), generator=g))


def test_sparse_and_dense_losses_agree():
    torch.manual_seed(0)
    sparse = MLMPretraining(config="tiny", vocab_size=200).eval()
    dense = MLMPretraining(config="tiny", vocab_size=200, sparse_prediction=False).eval()
    dense.load_state_dict(sparse.state_dict())
    b = _batch()
    with torch.no_grad():
        a, d = sparse._losses(b), dense._losses(b)
    torch.testing.assert_close(a["mlm_loss"], d["mlm_loss"])
    torch.testing.assert_close(a["loss"], d["loss"])
    # and the loss is the plain definition: mean CE over masked tokens + CE over pairs
    with torch.no_grad():
        mlm, nsp = sparse.model(b["input_ids"], b["token_type_ids"], b["attention_mask"])
    ref = F.cross_entropy(mlm.view(-1, 200), b["labels"].view(-1)) + F.cross_entropy(nsp, b["next_sentence_label"])
    torch.testing.assert_close(a["loss"], ref)


def test_nsp_off_trains_mlm_only():
    torch.manual_seed(0)
    m = MLMPretraining(config="tiny", vocab_size=200, nsp=False)
    out = m._losses(_batch())
    torch.testing.assert_close(out["loss"], out["mlm_loss"])


def test_training_flops_formula():
    c = BertConfig.from_name("base")
    # BERT-base encoder: 85M weights in the blocks -> 6 * 85M per token plus attention
    per_token = training_flops(c, 1, 128, 0)
    assert per_token == 6 * 12 * (4 * 768**2 + 2 * 768 * 3072) + 12 * 12 * 128 * 768
    assert training_flops(c, 0, 128, 1) == 6 * (768 * 768 + 768 * 30522)
    # padded batches: the per-token layers count real tokens, attention counts the padded query rows
    assert training_flops(c, 3, 128, 0, n_query_rows=4) == 3 * (per_token - 12 * 12 * 128 * 768) + 4 * 12 * 12 * 128 * 768
    n_blocks = sum(p.numel() for n, p in BertForPreTraining(c).named_parameters() if ".blocks." in n and p.dim() == 2)
    assert per_token - 12 * 12 * 128 * 768 == 6 * n_blocks


def test_config_from_hf_json_and_overrides(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps(BertConfig.from_name("tiny").to_hf_dict()))
    m = MLMPretraining(config=str(tmp_path / "config.json"), vocab_size=300, config_overrides={"hidden_dropout": 0.0})
    assert (m.config.n_layer, m.config.vocab_size, m.config.hidden_dropout) == (2, 300, 0.0)
    assert m.hparams.config["vocab_size"] == 300  # plain values in the checkpoint


# ---- the quickstart through the real CLI (session fixture: one run shared by these tests) ----------------------


def test_quickstart_writes_checkpoint_and_tensorboard_scalars(quickstart_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (quickstart_run / "checkpoints" / "last.ckpt").is_file()
    assert (quickstart_run / "config.yaml").is_file()  # the merged config, next to the logs
    events = sorted(quickstart_run.glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(quickstart_run)).Reload()
    tags = set(acc.Tags()["scalars"])
    missing = [t for t in SCALARS if t not in tags]
    assert not missing, f"missing scalars {missing}; have {sorted(tags)}"
    assert any(t.startswith("lr-") for t in tags)
    # ThroughputMonitor: real (non-pad) tokens per second and FLOPs (MFU needs a peak, which no CPU config can state
    # truly for every CPU: tests/lit_lm/test_callbacks.py checks it against a given one)
    assert {"train/device/items_per_sec", "train/device/flops_per_sec"} <= tags
    assert all(math.isfinite(e.value) for e in acc.Scalars("train/loss"))
    # text panel: decoded masked predictions at each validation
    assert any(t.startswith("val/masked_predictions") for t in acc.Tags()["tensors"])
    text = acc.Tensors(next(t for t in acc.Tags()["tensors"] if t.startswith("val/masked_predictions")))[-1]
    assert b"**" in text.tensor_proto.string_val[0] and b"[CLS]" in text.tensor_proto.string_val[0]
    # HPARAMS tab: the hyper-parameters are registered with the final val metrics
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    metric_tags = set()
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        metric_tags |= {m.name.tag for m in data.experiment.metric_infos}
    assert {"val/mlm_loss", "val/mlm_acc", "val/nsp_acc"} <= metric_tags, metric_tags


def test_quickstart_checkpoint_is_self_sufficient(quickstart_run):
    path = quickstart_run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain values only: no pickled code
    assert ckpt["lit_lm_kind"] == "pretraining"
    config = BertConfig(**ckpt["bert_config"])
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(ckpt["tokenizer"])
    assert tok.get_vocab_size() <= config.vocab_size
    model = BertForPreTraining(config)
    model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")})
    model.eval()
    module = MLMPretraining.load_from_checkpoint(path, map_location="cpu").eval()
    enc = tok.encode("the river flows through the town .", "it was built in the old style .")
    ids = torch.tensor([enc.ids])
    tt = torch.tensor([enc.type_ids])
    with torch.no_grad():
        a = model(ids, tt)
        b = module.model(ids, tt)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    assert module.tokenizer_json == ckpt["tokenizer"]


# ---- the time budget through the real CLI ------------------------------------------------------------------------


class _StepClock:
    """A stand-in for the ``time`` module of Lightning's Timer: every reading advances it by ``tick`` seconds, so a
    run's time budget is spent in the same number of steps however loaded the machine is."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now


def test_time_budget_run_ends_with_the_rate_near_zero(tmp_path, monkeypatch):
    """configs/cpu_hour.yaml with a few seconds instead of an hour: the schedule follows --trainer.max_time (on the
    Timer's clock, which a fake one drives here: on a loaded machine a real 6 s held too few steps to see the decay)."""
    from lightning.pytorch.callbacks import timer
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_lm.cli import main

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(timer, "time", _StepClock(0.05))
    main(["fit", "--config", "cli.yaml", "--config", "configs/cpu_hour.yaml", "--data.data_dir", str(SAMPLES),
          "--trainer.max_time", "00:00:00:06", "--trainer.precision", "32-true", "--model.config", "tiny",
          "--data.vocab_size", "4096", "--trainer.val_check_interval", "1000", "--trainer.log_every_n_steps", "1",
          "--trainer.enable_progress_bar", "false", f"--trainer.logger.init_args.save_dir={tmp_path}",
          f"--data.cache_dir={tmp_path / 'cache'}"])
    acc = EventAccumulator(str(tmp_path / "cpu_hour")).Reload()
    lrs = [e.value for e in acc.Scalars("lr-AdamW/pg1")]
    assert len(lrs) > 10 and max(lrs) > 0.5e-3  # warmed up to near the peak (1e-3) ...
    assert lrs[-1] < 0.15e-3, lrs[-5:]  # ... and down to near zero when the 6 s were spent


def test_time_budget_without_max_time_is_one_line(tmp_path, capsys, monkeypatch):
    from lit_lm.cli import main

    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit):
        main(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--model.budget", "time",
              "--trainer.enable_progress_bar", "false", f"--trainer.logger.init_args.save_dir={tmp_path}",
              f"--data.cache_dir={tmp_path / 'cache'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "lit-lm: error: --model.budget time needs --trainer.max_time (e.g. 00:01:00:00 for an hour)"


# ---- real data ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_wikitext2_200_steps_beat_the_unigram_baseline(wikitext2, tmp_path):
    """A model that learned only word frequencies must fail: val mlm_loss below the unigram cross-entropy of the
    masked tokens and val mlm_acc above the most-frequent-token rate, both computed from the cache."""
    import lightning as L

    from data_modules.wikitext import WikiText103DataModule

    L.seed_everything(0)
    dm = WikiText103DataModule(**wikitext2, batch_size=32, num_workers=0, max_val_pairs=256)
    model = MLMPretraining(config="tiny", vocab_size=8000, lr=1e-3, warmup_steps=20,
                           config_overrides={"hidden_dropout": 0.0, "attention_dropout": 0.0})
    trainer = L.Trainer(max_steps=200, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, use_distributed_sampler=False)
    trainer.fit(model, dm)
    evaluator = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = evaluator.validate(model, dm, verbose=False)[0]

    # unigram baseline over the masked validation targets, frequencies from the train split
    train_ids = np.load(dm.cache_path() / "train.ids.npy", mmap_mode="r")
    counts = np.bincount(np.asarray(train_ids), minlength=8000).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    targets = np.concatenate([b["labels"][b["labels"] != -100].numpy() for b in dm.val_dataloader()])
    unigram_ce = float(-logp[targets].mean())
    top_rate = float((targets == counts.argmax()).mean())
    assert metrics["val/mlm_loss"] < unigram_ce, (metrics, unigram_ce)
    assert metrics["val/mlm_acc"] > top_rate, (metrics, top_rate)


# ---- plateau diagnostics ------------------------------------------------------------------------------------------


def test_plateau_line_and_baselines_in_tensorboard(tmp_path, caplog, monkeypatch):
    """A run still below the left-bigram baseline past plateau_check of its budget says so in one line, and the
    count baselines are logged beside val/mlm_acc."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_lm.cli import main

    import logging

    caplog.set_level(logging.INFO, logger="lightning.pytorch")  # the CLI prints Lightning's INFO lines on stderr
    monkeypatch.chdir(REPO)
    main(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.max_steps", "8",
          "--trainer.val_check_interval", "4", "--model.plateau_check", "0.4", "--trainer.enable_progress_bar", "false",
          f"--trainer.logger.init_args.save_dir={tmp_path}", f"--data.cache_dir={tmp_path / 'cache'}"])
    lines = [m for m in caplog.messages if "plateau:" in m]
    assert len(lines) == 1, lines  # said once, at the first validation past 40% of the 8 steps
    assert "at step 4 (50% of the budget) is still below the left-bigram count baseline" in lines[0]
    assert "\n" not in lines[0]
    acc = EventAccumulator(str(tmp_path / "quickstart")).Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val/baseline_unigram_acc", "val/baseline_left_bigram_acc", "val/baseline_both_neighbours_acc"} <= tags
    baseline = acc.Scalars("val/baseline_left_bigram_acc")
    assert [e.step for e in baseline] == [e.step for e in acc.Scalars("val/mlm_acc") if e.step > 0]


def test_mlm_only_leaves_no_parameter_without_a_gradient():
    """--model.nsp false: every trainable parameter gets a gradient (DDP's find_unused_parameters is off), and
    the parameters NSP alone would train (pooler, NSP head) are frozen rather than left trainable and unused."""
    torch.manual_seed(0)
    m = MLMPretraining(config="tiny", vocab_size=200, nsp=False)
    out = m._losses(_batch())
    out["loss"].backward()
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == {"model.bert.pooler.weight", "model.bert.pooler.bias", "model.nsp_head.weight", "model.nsp_head.bias"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in m.named_parameters() if n in trainable)
    assert "nsp_loss" not in out


def test_unbounded_steps_with_the_step_schedule_are_a_one_line_error(tmp_path, capfd, monkeypatch):
    """--trainer.max_steps -1 with the default step schedule (a run ended by --trainer.max_time) leaves the warmup and
    decay no end: one line naming the two ways out, not an OverflowError."""
    from one_line import cli_error

    cli_error(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.max_steps", "-1",
               "--trainer.max_time", "00:00:00:30", f"--trainer.logger.init_args.save_dir={tmp_path}",
               f"--data.cache_dir={tmp_path / 'cache'}"], capfd, monkeypatch,
              "lit-lm: error: --trainer.max_steps -1: the step schedule needs a finite number of steps; give a finite "
              "--trainer.max_steps, or --model.budget time to schedule over --trainer.max_time")
