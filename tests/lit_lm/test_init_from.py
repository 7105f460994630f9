"""Continued pretraining, ``--model.init_from``: weights (and the heads present) from a HuggingFace BERT directory or
a lit-lm checkpoint; the source's architecture and vocabulary over the config's; a fresh optimizer and step count
(``--ckpt_path`` still resumes); the result keeps training and exports to transformers."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from one_line import cli_error, run_main
from resume_helpers import fit_config
from tokenizers import Tokenizer

from conftest import require_transformers, save_checkpoint

transformers = require_transformers()

from data_modules.corpus import CorpusDataModule  # noqa: E402
from data_modules.tokenizer import train_tokenizer  # noqa: E402
from lit_lm.config import BertConfig  # noqa: E402
from lit_lm.convert import lit_to_hf_state_dict, strip_prefix  # noqa: E402
from lit_lm.model import BertForPreTraining  # noqa: E402
from lit_lm.pretraining import MLMPretraining  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data_modules" / "samples" / "wikitext"
HF_CLASSES = ("BertForPreTraining", "BertForMaskedLM", "BertModel")
LOADED = {
    "BertForPreTraining": "encoder, pooler, MLM head and NSP head loaded",
    "BertForMaskedLM": "encoder and MLM head loaded; pooler and NSP head initialised (not in the source)",
    "BertModel": "encoder and pooler loaded; MLM head and NSP head initialised (not in the source)",
}
STEPS = 4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet():
    transformers.logging.set_verbosity_error()


def _vocab_file(tok: Tokenizer, directory: Path) -> None:
    by_id = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (directory / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in by_id), encoding="utf-8")


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    """A WordPiece vocabulary of the bundled corpus, so that the sources below can train on it."""
    return train_tokenizer((SAMPLE / "wiki.train.tokens").read_text().splitlines(), 600, show_progress=False)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory, tok) -> dict[str, Path]:
    """Tiny HuggingFace BERT directories (L2 / H32 / A2 / I64, 128 positions) of each class, with a vocab.txt."""
    root = tmp_path_factory.mktemp("hf")
    config = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    dirs = {}
    for i, name in enumerate(HF_CLASSES):
        torch.manual_seed(i)
        model = getattr(transformers, name)(config)
        with torch.no_grad():  # non-zero biases and LayerNorms: an initialised head could not pass for a loaded one
            for key, p in model.named_parameters():
                if key.endswith("bias") or "LayerNorm" in key:
                    p.add_(0.1 * torch.randn_like(p))
        dirs[name] = root / name
        model.save_pretrained(dirs[name])
        _vocab_file(tok, dirs[name])
    return dirs



@pytest.fixture(scope="module")
def lit_ckpt(tmp_path_factory, tok) -> Path:
    """A tiny lit-lm pretraining checkpoint with perturbed weights, carrying the tokenizer."""
    torch.manual_seed(0)
    model = MLMPretraining(config="tiny", vocab_size=tok.get_vocab_size())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.tokenizer_json = tok.to_str()
    return save_checkpoint(model, tmp_path_factory.mktemp("lit") / "pretrain.ckpt")


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("init_from ")]


def _hf_reference(name: str, directory: Path) -> dict[str, torch.Tensor]:
    hf = getattr(transformers, name).from_pretrained(directory)
    return strip_prefix(hf.state_dict())  # a bare BertModel's keys get the "bert." prefix


def _assert_bert_init(w: torch.Tensor, std: float = 0.02) -> None:
    """A weight as BERT's initialisation leaves it: truncated normal(std) within 2 std (whose own std is 0.88 std)."""
    assert w.abs().max() <= 2 * std and 0.6 * std < w.std() < 1.1 * std, (w.abs().max(), w.std())


# ---------------------------------------------------------------------------------------------------------------------
# the weights before the first step


@pytest.mark.parametrize("name", HF_CLASSES)
def test_weights_equal_the_huggingface_source(name, hf_dirs, caplog):
    caplog.set_level(logging.INFO)
    torch.manual_seed(0)
    model = MLMPretraining(config="tiny", vocab_size=4096, init_from=str(hf_dirs[name]))
    ref = _hf_reference(name, hf_dirs[name])
    ours = lit_to_hf_state_dict(model.model.state_dict(), model.config)
    assert {k for k in ref if not k.startswith("cls.predictions.decoder")} <= ours.keys()
    for k, v in ref.items():
        assert torch.equal(ours[k], v), k
    assert _messages(caplog)[-1] == f"init_from {hf_dirs[name]}: {LOADED[name]}"
    heads = model.model
    if name != "BertForPreTraining":  # the parts the source lacks start from BERT's initialisation
        _assert_bert_init(heads.nsp_head.weight)
        assert not heads.nsp_head.bias.any()
    if name == "BertForMaskedLM":
        _assert_bert_init(heads.bert.pooler.weight)
        assert not heads.bert.pooler.bias.any()
    if name == "BertModel":
        _assert_bert_init(heads.mlm_head.dense.weight)
        assert not heads.mlm_head.bias.any() and not heads.mlm_head.dense.bias.any()
        assert torch.equal(heads.mlm_head.ln.weight, torch.ones(32))


def test_layernorm_gamma_beta_names_load(hf_dirs, tmp_path):
    """bert-base-uncased's model.safetensors names its LayerNorms gamma / beta (the first PyTorch port's names)."""
    import shutil

    from safetensors.torch import load_file, save_file

    src = hf_dirs["BertForPreTraining"]
    shutil.copytree(src, tmp_path / "legacy")
    state = load_file(src / "model.safetensors")
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in state.items()}
    assert sum(k.endswith("LayerNorm.gamma") for k in legacy) == 2 * 2 + 2  # 2 a block, embeddings, MLM transform
    save_file(legacy, tmp_path / "legacy" / "model.safetensors", metadata={"format": "pt"})
    loaded = MLMPretraining(config="tiny", vocab_size=600, init_from=str(tmp_path / "legacy")).state_dict()
    for k, v in MLMPretraining(config="tiny", vocab_size=600, init_from=str(src)).state_dict().items():
        assert torch.equal(loaded[k], v), k


def test_same_logits_as_the_huggingface_model(hf_dirs):
    model = MLMPretraining(config="tiny", vocab_size=4096, init_from=str(hf_dirs["BertForPreTraining"])).model.eval()
    hf = transformers.BertForPreTraining.from_pretrained(hf_dirs["BertForPreTraining"], attn_implementation="eager").eval()
    torch.manual_seed(0)
    ids = torch.randint(5, 600, (3, 17))
    types = torch.zeros_like(ids)
    types[:, 9:] = 1
    mask = torch.ones_like(ids)
    mask[2, 12:] = 0
    with torch.no_grad():
        mlm, nsp = model(ids, types, mask)
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(mlm[real], ref.prediction_logits[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nsp, ref.seq_relationship_logits, rtol=1e-5, atol=1e-5)


def test_weights_equal_a_lit_lm_checkpoint(lit_ckpt, caplog):
    caplog.set_level(logging.INFO)
    model = MLMPretraining(config="tiny", vocab_size=600, init_from=str(lit_ckpt))
    saved = torch.load(lit_ckpt, weights_only=True)["state_dict"]
    state = model.state_dict()
    assert state.keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(state[k], v), k
    assert _messages(caplog) == [f"init_from {lit_ckpt}: encoder, pooler, MLM head and NSP head loaded"]
    assert model.tokenizer_json == torch.load(lit_ckpt, weights_only=True)["tokenizer"]


def test_the_source_decides_the_architecture_regularisation_may_change(lit_ckpt, caplog):
    """The config's size and vocabulary and the architecture fields of config_overrides give way to the source's,
    said in one line; dropout and initializer_range are overridden."""
    caplog.set_level(logging.INFO)
    model = MLMPretraining(config="mini", vocab_size=4096, init_from=str(lit_ckpt), config_overrides={
        "relative_positions": "alibi", "hidden_dropout": 0.0, "attention_dropout": 0.05})
    source = BertConfig(**torch.load(lit_ckpt, weights_only=True)["bert_config"])
    assert model.config == BertConfig(**{**source.asdict(), "hidden_dropout": 0.0, "attention_dropout": 0.05})
    assert model.hparams.vocab_size == 600 and model.hparams.config == model.config.asdict()
    assert _messages(caplog)[0] == (
        f"init_from {lit_ckpt}: the source's architecture and vocabulary replace the config's (mini): "
        "vocab_size 4096 -> 600, n_layer 4 -> 2, n_head 4 -> 2, n_embd 256 -> 128, intermediate_size 1024 -> 512, "
        "relative_positions alibi -> none")


def test_mlm_only_freezes_the_pooler_and_nsp_head_as_without_init_from(hf_dirs):
    model = MLMPretraining(config="tiny", vocab_size=600, init_from=str(hf_dirs["BertModel"]), nsp=False)
    frozen = {n for n, p in model.model.named_parameters() if not p.requires_grad}
    assert frozen == {"bert.pooler.weight", "bert.pooler.bias", "nsp_head.weight", "nsp_head.bias"}
    ref = _hf_reference("BertModel", hf_dirs["BertModel"])
    assert torch.equal(model.model.bert.pooler.weight, ref["bert.pooler.dense.weight"])


def _broken(tmp_path: Path, hf_dirs: dict[str, Path], lit_ckpt: Path, case: str) -> tuple[Path, str]:
    import shutil

    src = hf_dirs["BertForPreTraining"]
    path = tmp_path / case
    if case == "missing":
        return path, f"--model.init_from {path}: no such file or directory"
    if case == "no config.json":
        path.mkdir()
        return path, f"--model.init_from: {path}: not a HuggingFace BERT directory (no config.json)"
    if case == "no weights":
        path.mkdir()
        shutil.copy(src / "config.json", path)
        shutil.copy(src / "vocab.txt", path)
        return path, f"--model.init_from: {path}: no model.safetensors or pytorch_model.bin"
    if case == "config of another size":
        shutil.copytree(src, path)
        (path / "config.json").write_text((src / "config.json").read_text().replace('"hidden_size": 32', '"hidden_size": 64'))
        return path, f"--model.init_from: {path}: bert.embeddings.word.weight has shape (600, 32) but its config makes (600, 64)"
    if case == "a layer short":
        shutil.copytree(src, path)
        (path / "config.json").write_text((src / "config.json").read_text().replace('"num_hidden_layers": 2',
                                                                                   '"num_hidden_layers": 3'))
        return path, f"--model.init_from: {path}: weights do not fit its config (missing ['bert.blocks.2."
    if case == "vocab.txt beyond the vocabulary":
        shutil.copytree(src, path)
        (path / "vocab.txt").write_text((src / "vocab.txt").read_text() + "extra1\nextra2\n")
        return path, f"--model.init_from: {path}: its tokenizer has 602 tokens but its encoder vocab_size=600"
    if case == "classification checkpoint":
        from lit_lm.classification import SequenceClassification

        path = save_checkpoint(SequenceClassification(pretrained=str(lit_ckpt)), tmp_path / "cls.ckpt")
        return path, f"--model.init_from: {path}: a lit-lm classification checkpoint; expected a pretraining checkpoint"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "no config.json", "no weights", "config of another size", "a layer short",
                                  "vocab.txt beyond the vocabulary", "classification checkpoint"])
def test_sources_that_do_not_fit_are_one_line_errors(case, tmp_path, hf_dirs, lit_ckpt):
    path, message = _broken(tmp_path, hf_dirs, lit_ckpt, case)
    with pytest.raises(ValueError) as e:
        MLMPretraining(config="tiny", vocab_size=600, init_from=str(path))
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_the_data_must_tokenize_with_the_source_vocabulary(hf_dirs, tok):
    """Outside the CLI (which defaults --data.tokenizer to the source) a data module that trained its own tokenizer
    is refused at setup, before a step scrambles the embedding rows."""
    from types import SimpleNamespace

    source = hf_dirs["BertModel"]
    model = MLMPretraining(config="tiny", vocab_size=600, init_from=str(source))
    other = train_tokenizer((SAMPLE / "wiki.valid.tokens").read_text().splitlines(), 300, show_progress=False)
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(tokenizer_json=other.to_str(), tokenizer_source=None))
    with pytest.raises(ValueError) as e:
        model.setup("fit")
    assert str(e.value) == (f"the data's tokenizer: its vocabulary (300 tokens) differs from that of --model.init_from "
                            f"{source} (600 tokens); use the source's tokenizer (the default when --data.tokenizer is "
                            f"unset)")
    model._trainer.datamodule.tokenizer_json = tok.to_str()  # the same vocabulary from another file: accepted
    model.setup("fit")
    assert model.tokenizer_json == tok.to_str()


# ---------------------------------------------------------------------------------------------------------------------
# continued pretraining: the loss goes down, the result exports


def _jsonl_corpus(path: Path) -> Path:
    """The bundled sample's articles as a JSON Lines corpus, one {"text": article} a row (no split files: validation
    is carved from it)."""
    articles = re.split(r"^ = [^=].* = $", (SAMPLE / "wiki.train.tokens").read_text(), flags=re.M)
    rows = [{"text": "\n".join(line.strip() for line in a.splitlines() if line.strip() and not line.startswith(" ="))}
            for a in articles]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["text"]))
    return path


@pytest.fixture(scope="module")
def continued(tmp_path_factory, hf_dirs) -> dict:
    """20 steps of MLM + NSP on a JSON Lines corpus from the HF BertForMaskedLM directory, validated before and
    after; the checkpoint written at the end."""
    tmp = tmp_path_factory.mktemp("continued")
    source = str(hf_dirs["BertForMaskedLM"])
    L.seed_everything(0)
    model = MLMPretraining(config="tiny", vocab_size=600, init_from=source, lr=2e-3, warmup_steps=2)
    dm = CorpusDataModule(data_dir=str(_jsonl_corpus(tmp / "corpus.jsonl")), cache_dir=str(tmp / "cache"),
                          vocab_size=600, tokenizer=source, val_fraction=0.05, batch_size=16, num_workers=0,
                          max_val_pairs=64, max_seq_len=64)
    trainer = L.Trainer(max_steps=20, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        val_check_interval=1000, check_val_every_n_epoch=None, limit_val_batches=2)
    before = trainer.validate(model, dm, verbose=False)[0]["val/mlm_loss"]
    trainer.fit(model, dm)
    after = trainer.validate(model, dm, verbose=False)[0]["val/mlm_loss"]
    ckpt = tmp / "continued.ckpt"
    trainer.save_checkpoint(ckpt)
    return {"before": before, "after": after, "ckpt": ckpt, "steps": trainer.global_step}


@pytest.mark.slow
def test_continued_pretraining_lowers_the_mlm_loss(continued):
    assert continued["steps"] == 20
    # the same validation batches and masks both times (deterministic): from ln(600) = 6.4 down by 0.3 on this CPU
    assert continued["after"] < continued["before"] - 0.1, continued


@pytest.mark.slow
def test_the_checkpoint_after_continued_pretraining_exports_to_transformers(continued, tmp_path, tok):
    from lit_lm.cli import main

    main(["export", str(continued["ckpt"]), str(tmp_path / "hf")])
    ckpt = torch.load(continued["ckpt"], weights_only=True)
    ours = BertForPreTraining(BertConfig(**ckpt["bert_config"])).eval()
    ours.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    hf = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    enc = tok.encode("the film was released in the united states .", "it was a success .")
    ids, types = torch.tensor([enc.ids]), torch.tensor([enc.type_ids])
    with torch.no_grad():
        mlm, nsp = ours(ids, types)
        ref = hf(input_ids=ids, token_type_ids=types)
    torch.testing.assert_close(mlm, ref.prediction_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nsp, ref.seq_relationship_logits, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# through the command line


class WeightsAtStart(L.Callback):
    """Saves the weights as they are when training starts (after any checkpoint restore, before the first step)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.save({k: v.detach().clone() for k, v in pl_module.state_dict().items()}, os.environ["LIT_LM_TEST_WEIGHTS"])


CONFIG = fit_config(STEPS, STEPS, ["test_init_from.WeightsAtStart"], data={"batch_size": 16, "num_workers": 0},
                    val_check_interval=STEPS, limit_val_batches=2)


def _notices(output: str) -> list[str]:
    lines = (line.removeprefix("INFO: ") for line in output.splitlines())  # Lightning's console log format
    return [line for line in lines if line.startswith("init_from ")]


def _fit(tmp: Path, capfd, monkeypatch, *args: str) -> tuple[str, dict, dict]:
    """A quickstart fit (tiny, vocabulary 4096) with ``args``: (its output, the weights when training started, its
    last checkpoint)."""
    (tmp / "init_from.yaml").write_text(CONFIG)
    weights = tmp / "weights_at_start.pt"
    monkeypatch.setenv("LIT_LM_TEST_WEIGHTS", str(weights))
    code, out = run_main(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--config",
                          str(tmp / "init_from.yaml"), f"--trainer.logger.init_args.save_dir={tmp}",
                          f"--data.cache_dir={tmp / 'cache'}", *args], capfd, monkeypatch)
    assert code == 0, out
    last = torch.load(tmp / "quickstart" / "checkpoints" / "last.ckpt", weights_only=True)
    return out, torch.load(weights, weights_only=True), last


@pytest.mark.slow
def test_cli_takes_architecture_vocabulary_and_tokenizer_from_a_huggingface_source(tmp_path, hf_dirs, tok, capfd,
                                                                                  monkeypatch):
    source = hf_dirs["BertForPreTraining"]
    out, start, last = _fit(tmp_path, capfd, monkeypatch, f"--model.init_from={source}")
    assert _notices(out) == [
        f"init_from {source}: the source's architecture and vocabulary replace the config's (tiny): vocab_size 4096 "
        "-> 600, n_embd 128 -> 32, intermediate_size 512 -> 64, max_position_embeddings 512 -> 128",
        f"init_from {source}: encoder, pooler, MLM head and NSP head loaded",
    ], out
    ref = _hf_reference("BertForPreTraining", source)
    ours = lit_to_hf_state_dict({k.removeprefix("model."): v for k, v in start.items()}, BertConfig(**last["bert_config"]))
    for k, v in ref.items():
        assert torch.equal(ours[k], v), k
    assert last["bert_config"] == BertConfig.from_hf_json(source / "config.json").asdict()
    assert last["hyper_parameters"]["vocab_size"] == 600 and last["global_step"] == STEPS
    assert Tokenizer.from_str(last["tokenizer"]).get_vocab() == tok.get_vocab()  # the data used the source's


@pytest.mark.slow
def test_cli_from_a_trained_checkpoint_starts_afresh_and_ckpt_path_still_resumes(tmp_path, continued, tok, capfd,
                                                                                  monkeypatch):
    """--model.init_from a checkpoint 20 steps in: its weights, but step 0, a fresh optimizer and schedule (resumed,
    the run would stop at once: max_steps 4 < 20). --ckpt_path then resumes that run as before."""
    same = tmp_path / "same_vocab.json"  # another file with the source's vocabulary is accepted
    tok.save(str(same))
    source = str(continued["ckpt"])
    out, start, last = _fit(tmp_path, capfd, monkeypatch, f"--model.init_from={source}", f"--data.tokenizer={same}")
    saved = torch.load(source, weights_only=True)
    for k, v in saved["state_dict"].items():
        assert torch.equal(start[k], v), k
    assert _notices(out) == [
        f"init_from {source}: the source's architecture and vocabulary replace the config's (tiny): vocab_size 4096 "
        "-> 600, n_embd 128 -> 32, intermediate_size 512 -> 64, max_position_embeddings 512 -> 128",
        f"init_from {source}: encoder, pooler, MLM head and NSP head loaded"]
    assert last["global_step"] == STEPS and f"pretraining: {STEPS} steps in" in out
    assert last["lr_schedulers"][0]["last_epoch"] == STEPS
    assert last["optimizer_states"][0]["state"][0]["step"] == STEPS
    # --ckpt_path resumes this run (its weights, its step), whatever --model.init_from says
    out, start, resumed = _fit(tmp_path, capfd, monkeypatch, f"--model.init_from={source}", f"--data.tokenizer={same}",
                               f"--trainer.max_steps={STEPS + 1}", "--ckpt_path", "last")
    for k, v in last["state_dict"].items():
        assert torch.equal(start[k], v), k
    assert resumed["global_step"] == STEPS + 1 and f"pretraining: {STEPS + 1} steps in" in out


def test_cli_tokenizer_of_another_vocabulary_is_a_one_line_error(tmp_path, hf_dirs, capfd, monkeypatch):
    other = tmp_path / "other.json"
    train_tokenizer((SAMPLE / "wiki.valid.tokens").read_text().splitlines(), 300, show_progress=False).save(str(other))
    source = hf_dirs["BertModel"]
    cli_error(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", f"--model.init_from={source}",
               f"--data.tokenizer={other}", f"--trainer.logger.init_args.save_dir={tmp_path}",
               f"--data.cache_dir={tmp_path / 'cache'}"], capfd, monkeypatch,
              f"lit-lm: error: --data.tokenizer {other}: its vocabulary (300 tokens) differs from that of "
              f"--model.init_from {source} (600 tokens); use the source's tokenizer (the default when "
              f"--data.tokenizer is unset)")


def test_cli_missing_source_is_a_one_line_error(tmp_path, capfd, monkeypatch):
    cli_error(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml",
               f"--model.init_from={tmp_path / 'nope'}", f"--trainer.logger.init_args.save_dir={tmp_path}"],
              capfd, monkeypatch, f"lit-lm: error: --model.init_from {tmp_path / 'nope'}: no such file or directory")


@pytest.mark.slow
def test_cli_resumes_an_init_from_run_after_its_source_is_gone(tmp_path, hf_dirs, capfd, monkeypatch):
    """The checkpoint of an --model.init_from run holds its weights, architecture and tokenizer: --ckpt_path (last or
    a path) resumes it with the source deleted, says in one line that the checkpoint's architecture replaces the
    config's, and the resumed run's hyper-parameters still name the source."""
    import shutil

    source = tmp_path / "source"
    shutil.copytree(hf_dirs["BertForMaskedLM"], source)
    _, _, first = _fit(tmp_path, capfd, monkeypatch, f"--model.init_from={source}")
    shutil.rmtree(source)
    ckpts = tmp_path / "quickstart" / "checkpoints"
    out, start, resumed = _fit(tmp_path, capfd, monkeypatch, f"--model.init_from={source}",
                               f"--trainer.max_steps={STEPS + 1}", "--ckpt_path", "last")
    assert _notices(out) == [], out  # nothing is initialised from the source
    assert (f"--ckpt_path {ckpts / 'last.ckpt'}: the architecture and vocabulary of this --model.init_from run "
            "replace the config's (tiny): vocab_size 4096 -> 600, n_embd 128 -> 32, intermediate_size 512 -> 64, "
            "max_position_embeddings 512 -> 128") in out, out
    for k, v in first["state_dict"].items():
        assert torch.equal(start[k], v), k
    assert resumed["global_step"] == STEPS + 1 and f"pretraining: {STEPS + 1} steps in" in out
    assert resumed["hyper_parameters"]["init_from"] == str(source)
    assert resumed["bert_config"] == first["bert_config"] and resumed["tokenizer"] == first["tokenizer"]
    # a path: LightningCLI reads the run's hyper-parameters from it (config: the built one; nothing to say)
    shutil.copy(ckpts / "last.ckpt", tmp_path / "step5.ckpt")
    out, start, again = _fit(tmp_path, capfd, monkeypatch, f"--model.init_from={source}",
                             f"--trainer.max_steps={STEPS + 2}", "--ckpt_path", str(tmp_path / "step5.ckpt"))
    for k, v in resumed["state_dict"].items():
        assert torch.equal(start[k], v), k
    assert again["global_step"] == STEPS + 2 and again["hyper_parameters"]["init_from"] == str(source)


def test_cli_resume_of_an_init_from_run_checks_the_tokenizer_against_the_checkpoint(tmp_path, hf_dirs, capfd,
                                                                                     monkeypatch):
    """Resuming, the vocabulary is the checkpoint's: another --data.tokenizer is refused in one line, before the
    data is prepared, without reading the source (gone here)."""
    import shutil

    source = tmp_path / "source"
    shutil.copytree(hf_dirs["BertModel"], source)
    ckpts = tmp_path / "quickstart" / "checkpoints"  # where --ckpt_path last looks
    ckpts.mkdir(parents=True)
    ckpt = save_checkpoint(MLMPretraining(config="tiny", vocab_size=600, init_from=str(source)), ckpts / "last.ckpt")
    shutil.rmtree(source)
    other = tmp_path / "other.json"
    train_tokenizer((SAMPLE / "wiki.valid.tokens").read_text().splitlines(), 300, show_progress=False).save(str(other))
    cli_error(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", f"--model.init_from={source}",
               f"--data.tokenizer={other}", "--ckpt_path", "last", f"--trainer.logger.init_args.save_dir={tmp_path}",
               f"--data.cache_dir={tmp_path / 'cache'}"], capfd, monkeypatch,
              f"lit-lm: error: --data.tokenizer {other}: its vocabulary (300 tokens) differs from that of --ckpt_path "
              f"{ckpt} (600 tokens)")
    assert not (tmp_path / "cache").exists()  # refused before the data was prepared
