"""Validation metrics per source of a mixture (lit_lm.mixture_metrics): the metric against a reference grouping,
and a fit on two corpora whose val/<name>/ scalars (in TensorBoard too) match a forward pass recomputed here."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger

from data_modules.corpus import CorpusDataModule
from lit_lm.mixture_metrics import PerSourceMLM
from lit_lm.pretraining import MLMPretraining

REPO = Path(__file__).resolve().parents[2]


def test_per_source_sums_match_a_grouping_by_mask():
    g = torch.Generator().manual_seed(0)
    N, V = 300, 50
    logits, targets = torch.randn(N, V, generator=g), torch.randint(0, V, (N,), generator=g)
    targets[torch.rand(N, generator=g) < 0.3] = -100  # filler and unmasked rows
    sources = torch.randint(0, 2, (N,), generator=g)  # source 2 of 3 gets nothing
    metric = PerSourceMLM(3)
    metric.update(logits[:100], targets[:100], sources[:100])  # two batches: the sums run over the epoch
    metric.update(logits[100:], targets[100:], sources[100:])
    loss, acc = metric.compute()
    for k in range(2):
        keep = (sources == k) & (targets != -100)
        assert loss[k] == pytest.approx(F.cross_entropy(logits[keep], targets[keep]).item(), rel=1e-5)
        assert acc[k] == pytest.approx((logits[keep].argmax(-1) == targets[keep]).float().mean().item(), rel=1e-6)
    assert loss[2].isnan() and acc[2].isnan()  # no masked token: no value, not a zero


def _write_jsonl(path: Path, docs: list[str]) -> Path:
    path.mkdir(parents=True)
    (path / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def test_a_mixture_logs_each_sources_validation_metrics(tmp_path):
    """Two corpora of different text: after a short fit, val/<name>/mlm_loss and mlm_acc (logged and in the
    TensorBoard event file) equal a forward pass over the validation loader grouped by the mixture's own table, and
    the sources weighted by their masked tokens give back val/mlm_loss and val/mlm_acc."""
    notes = [f"Note {i} says the river stone is by the garden window. The horse sleeps in winter. "
             f"A letter came from the market on day {i}." for i in range(60)]
    sources = [{"path": str(REPO / "data_modules" / "samples" / "wikitext"), "name": "wiki", "share": 0.5},
               {"path": str(_write_jsonl(tmp_path / "notes", notes)), "name": "notes", "share": 0.5}]
    dm = CorpusDataModule(sources=sources, cache_dir=str(tmp_path / "cache"), vocab_size=200, batch_size=8,
                          max_seq_len=32, num_workers=0, val_fraction=0.1, seed=3)
    torch.manual_seed(0)
    model = MLMPretraining("tiny", vocab_size=200, warmup_steps=0, lr=1e-3)
    logger = TensorBoardLogger(tmp_path, name="mix", version="")
    trainer = L.Trainer(accelerator="cpu", max_steps=4, val_check_interval=4, logger=logger, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, dm)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}

    model.eval()
    ds, sums = dm.datasets["validation"], torch.zeros(2, 3, dtype=torch.float64)  # per source: loss, correct, count
    with torch.no_grad():
        for batch in dm.val_dataloader():
            mlm, _ = model.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])  # (B, T, V)
            src = torch.as_tensor(ds.sources(batch["index"].numpy()))  # (B,), from the table, not the collator
            for b in range(len(src)):
                keep = batch["labels"][b] != -100
                logits, labels = mlm[b][keep].float(), batch["labels"][b][keep]
                sums[src[b]] += torch.tensor([F.cross_entropy(logits, labels, reduction="sum").item(),
                                              (logits.argmax(-1) == labels).sum().item(), len(labels)])
    assert (sums[:, 2] > 0).all(), sums
    for k, name in enumerate(("wiki", "notes")):
        assert logged[f"val/{name}/mlm_loss"] == pytest.approx(sums[k, 0] / sums[k, 2], rel=1e-4)
        assert logged[f"val/{name}/mlm_acc"] == pytest.approx(sums[k, 1] / sums[k, 2], abs=1e-6)
    total = sums.sum(0)
    assert logged["val/mlm_loss"] == pytest.approx(total[0] / total[2], rel=1e-4)
    assert logged["val/mlm_acc"] == pytest.approx(total[1] / total[2], abs=1e-6)
    assert logged["val/wiki/mlm_loss"] != pytest.approx(logged["val/notes/mlm_loss"], rel=1e-3)  # two texts, two values

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logger.log_dir).Reload()
    combined = events.Scalars("val/mlm_acc")[-1]  # the first: NaN at step 0, the HPARAMS tab's placeholder
    for tag in ("val/wiki/mlm_acc", "val/wiki/mlm_loss", "val/notes/mlm_acc", "val/notes/mlm_loss"):
        (scalar,) = events.Scalars(tag)  # one validation, at the x of the combined curve
        assert scalar.value == pytest.approx(logged[tag], rel=1e-6) and scalar.step == combined.step, tag


def test_one_source_logs_no_per_source_metrics(tmp_path):
    dm = CorpusDataModule(data_dir=str(REPO / "data_modules" / "samples" / "wikitext"), cache_dir=str(tmp_path),
                          vocab_size=200, batch_size=8, max_seq_len=32, num_workers=0)
    model = MLMPretraining("tiny", vocab_size=200)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=2)
    trainer.validate(model, dm, verbose=False)
    assert model.val_sources is None and "val/mlm_acc" in trainer.callback_metrics
    assert not [k for k in trainer.callback_metrics if k.count("/") > 1]
