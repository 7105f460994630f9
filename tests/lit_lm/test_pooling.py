"""``--model.pooling cls|mean``: the masked mean excludes padding, trains, reaches the model through the CLI and the
GLUE harness, survives the checkpoint (validate, lit_lm.load), and a mean classifier refuses HF export in one line.
([CLS] pooling's HF parity is tests/lit_lm/test_convert.py.)"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import save_checkpoint
from one_line import cli_error

import lit_lm
from data_modules.glue import SAMPLE_DIR, GLUEDataModule
from data_modules.glue_reading import read_tsv
from data_modules.glue_tasks import TASKS
from lit_lm import cli
from lit_lm.classification import SequenceClassification
from lit_lm.config import BertConfig
from lit_lm.export import export
from lit_lm.model import BertForSequenceClassification

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")




def _run_cli(args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["lit-lm"])  # pytest's own arguments are not the CLI's
    cli.main(args)


def _quick(tmp_path: Path, tokenizer: Path) -> list[str]:
    """configs/quickstart_sst2.yaml on the bundled sample, random init (no pretraining run needed)."""
    return ["--config", str(REPO / "configs/quickstart_sst2.yaml"), "--data.data_dir", str(SAMPLE_DIR),
            "--data.cache_dir", str(tmp_path / "cache"), "--model.pretrained", "null", "--data.tokenizer",
            str(tokenizer), "--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", "false"]


# ---------------------------------------------------------------------------------------------------------------------
# the model


@pytest.mark.parametrize("overrides", [{}, {"pre_ln": True, "relative_positions": "rope", "position_embedding": "none"}],
                         ids=["bert", "pre_ln-rope"])
def test_mean_pooling_excludes_padding(overrides):
    """Each sequence alone (no padding) and the two padded into one batch, with junk ids in the padding, give the
    same logits (fp32, 1e-6); the pooled vector is the mean of the last layer over the real tokens only."""
    torch.manual_seed(0)
    config = BertConfig.from_name("tiny", vocab_size=50, **overrides)
    model = BertForSequenceClassification(config, num_labels=3, pooling="mean").eval()
    a, b = torch.randint(5, 50, (5,)), torch.randint(5, 50, (9,))
    ids = torch.stack([torch.cat([a, torch.randint(0, 50, (4,))]), b])  # (2, 9): junk after a's 5 tokens
    types = torch.zeros_like(ids)
    mask = torch.tensor([[1] * 5 + [0] * 4, [1] * 9])
    with torch.no_grad():
        padded = model(ids, types, mask)
        alone = torch.cat([model(a[None], torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 5, dtype=torch.long)),
                           model(b[None], torch.zeros(1, 9, dtype=torch.long), None)])
        torch.testing.assert_close(padded, alone, rtol=0, atol=1e-6)
        # what the classifier sees: the masked mean of the last layer (dropout is off in eval mode)
        seen = []
        hook = model.classifier.register_forward_hook(lambda m, args, out: seen.append(args[0]))
        model(ids, types, mask)
        hook.remove()
        hidden, _ = model.bert(ids, types, mask)  # (B, T, C)
        expected = torch.stack([hidden[0, :5].mean(0), hidden[1].mean(0)])
        torch.testing.assert_close(seen[0], expected, rtol=0, atol=1e-6)
        # and it is not the [CLS] pooler: the same weights pooled as BERT does give other logits
        model.pooling = "cls"
        assert (model(ids, types, mask) - padded).abs().max() > 1e-3


def test_mean_pooling_freezes_the_unused_pooler():
    """No gradient reaches the tanh pooler on the mean path: frozen, so DDP waits for nothing and AdamW skips it."""
    torch.manual_seed(0)
    config = BertConfig.from_name("tiny", vocab_size=50)
    mean = BertForSequenceClassification(config, 2, pooling="mean")
    assert not any(p.requires_grad for p in mean.bert.pooler.parameters())
    mean(torch.randint(5, 50, (2, 6))).sum().backward()
    assert all(p.grad is not None for n, p in mean.named_parameters() if not n.startswith("bert.pooler."))
    assert all(p.requires_grad for p in BertForSequenceClassification(config, 2).parameters())  # cls: all trained
    with pytest.raises(ValueError, match=r"^pooling='max': expected one of cls, mean$"):
        BertForSequenceClassification(config, 2, pooling="max")


def _cue_task(root: Path) -> Path:
    """A tiny sentiment task the cue word decides: 'good' -> 1, 'bad' -> 0, among filler words."""
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    filler = "the film was a story of some people and their time in it".split()
    rows = []
    for i in range(64):
        words = [filler[j] for j in torch.randint(0, len(filler), (6,), generator=g).tolist()]
        words.insert(int(torch.randint(0, 6, (1,), generator=g)), "good" if i % 2 else "bad")
        rows.append(f"{' '.join(words)} \t{i % 2}\n")
    for split in ("train", "dev"):
        (root / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(rows))
    (root / "test.tsv").write_text("index\tsentence\n0\tgood\n")
    return root


def test_mean_pooling_trains(tmp_path, tokenizer_path):
    """Through SequenceClassification and Lightning, a few steps: the dev loss falls, the classifier learns and the
    unused pooler stays as initialised."""
    data = _cue_task(tmp_path / "cue")
    torch.manual_seed(0)
    model = SequenceClassification(tokenizer=str(tokenizer_path), pooling="mean", lr=1e-3, warmup_steps=0,
                                   schedule="constant")
    pooler = model.model.bert.pooler.weight.detach().clone()
    dm = GLUEDataModule(data_dir=str(data), tokenizer=str(tokenizer_path), batch_size=16, num_workers=0,
                        cache_dir=str(tmp_path / "cache"))
    kw = dict(logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False,
              enable_model_summary=False)
    (before,) = L.Trainer(**kw).validate(model, datamodule=dm, verbose=False)
    L.Trainer(max_steps=24, **kw).fit(model, datamodule=dm)
    (after,) = L.Trainer(**kw).validate(model, datamodule=dm, verbose=False)
    assert after["val/loss"] < 0.5 * before["val/loss"], (before, after)
    assert after["val/acc"] >= 0.9
    torch.testing.assert_close(model.model.bert.pooler.weight, pooler, rtol=0, atol=0)


def test_bad_pooling_is_one_line(tokenizer_path, tmp_path, capfd, monkeypatch):
    with pytest.raises(ValueError, match=r"^--model\.pooling='max': expected one of cls, mean$"):
        SequenceClassification(tokenizer=str(tokenizer_path), pooling="max")  # type: ignore[arg-type]
    cli_error(["fit", *_quick(tmp_path, tokenizer_path), "--model.pooling", "max"], capfd, monkeypatch,
              "--model.pooling", "'cls'", cwd=tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# through the CLI, the checkpoint, the Python API and export


def _val_loss(output: str) -> float:
    """val/loss from the table ``python -m lit_lm validate`` prints."""
    (value,) = re.findall(r"val/loss\s*\W\s*([0-9.eE+-]+)", output)
    return float(value)


def test_cli_checkpoint_validate_and_api_keep_the_pooling(tmp_path, tokenizer_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    common = _quick(tmp_path, tokenizer_path)
    _run_cli(["fit", *common, "--model.pooling", "mean", "--trainer.max_epochs", "1",
              "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"], monkeypatch)
    run = tmp_path / "runs/quickstart_sst2"
    ckpt_path = run / "checkpoints/last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["pooling"] == "mean" and ckpt["hyper_parameters"]["pooling"] == "mean"
    assert re.search(r"^\s+pooling: mean$", (run / "config.yaml").read_text(), re.MULTILINE)
    capfd.readouterr()

    # validate pools as the checkpoint was fine-tuned, with the flag or without it (the recipe's default, cls:
    # LightningCLI takes the model's arguments from the checkpoint's hyper-parameters)
    _run_cli(["validate", *common, "--model.pooling", "mean", "--ckpt_path", str(ckpt_path)], monkeypatch)
    with_flag = _val_loss(capfd.readouterr().out)
    _run_cli(["validate", *common, "--ckpt_path", str(ckpt_path)], monkeypatch)
    assert _val_loss(capfd.readouterr().out) == pytest.approx(with_flag, rel=1e-6)

    # lit_lm.load rebuilds the mean head: its logits on the dev set give the same loss
    clf = lit_lm.load(ckpt_path)
    assert clf.model.pooling == "mean"
    dev = read_tsv(SAMPLE_DIR / "dev.tsv", TASKS["sst2"], labelled=True)
    texts, labels = [t[0] for t in dev.texts], torch.tensor(dev.labels)
    assert max(len(e.ids) for e in clf.tokenizer.encode_batch(texts)) <= 64  # the config's max_seq_len cuts nothing
    assert F.cross_entropy(clf.logits(texts), labels).item() == pytest.approx(with_flag, rel=1e-5)
    clf.model.pooling = "cls"  # the same weights pooled as BERT: another loss, so the checks above can fail
    assert F.cross_entropy(clf.logits(texts), labels).item() != pytest.approx(with_flag, rel=1e-3)

    # from Python, a module built with the other pooling adopts the checkpoint's to validate...
    dm = GLUEDataModule(data_dir=str(SAMPLE_DIR), tokenizer=str(tokenizer_path), max_seq_len=64, num_workers=0,
                        cache_dir=str(tmp_path / "cache"))
    kw = dict(logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False,
              enable_model_summary=False)
    module = SequenceClassification(tokenizer=str(tokenizer_path))
    (metrics,) = L.Trainer(**kw).validate(module, datamodule=dm, ckpt_path=ckpt_path, verbose=False)
    assert module.model.pooling == "mean" and metrics["val/loss"] == pytest.approx(with_flag, rel=1e-6)
    # ...but refuses to resume its fit (the optimizer's parameters would differ: the pooler is frozen under mean)
    with pytest.raises(ValueError, match=r"^--model\.pooling cls: the checkpoint was fine-tuned with --model\.pooling "
                                         r"mean; resume it with that$"):
        L.Trainer(max_epochs=2, **kw).fit(SequenceClassification(tokenizer=str(tokenizer_path)), datamodule=dm,
                                          ckpt_path=ckpt_path)


def test_export_of_a_mean_classifier_is_refused_in_one_line(tmp_path, tokenizer_path, capfd, monkeypatch):
    torch.manual_seed(0)
    module = SequenceClassification(tokenizer=str(tokenizer_path), pooling="mean")
    ckpt = save_checkpoint(module, tmp_path / "mean.ckpt")
    with pytest.raises(ValueError) as e:
        export(ckpt, tmp_path / "hf")
    assert str(e.value) == (f"{ckpt}: a classifier fine-tuned with --model.pooling mean; HuggingFace's "
                            f"BertForSequenceClassification always pools [CLS] through its tanh pooler, so it would "
                            f"give other logits (fine-tune with --model.pooling cls to export)")
    assert not (tmp_path / "hf").exists()  # refused before anything is written
    cli_error(["export", str(ckpt), str(tmp_path / "hf")], capfd, monkeypatch, str(ckpt), "--model.pooling mean",
              cwd=tmp_path)
    from lit_lm.convert import to_hf

    with pytest.raises(ValueError, match=r"^pooling='mean': HuggingFace's BertForSequenceClassification always pools"):
        to_hf(module.model)
    # a cls classifier still exports (its logits against transformers: tests/lit_lm/test_export.py)
    export(save_checkpoint(SequenceClassification(tokenizer=str(tokenizer_path)), tmp_path / "cls.ckpt"), tmp_path / "hf_cls")
    assert json.loads((tmp_path / "hf_cls/config.json").read_text())["architectures"] == ["BertForSequenceClassification"]


def test_glue_harness_passes_the_pooling_through(tmp_path, tokenizer_path, monkeypatch):
    """``lit-lm glue ... --model.pooling mean`` reaches every run: its saved config and checkpoint say mean."""
    glue = tmp_path / "glue"
    glue.mkdir()
    (glue / "SST-2").symlink_to(SAMPLE_DIR, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    _run_cli(["glue", "--data_dir", str(glue), "--tasks", "sst2", "--seeds", "1", "--save_dir", str(tmp_path / "runs"),
              "--name", "mean", "--data.tokenizer", str(tokenizer_path), "--model.config", "tiny",
              "--model.pooling", "mean", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
              "--trainer.precision", "32-true", "--trainer.accelerator", "cpu", "--data.num_workers", "0",
              "--data.cache_dir", str(tmp_path / "cache"), "--trainer.enable_progress_bar", "false"], monkeypatch)
    results = json.loads((tmp_path / "runs/mean/results.json").read_text())
    assert results["failed"] == [] and "sst2" in results["tasks"]
    run = tmp_path / "runs/mean/sst2/seed1"
    assert re.search(r"^\s+pooling: mean$", (run / "config.yaml").read_text(), re.MULTILINE)
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["pooling"] == "mean"
