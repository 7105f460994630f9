"""Export to HuggingFace directories: transformers loads them and reproduces our logits and token ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import require_transformers, save_checkpoint  # noqa: E402  (tests/conftest.py: pytest puts tests/ on sys.path)

transformers = require_transformers()

from data_modules.tokenizer import load_tokenizer, train_tokenizer  # noqa: E402
from lit_lm import cli  # noqa: E402
from lit_lm.classification import SequenceClassification  # noqa: E402
from lit_lm.export import export  # noqa: E402
from lit_lm.pretraining import MLMPretraining  # noqa: E402

TEXTS = [
    "Café crème brûlée, naïve façade — déjà vu!",
    "The film's ending (finally) works: 3.5/5 stars... really?",
    "東京 and 北京 are cities; 한국어 too.",
    "It's a charming, often affecting journey.",
    "Unflinchingly bleak & desperate; \"quotes\" and 'apostrophes'.",
]
PROBE = ["Crème BRÛLÉE at the café: déjà-vu!!", "東京の映画 was fine, 北京 not.", ("A pair?", "Yes: 3.5 stars.")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet():
    transformers.logging.set_verbosity_error()


def _tokenizer(lowercase: bool = True):
    return train_tokenizer(TEXTS * 3, 400, lowercase=lowercase, min_frequency=1, show_progress=False)



def _pretraining_ckpt(path: Path, lowercase: bool = True, pad_vocab_multiple: int = 1) -> Path:
    tok = _tokenizer(lowercase)
    torch.manual_seed(0)
    model = MLMPretraining(config="tiny", vocab_size=tok.get_vocab_size() + 7,  # a vocab larger than the tokenizer's
                           config_overrides={"pad_vocab_multiple": pad_vocab_multiple})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.tokenizer_json = tok.to_str()
    return save_checkpoint(model, path)


def _batch(tok, texts):
    enc = tok.encode_batch(list(texts))
    T = max(len(e.ids) for e in enc)
    ids = torch.tensor([e.ids + [0] * (T - len(e.ids)) for e in enc])
    types = torch.tensor([e.type_ids + [0] * (T - len(e.ids)) for e in enc])
    return ids, types, (torch.arange(T)[None, :] < torch.tensor([len(e.ids) for e in enc])[:, None]).long()


@pytest.mark.parametrize("pad_vocab_multiple", [1, 64])
def test_export_pretraining_checkpoint(tmp_path, pad_vocab_multiple):
    ckpt_path = _pretraining_ckpt(tmp_path / "pre.ckpt", pad_vocab_multiple=pad_vocab_multiple)
    out = export(ckpt_path, tmp_path / "hf")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt",
                                                 "tokenizer_config.json", "special_tokens_map.json"}
    ckpt = torch.load(ckpt_path, weights_only=True)
    ours = MLMPretraining(config=ckpt["bert_config"], vocab_size=ckpt["bert_config"]["vocab_size"]).model.eval()
    ours.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    hf = transformers.BertForPreTraining.from_pretrained(out).eval()
    tok = load_tokenizer(ckpt_path)
    ids, types, mask = _batch(tok, PROBE)
    with torch.no_grad():
        mlm, nsp = ours(ids, types, mask)
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(ref.prediction_logits[real], mlm[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref.seq_relationship_logits, nsp, rtol=1e-5, atol=1e-5)


def test_export_classification_checkpoint(tmp_path):
    pre = _pretraining_ckpt(tmp_path / "pre.ckpt")
    model = SequenceClassification(pretrained=str(pre), num_labels=3)
    with torch.no_grad():
        model.model.classifier.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    model.task_name = "mnli"
    cls_ckpt = save_checkpoint(model, tmp_path / "cls.ckpt")
    out = export(cls_ckpt, tmp_path / "hf")
    hf = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    assert hf.config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"}
    ids, types, mask = _batch(load_tokenizer(cls_ckpt), PROBE)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids, token_type_ids=types, attention_mask=mask).logits,
                                   model(ids, types, mask), rtol=1e-5, atol=1e-5)
    # and our loader reads the exported directory back as a pretrained encoder
    again = SequenceClassification(pretrained=str(out), num_labels=3)
    for k, v in model.model.bert.state_dict().items():
        torch.testing.assert_close(again.model.bert.state_dict()[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("lowercase", [True, False])
def test_exported_tokenizer_matches_autotokenizer(tmp_path, lowercase):
    ckpt_path = _pretraining_ckpt(tmp_path / "pre.ckpt", lowercase=lowercase)
    out = export(ckpt_path, tmp_path / "hf")
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is lowercase
    ours = load_tokenizer(ckpt_path)
    auto = transformers.AutoTokenizer.from_pretrained(out)
    for text in PROBE:
        ref = auto(*text) if isinstance(text, tuple) else auto(text)
        enc = ours.encode(*text) if isinstance(text, tuple) else ours.encode(text)
        assert enc.ids == ref["input_ids"] and enc.type_ids == ref["token_type_ids"]
    # vocab.txt alone (the pre-tokenizer.json layout): our loader and AutoTokenizer agree too
    vocab_dir = tmp_path / "vocab_only"
    vocab_dir.mkdir()
    for name in ("vocab.txt", "config.json", "tokenizer_config.json"):
        (vocab_dir / name).write_text((out / name).read_text())
    ours_v, auto_v = load_tokenizer(vocab_dir), transformers.AutoTokenizer.from_pretrained(vocab_dir)
    for text in PROBE:
        ref = auto_v(*text) if isinstance(text, tuple) else auto_v(text)
        enc = ours_v.encode(*text) if isinstance(text, tuple) else ours_v.encode(text)
        assert enc.ids == ref["input_ids"] == (ours.encode(*text) if isinstance(text, tuple) else ours.encode(text)).ids
    assert any(ours.id_to_token(i) in ("東", "京") for i in ours.encode(PROBE[1]).ids)  # CJK split per character


def test_export_command_line(tmp_path, capsys):
    ckpt_path = _pretraining_ckpt(tmp_path / "pre.ckpt")
    cli.main(["export", str(ckpt_path), str(tmp_path / "out")])
    assert f"exported {ckpt_path} -> {tmp_path / 'out'}" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_export_refuses_foreign_files(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=rf"{path}: not a lit-lm checkpoint"):
        export(path, tmp_path / "out")
