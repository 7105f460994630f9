"""Sequence classification: loading encoders, metrics, checkpoints, one-line errors, and the CLI end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
from conftest import save_checkpoint
from one_line import cli_error
import torch

from data_modules.glue import SAMPLE_DIR, GLUEDataModule
from data_modules.glue_reading import read_tsv
from data_modules.glue_tasks import TASKS
from data_modules.tokenizer import train_tokenizer
from lit_lm import cli
from lit_lm.classification import SequenceClassification
from lit_lm.pretraining import MLMPretraining

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="session")
def pretrain_ckpt(tmp_path_factory, tokenizer_path) -> Path:
    """A tiny lit-lm pretraining checkpoint (random weights) carrying the sample tokenizer."""
    tok_json = tokenizer_path.read_text()
    from tokenizers import Tokenizer

    torch.manual_seed(0)
    model = MLMPretraining(config="tiny", vocab_size=Tokenizer.from_str(tok_json).get_vocab_size())
    model.tokenizer_json = tok_json
    return save_checkpoint(model, tmp_path_factory.mktemp("pre") / "pretrain.ckpt")


def run_cli(args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["lit-lm"])  # pytest's own arguments are not the CLI's
    cli.main(args)


def _quick(tmp_path: Path, config: str = "quickstart_sst2.yaml") -> list[str]:
    return ["--config", str(REPO / "configs" / config), "--data.data_dir", str(SAMPLE_DIR),
            "--data.cache_dir", str(tmp_path / "cache"), "--data.num_workers", "0", "--trainer.precision", "32-true",
            "--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", "false"]


# ---------------------------------------------------------------------------------------------------------------------
# end to end through the real CLI


def test_cli_fit_validate_predict_from_pretraining_checkpoint(tmp_path, monkeypatch, capsys, pretrain_ckpt):
    monkeypatch.chdir(tmp_path)  # the quickstart config writes to runs/quickstart_sst2/...
    common = [*_quick(tmp_path), "--model.pretrained", str(pretrain_ckpt)]
    run_cli(["fit", *common, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3"], monkeypatch)
    ckpt_path = tmp_path / "runs/quickstart_sst2/checkpoints/last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)  # plain values only
    assert ckpt["lit_lm_kind"] == "classification" and ckpt["num_labels"] == 2 and ckpt["task_name"] == "sst2"
    assert ckpt["tokenizer"] == torch.load(pretrain_ckpt, weights_only=True)["tokenizer"]
    assert ckpt["global_step"] == 6 and ckpt["hyper_parameters"]["tokenizer"] == str(pretrain_ckpt)
    # the HPARAMS tab gets the val metrics registered at fit start
    (events,) = (tmp_path / "runs/quickstart_sst2").glob("events.out.tfevents.*")
    raw = events.read_bytes()
    assert b"_hparams_/session_start_info" in raw and b"val/acc" in raw

    run_cli(["validate", *common, "--ckpt_path", str(ckpt_path)], monkeypatch)
    assert "val/acc" in capsys.readouterr().out

    run_cli(["predict", *common, "--ckpt_path", str(ckpt_path)], monkeypatch)
    out = tmp_path / "runs/quickstart_sst2/SST-2.tsv"
    assert f"wrote 100 predictions to {Path('runs/quickstart_sst2/SST-2.tsv')}" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 101
    assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(100))
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}


def test_cli_fit_from_huggingface_directory(tmp_path, monkeypatch, tokenizer_path):
    from conftest import require_transformers

    transformers = require_transformers()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    hf_dir = tmp_path / "hf"
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=128)
    transformers.BertForPreTraining(hf_config).save_pretrained(hf_dir)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (hf_dir / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in vocab))  # vocab.txt only, as old BERT dirs
    monkeypatch.chdir(tmp_path)
    # a learning rate too small to move a weight: the fine-tuned encoder must still be the directory's
    run_cli(["fit", *_quick(tmp_path), "--model.pretrained", str(hf_dir), "--trainer.max_steps", "2",
             "--trainer.limit_val_batches", "1", "--model.lr", "1e-12"], monkeypatch)
    ckpt = torch.load(tmp_path / "runs/quickstart_sst2/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["bert_config"]["n_embd"] == 64 and ckpt["global_step"] == 2
    # HF's own classifier on the directory's encoder, given our checkpoint's head, gives our checkpoint's logits
    from lit_lm.config import BertConfig
    from lit_lm.model import BertForSequenceClassification

    ours = BertForSequenceClassification(BertConfig(**ckpt["bert_config"]), num_labels=2)
    ours.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    hf = transformers.BertForSequenceClassification.from_pretrained(hf_dir, num_labels=2)
    hf.classifier.load_state_dict(ours.classifier.state_dict())
    enc = tok.encode_batch(["a gripping , funny film", "dull"])
    width = max(len(e.ids) for e in enc)
    ids = torch.tensor([e.ids + [0] * (width - len(e.ids)) for e in enc])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in enc])
    with torch.no_grad():
        expected = hf.eval()(input_ids=ids, token_type_ids=torch.zeros_like(ids), attention_mask=mask).logits
        torch.testing.assert_close(ours.eval()(ids, torch.zeros_like(ids), mask), expected, atol=1e-5, rtol=1e-4)


def test_cli_fit_random_init_with_tokenizer(tmp_path, monkeypatch, tokenizer_path):
    monkeypatch.chdir(tmp_path)
    run_cli(["fit", *_quick(tmp_path), "--model.pretrained", "null", "--data.tokenizer", str(tokenizer_path),
             "--model.config", "tiny", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"], monkeypatch)
    ckpt = torch.load(tmp_path / "runs/quickstart_sst2/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["bert_config"]["vocab_size"] == 600 and ckpt["bert_config"]["n_layer"] == 2


def test_cli_predict_real_sst2_test_split(tmp_path, monkeypatch, capsys, data_root, tokenizer_path):
    """A tiny random-init model predicts all 1,821 test sentences; SST-2.tsv lands in the run's log dir."""
    monkeypatch.chdir(tmp_path)
    run_cli(["predict", "--config", str(REPO / "configs/sst2.yaml"), "--data.data_dir", str(data_root / "SST-2"),
             "--data.tokenizer", str(tokenizer_path), "--data.cache_dir", str(tmp_path / "cache"),
             "--data.num_workers", "0", "--data.batch_size", "128", "--trainer.precision", "32-true",
             "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"], monkeypatch)
    out = tmp_path / "runs/sst2/SST-2.tsv"
    assert f"wrote 1821 predictions to {Path('runs/sst2/SST-2.tsv')}" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 1822
    assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(1821))


def test_cli_reports_bad_input_on_one_line(tmp_path, monkeypatch, capfd, tokenizer_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\ngood \t1\nbad \t3\n")
    (data / "dev.tsv").write_text((SAMPLE_DIR / "dev.tsv").read_text())
    (data / "test.tsv").write_text((SAMPLE_DIR / "test.tsv").read_text())
    line = cli_error(["fit", *_quick(tmp_path), "--data.data_dir", str(data), "--model.pretrained", "null",
                      "--data.tokenizer", str(tokenizer_path)], capfd, monkeypatch, cwd=tmp_path)
    assert line == f"lit-lm: error: {data / 'train.tsv'}:3: label '3' is not one of 0, 1 (task sst2)"


# ---------------------------------------------------------------------------------------------------------------------
# the module


def test_encoder_comes_from_the_pretraining_checkpoint(pretrain_ckpt):
    state = torch.load(pretrain_ckpt, weights_only=True)["state_dict"]
    model = SequenceClassification(pretrained=str(pretrain_ckpt))
    for k, v in model.model.bert.state_dict().items():
        torch.testing.assert_close(v, state[f"model.bert.{k}"], rtol=0, atol=0)
    assert model.model.classifier.out_features == 2 and model.model.dropout.p == 0.1
    assert SequenceClassification(pretrained=str(pretrain_ckpt), classifier_dropout=0.3).model.dropout.p == 0.3


def _validate(model: SequenceClassification, data_dir: Path, tokenizer: Path, cache: Path) -> dict[str, float]:
    dm = GLUEDataModule(data_dir=str(data_dir), tokenizer=str(tokenizer), batch_size=4, num_workers=0,
                        cache_dir=str(cache))
    trainer = L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, datamodule=dm, verbose=False)
    return metrics


def test_val_acc_is_micro_accuracy(tmp_path, tokenizer_path):
    """8 positives and 2 negatives, a model that always says positive: micro accuracy 0.8, macro would be 0.5."""
    d = tmp_path / "d"
    d.mkdir()
    dev = ["it is charming . \t1"] * 8 + ["it is dull . \t0"] * 2
    (d / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(dev) + "\n")
    (d / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(dev) + "\n")
    (d / "test.tsv").write_text("index\tsentence\n0\tfine\n")
    model = SequenceClassification(tokenizer=str(tokenizer_path), config="tiny")
    with torch.no_grad():
        model.model.classifier.weight.zero_()
        model.model.classifier.bias.copy_(torch.tensor([0.0, 5.0]))
    metrics = _validate(model, d, tokenizer_path, tmp_path / "cache")
    assert metrics["val/acc"] == pytest.approx(0.8)
    expected_loss = torch.nn.functional.cross_entropy(torch.tensor([[0.0, 5.0]] * 10), torch.tensor([1] * 8 + [0] * 2))
    assert metrics["val/loss"] == pytest.approx(float(expected_loss), rel=1e-5)


def test_regression_head_for_stsb(tmp_path, tokenizer_path):
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    d = tmp_path / "stsb"
    d.mkdir()
    rows = "".join(f"{i}\tg\tf\t2012\t{i}\tn\tn\tit is charming .\tit is {w} .\t{s}\n"
                   for i, (w, s) in enumerate([("charming", 5.0), ("dull", 0.5), ("fine", 3.0), ("odd", 1.0)]))
    (d / "train.tsv").write_text(f"{head}\tscore\n{rows}")
    (d / "dev.tsv").write_text(f"{head}\tscore\n{rows}")
    (d / "test.tsv").write_text(f"{head}\n0\tg\tf\t2012\t0\tn\tn\ta\tb\n")
    model = SequenceClassification(tokenizer=str(tokenizer_path), num_labels=1)
    dm = GLUEDataModule("stsb", data_dir=str(d), tokenizer=str(tokenizer_path), num_workers=0, cache_dir=str(tmp_path / "c"))
    trainer = L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, datamodule=dm, verbose=False)
    assert set(metrics) == {"val/loss", "val/pearson", "val/spearman"}


def test_classification_checkpoint_is_not_a_pretrained_encoder(tmp_path, pretrain_ckpt):
    cls_ckpt = save_checkpoint(SequenceClassification(pretrained=str(pretrain_ckpt)), tmp_path / "cls.ckpt")
    with pytest.raises(ValueError) as e:
        SequenceClassification(pretrained=str(cls_ckpt))
    assert str(e.value) == f"--model.pretrained: {cls_ckpt}: a lit-lm classification checkpoint; expected a pretraining checkpoint"


@pytest.mark.parametrize("content, message", [
    ("plain dict", "not a lit-lm checkpoint"),
    ("truncated", "not a readable lit-lm checkpoint"),
    ("text", "not a readable lit-lm checkpoint"),
])
def test_foreign_or_broken_files_are_one_line_errors(tmp_path, pretrain_ckpt, content, message):
    path = tmp_path / "bad.ckpt"
    if content == "plain dict":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    elif content == "truncated":
        path.write_bytes(Path(pretrain_ckpt).read_bytes()[:5000])
    else:
        path.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match=message) as e:
        SequenceClassification(pretrained=str(path))
    assert str(e.value).startswith(f"--model.pretrained: {path}: ") and "\n" not in str(e.value)


def test_pretraining_checkpoint_with_unexpected_keys(tmp_path, pretrain_ckpt):
    ckpt = torch.load(pretrain_ckpt, weights_only=True)
    ckpt["state_dict"]["model.extra_head.weight"] = torch.zeros(2)
    del ckpt["state_dict"]["model.bert.pooler.weight"]
    torch.save(ckpt, tmp_path / "odd.ckpt")
    with pytest.raises(ValueError, match=r"odd\.ckpt: unexpected keys besides the encoder and the MLM/NSP heads"):
        SequenceClassification(pretrained=str(tmp_path / "odd.ckpt"))
    del ckpt["state_dict"]["model.extra_head.weight"]
    torch.save(ckpt, tmp_path / "short.ckpt")
    with pytest.raises(ValueError, match=r"short\.ckpt: encoder weights do not fit \(missing \['pooler\.weight'\]"):
        SequenceClassification(pretrained=str(tmp_path / "short.ckpt"))


def test_tokenizer_must_match_the_encoder(tmp_path, pretrain_ckpt, tokenizer_path):
    texts = [t[0] for t in read_tsv(SAMPLE_DIR / "dev.tsv", TASKS["sst2"], labelled=True).texts]
    other = tmp_path / "other.json"
    train_tokenizer(texts, 300, show_progress=False).save(str(other))
    with pytest.raises(ValueError) as e:
        SequenceClassification(pretrained=str(pretrain_ckpt), tokenizer=str(other))
    assert str(other) in str(e.value) and str(pretrain_ckpt) in str(e.value) and "vocabulary differs" in str(e.value)
    # a tokenizer larger than the encoder's vocabulary (an HF dir whose vocab.txt outgrew config.json)
    from conftest import require_transformers

    transformers = require_transformers()
    hf_dir = tmp_path / "hf"
    transformers.BertModel(transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=64)).save_pretrained(hf_dir)
    from tokenizers import Tokenizer

    vocab = sorted(Tokenizer.from_file(str(tokenizer_path)).get_vocab().items(), key=lambda kv: kv[1])
    (hf_dir / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in vocab))
    with pytest.raises(ValueError, match=rf"tokenizer {hf_dir} has 600 tokens but the encoder of {hf_dir} has vocab_size=100"):
        SequenceClassification(pretrained=str(hf_dir))


def test_data_tokenizer_must_match_the_model(tmp_path, pretrain_ckpt):
    texts = [t[0] for t in read_tsv(SAMPLE_DIR / "dev.tsv", TASKS["sst2"], labelled=True).texts]
    other = tmp_path / "other.json"
    train_tokenizer(texts, 300, show_progress=False).save(str(other))
    with pytest.raises(ValueError, match=r"--data\.tokenizer .*other\.json: its vocabulary differs from the model's"):
        _validate(SequenceClassification(pretrained=str(pretrain_ckpt)), SAMPLE_DIR, other, tmp_path / "cache")


def test_random_init_needs_a_tokenizer():
    with pytest.raises(ValueError, match=r"--data\.tokenizer is required without --model\.pretrained"):
        SequenceClassification()


def test_missing_pretrained_path(tmp_path):
    with pytest.raises(ValueError, match=r"--model\.pretrained .*nope\.ckpt: no such file or directory"):
        SequenceClassification(pretrained=str(tmp_path / "nope.ckpt"))


def test_finetuning_dropout_overrides_the_pretraining_one(tmp_path, tokenizer_path, monkeypatch):
    """A checkpoint pretrained without dropout fine-tunes with the fine-tuning dropout (as a random init does), and
    the fine-tuned checkpoint's stored encoder config says so."""
    from tokenizers import Tokenizer

    tok_json = tokenizer_path.read_text()
    model = MLMPretraining(config="tiny", vocab_size=Tokenizer.from_str(tok_json).get_vocab_size(),
                           config_overrides={"hidden_dropout": 0.0, "attention_dropout": 0.0})
    model.tokenizer_json = tok_json
    ckpt = save_checkpoint(model, tmp_path / "dropout0.ckpt")
    assert torch.load(ckpt, weights_only=True)["bert_config"]["hidden_dropout"] == 0.0
    clf = SequenceClassification(pretrained=str(ckpt))
    assert (clf.config.hidden_dropout, clf.config.attention_dropout, clf.model.dropout.p) == (0.1, 0.1, 0.1)
    drops = [m.p for m in clf.model.bert.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(p == 0.1 for p in drops) and clf.model.bert.blocks[0].attn.attn_dropout == 0.1
    random_init = SequenceClassification(tokenizer=str(tokenizer_path))
    assert (random_init.config.hidden_dropout, random_init.model.dropout.p) == (0.1, 0.1)  # both arms alike
    assert SequenceClassification(pretrained=str(ckpt), dropout=None).config.hidden_dropout == 0.0  # kept if asked
    # a random-init baseline shaped like a checkpoint's encoder: --model.config CKPT
    model_b = MLMPretraining(config="mini", vocab_size=model.config.vocab_size,
                             config_overrides={"relative_positions": "alibi", "hidden_dropout": 0.0})
    model_b.tokenizer_json = tok_json
    shaped = SequenceClassification(tokenizer=str(tokenizer_path), config=str(save_checkpoint(model_b, tmp_path / "mini.ckpt")))
    assert (shaped.config.n_layer, shaped.config.n_embd, shaped.config.relative_positions) == (4, 256, "alibi")
    assert shaped.config.hidden_dropout == 0.1

    monkeypatch.chdir(tmp_path)
    run_cli(["fit", *_quick(tmp_path), "--model.pretrained", str(ckpt), "--trainer.max_epochs", "1",
             "--trainer.limit_train_batches", "2"], monkeypatch)
    stored = torch.load(tmp_path / "runs/quickstart_sst2/checkpoints/last.ckpt", weights_only=True)["bert_config"]
    assert (stored["hidden_dropout"], stored["attention_dropout"]) == (0.1, 0.1)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_huggingface_masked_lm_directory_fine_tunes_with_an_initialised_pooler(tmp_path, tokenizer_path, pooling,
                                                                                 caplog):
    """A BertForMaskedLM directory has no pooler: the encoder loads, the pooler starts from BERT's initialisation
    (truncated normal, zero bias) and one line says so, whichever pooling fine-tunes."""
    import logging

    from conftest import require_transformers
    from tokenizers import Tokenizer

    transformers = require_transformers()
    transformers.logging.set_verbosity_error()
    vocab = sorted(Tokenizer.from_file(str(tokenizer_path)).get_vocab().items(), key=lambda kv: kv[1])
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, attn_implementation="eager")).eval()
    source = tmp_path / "mlm"
    hf.save_pretrained(source)
    (source / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in vocab))
    caplog.set_level(logging.INFO)
    clf = SequenceClassification(pretrained=str(source), pooling=pooling)
    unused = "; unused with --model.pooling mean" if pooling == "mean" else ""
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("pretrained ")] == [
        f"pretrained {source}: encoder loaded; pooler initialised (not in the source{unused})"]
    pooler = clf.model.bert.pooler
    assert pooler.weight.abs().max() <= 2 * 0.02 and 0.6 * 0.02 < pooler.weight.std() < 1.1 * 0.02
    assert not pooler.bias.any()
    torch.manual_seed(1)
    ids = torch.randint(5, len(vocab), (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        hidden, _ = clf.model.bert.eval()(ids, torch.zeros_like(ids), mask)
        ref = hf.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(hidden[mask.bool()], ref[mask.bool()], rtol=1e-5, atol=1e-5)


def test_unbounded_epochs_are_a_one_line_error(tmp_path, capfd, monkeypatch, pretrain_ckpt):
    """--trainer.max_epochs -1 without max_steps (a run ended by --trainer.max_time) leaves the warmup and decay no
    end: one line naming the ways out, not an OverflowError."""
    cli_error(["fit", *_quick(tmp_path), "--model.pretrained", str(pretrain_ckpt), "--trainer.max_epochs", "-1",
               "--trainer.max_time", "00:00:00:30"], capfd, monkeypatch,
              "lit-lm: error: --trainer.max_epochs -1: the learning-rate schedule needs a finite number of steps; "
              "give a finite --trainer.max_epochs or --trainer.max_steps", cwd=tmp_path)
