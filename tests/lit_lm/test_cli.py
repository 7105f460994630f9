"""The command line: every YAML parses and instantiates; config errors and bad input are one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from one_line import cli_error, run_main

from lit_lm import console
from lit_lm.callbacks import MemoryMonitor
from lit_lm.cli import main
from lit_lm.lightning_cli import LitLMCLI, make_cli

REPO = Path(__file__).resolve().parents[2]
PRETRAIN_LAYERS = ["configs/quickstart.yaml", "configs/wikitext2_tiny.yaml"]  # layered on cli.yaml (tiny models)
BUDGET_LAYERS = ["configs/cpu_hour.yaml", "configs/gpu_hour.yaml"]
STANDALONE = ["configs/sst2.yaml", "configs/quickstart_sst2.yaml"]  # fine-tuning: another model class


def _instantiate(args: list[str], monkeypatch) -> LitLMCLI:
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["lit-lm"])
    return make_cli(args, run=False)


def test_every_yaml_in_the_repo_is_covered():
    yamls = {str(p.relative_to(REPO)) for p in REPO.glob("*.yaml")} | {str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.yaml")}
    assert yamls == {"cli.yaml", *PRETRAIN_LAYERS, *BUDGET_LAYERS, *STANDALONE}, "a new YAML needs a parse test below"


def test_main_config_is_bert_base_recipe(monkeypatch):
    cli = _instantiate(["--config", "cli.yaml"], monkeypatch)
    c, h, t = cli.model.config, cli.model.hparams, cli.trainer
    assert (c.vocab_size, c.n_embd, c.n_layer, c.n_head, c.intermediate_size) == (30522, 768, 12, 12, 3072)
    assert (c.hidden_dropout, c.max_position_embeddings, c.type_vocab_size, c.initializer_range, c.layer_norm_eps) == (0.1, 512, 2, 0.02, 1e-12)
    assert (h.lr, tuple(h.betas), h.eps, h.weight_decay, h.schedule) == (1e-4, (0.9, 0.999), 1e-6, 0.01, "linear")
    assert cli.datamodule.batch_size * t.accumulate_grad_batches * t.num_devices == 256
    assert cli.datamodule.max_seq_len == 128 and t.gradient_clip_val == 1.0 and t.max_steps > 0
    assert cli.config["seed_everything"] == 42


def _checkpoints_kept(trainer: dict, callbacks: list) -> int:
    """Files a full run of ``trainer`` (its config) leaves, by each ModelCheckpoint's keep rule: save_top_k -1 keeps
    every save, k the k latest (none monitored), save_last one more."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    every_validation = trainer["val_check_interval"] // trainer["accumulate_grad_batches"]
    kept = 0
    for entry in callbacks:
        if entry["class_path"].rsplit(".", 1)[-1] != "ModelCheckpoint":
            continue
        args = entry.get("init_args", {})
        cb = ModelCheckpoint(**args)  # Lightning's own defaults for what the entry leaves out
        saves = trainer["max_steps"] // (args.get("every_n_train_steps") or every_validation)
        kept += (saves if cb.save_top_k == -1 else min(cb.save_top_k, saves)) + bool(cb.save_last)
    return kept


def test_main_job_keeps_a_bounded_number_of_checkpoints():
    """cli.yaml over its 1M steps keeps what its comment says (last.ckpt and one checkpoint every 50k steps), not one
    per 1,000 steps: 1.3 TB of BERT-base checkpoints with their AdamW state."""
    import re

    import torch
    import yaml

    from lit_lm.config import BertConfig
    from lit_lm.model import BertForPreTraining

    text = (REPO / "cli.yaml").read_text()
    trainer = yaml.safe_load(text)["trainer"]
    kept = _checkpoints_kept(trainer, trainer["callbacks"])
    assert kept <= 25, f"cli.yaml keeps {kept} checkpoints over a full run"
    stated = re.search(r"A full run \(1M steps\) keeps (\d+)\s+# checkpoints, ([\d.]+) GB", text)
    assert stated and int(stated.group(1)) == kept, "cli.yaml's comment states another count than its callbacks keep"
    # 12 bytes a parameter: fp32 weights and AdamW's two moments (the measured file is 0.01% more)
    with torch.device("meta"):  # shapes only
        params = sum(p.numel() for p in BertForPreTraining(BertConfig.from_name("base", vocab_size=30522)).parameters())
    assert float(stated.group(2)) == pytest.approx(kept * params * 12 / 1e9, abs=0.1)


@pytest.mark.parametrize("layer", PRETRAIN_LAYERS + BUDGET_LAYERS)
def test_overlays_restate_no_list_or_class_of_cli_yaml(layer):
    """A list in a later config replaces the whole list (jsonargparse), so an overlay restating cli.yaml's callbacks
    would silently miss a change there; a logger, model or data section without class_path keeps cli.yaml's class
    and merges its init_args into cli.yaml's."""
    import yaml

    overlay = yaml.safe_load((REPO / layer).read_text())
    assert not {"callbacks", "plugins"} & set(overlay["trainer"]), layer
    for section in (overlay["trainer"].get("logger"), overlay.get("model"), overlay.get("data")):
        assert section is None or "class_path" not in section, layer


@pytest.mark.parametrize("layer", PRETRAIN_LAYERS)
def test_pretraining_layers_instantiate(layer, monkeypatch):
    cli = _instantiate(["--config", "cli.yaml", "--config", layer], monkeypatch)
    assert cli.model.config.vocab_size == cli.datamodule.vocab_size  # linked, stated once
    # cli.yaml's logger with the overlay's run name; cli.yaml's callbacks, checkpoint policy included
    import yaml

    logger = cli.trainer.logger
    assert (logger.save_dir, logger.name, logger.version) == ("runs", Path(layer).stem, "")
    main = yaml.safe_load((REPO / "cli.yaml").read_text())["trainer"]["callbacks"]
    parsed = cli.config["trainer"]["callbacks"]
    assert [c.class_path for c in parsed] == [entry["class_path"] for entry in main]
    for c, entry in zip(parsed, main):
        assert all(c.init_args[k] == v for k, v in entry.get("init_args", {}).items()), c
    assert cli.model.config.n_layer == 2


def test_cpu_hour_is_a_time_budget_recipe(monkeypatch):
    cli = _instantiate(["--config", "cli.yaml", "--config", "configs/cpu_hour.yaml"], monkeypatch)
    c, h, t = cli.model.config, cli.model.hparams, cli.trainer
    assert (c.n_layer, c.n_embd, c.relative_positions, c.hidden_dropout) == (4, 256, "alibi", 0.0)
    assert h.budget == "time" and t.max_steps == -1 and cli.config["trainer"]["max_time"] == "00:01:00:00"
    assert c.vocab_size == cli.datamodule.vocab_size == 8192


def test_gpu_hour_is_the_budget_recipe_on_a_gpu(monkeypatch):
    """The same model and schedule as cpu_hour, at the batch, lr and workers measured on the H200 (parsed with the
    accelerator set to the CPU here: the trainer of a gpu accelerator cannot be built without one)."""
    import yaml

    assert yaml.safe_load((REPO / "configs/gpu_hour.yaml").read_text())["trainer"]["accelerator"] == "gpu"
    cli = _instantiate(["--config", "cli.yaml", "--config", "configs/gpu_hour.yaml", "--trainer.accelerator", "cpu"],
                       monkeypatch)
    c, h, t = cli.model.config, cli.model.hparams, cli.trainer
    assert (c.n_layer, c.n_embd, c.relative_positions, c.vocab_size) == (4, 256, "alibi", 8192)
    assert h.budget == "time" and h.lr == 1.5e-3 and cli.datamodule.batch_size == 128
    assert t.gradient_clip_val == 1.0 and cli.model.hparams.compile is False


def test_mlm_only_reads_packed_text(tmp_path, monkeypatch):
    from data_modules.packing import PackedDataset

    cli = _instantiate(["--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--model.nsp", "false",
                        "--data.cache_dir", str(tmp_path)], monkeypatch)
    assert cli.model.hparams.nsp is False and cli.datamodule.nsp is False  # linked: stated once
    cli.datamodule.prepare_data()
    cli.datamodule.setup("fit")
    assert isinstance(cli.datamodule.datasets["train"], PackedDataset)


def test_finetuning_configs_instantiate(quickstart_run, monkeypatch):
    ckpt = str(quickstart_run / "checkpoints" / "last.ckpt")
    for config in STANDALONE:
        cli = _instantiate(["--config", config, "--model.pretrained", ckpt], monkeypatch)
        assert cli.model.hparams.num_labels == 2  # linked from data.task_name
        assert cli.datamodule.hparams.tokenizer == ckpt  # defaults to the one inside --model.pretrained
        assert cli.trainer.gradient_clip_val == 1.0 and cli.model.model.dropout.p == 0.1


def _error(args: list[str], capfd, monkeypatch) -> str:
    """The one error line of a refused command: exit 2, nothing after it, no traceback or usage screen."""
    return cli_error(args, capfd, monkeypatch)


QUICK = ["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.max_steps=1"]


def test_unknown_config_key_is_one_line(tmp_path, capfd, monkeypatch):
    assert "'bogus' is not accepted" in _error([*QUICK, "--model.bogus=3"], capfd, monkeypatch)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  init_args:\n    batch_sise: 8\n")
    assert "batch_sise" in _error([*QUICK, "--config", str(bad)], capfd, monkeypatch)
    assert "max_stepz" in _error([*QUICK, "--trainer.max_stepz=3"], capfd, monkeypatch)
    assert "float" in _error([*QUICK, "--model.lr=abc"], capfd, monkeypatch)


def test_bad_data_dir_is_one_line(tmp_path, capfd, monkeypatch):
    cache = f"--data.cache_dir={tmp_path / 'cache'}"
    msg = _error([*QUICK, cache, f"--data.data_dir={tmp_path / 'nope'}"], capfd, monkeypatch)
    assert str(tmp_path / "nope") in msg and "no such directory" in msg
    (tmp_path / "empty").mkdir()
    msg = _error([*QUICK, cache, f"--data.data_dir={tmp_path / 'empty'}"], capfd, monkeypatch)
    assert "empty folder" in msg and "wikitext, text, jsonl" in msg  # lists the formats it reads


def test_tokenizer_larger_than_model_vocab_is_one_line(tmp_path, capfd, monkeypatch):
    # a tokenizer of ~2.5k tokens (the bundled corpus) does not fit a 1000-token model
    from data_modules.wikitext import WikiText103DataModule

    dm = WikiText103DataModule(data_dir=str(REPO / "data_modules/samples/wikitext"), cache_dir=str(tmp_path / "c1"),
                               vocab_size=4096, num_workers=0)
    dm.prepare_data()
    tok = dm.cache_path() / "tokenizer.json"
    msg = _error([*QUICK, f"--data.cache_dir={tmp_path / 'c2'}", "--data.vocab_size=1000", f"--data.tokenizer={tok}"],
                 capfd, monkeypatch)
    assert "1000" in msg and "vocab_size" in msg


def test_max_seq_len_beyond_position_table_is_one_line(tmp_path, capfd, monkeypatch):
    msg = _error([*QUICK, f"--data.cache_dir={tmp_path}", "--data.max_seq_len=256",
                  "--model.config_overrides={max_position_embeddings: 128}"], capfd, monkeypatch)
    assert "max_position_embeddings=128" in msg


def test_help_documents_the_options(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["lit-lm"])
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", "cli.yaml", "--model.help", "lit_lm.pretraining.MLMPretraining"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Peak learning rate of AdamW" in out and "sparse_prediction" in out
    main(["config"])  # the BertConfig fields behind --model.config, documented
    out = capsys.readouterr().out
    assert "Number of transformer blocks" in out and "LayerNorm" in out
    main(["config", "mini"])
    assert "n_layer: 4" in capsys.readouterr().out


def test_fsdp_parses_and_needs_a_gpu(tmp_path, capfd, monkeypatch):
    import torch

    # our parser takes the choice as it is (no config error) and hands it to the trainer
    code, out = run_main([*QUICK, "--trainer.strategy=fsdp", "--print_config"], capfd, monkeypatch, cwd=REPO)
    assert code == 0 and "\n  strategy: fsdp\n" in out, out
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: FSDP runs here")
    # without a GPU the run stops when the trainer is built: one line naming the strategy, exit 2, nothing written
    runs = tmp_path / "runs"
    msg = _error([*QUICK, "--trainer.strategy=fsdp", "--trainer.devices=1", f"--trainer.logger.init_args.save_dir={runs}",
                  f"--data.cache_dir={tmp_path / 'cache'}"], capfd, monkeypatch)
    assert "fsdp" in msg
    assert not runs.exists()


@pytest.mark.parametrize("bar", ["true", "false"])
def test_every_trainer_gets_one_memory_monitor_with_or_without_the_progress_bar(bar, monkeypatch):
    cli = _instantiate(["--config", "cli.yaml", "--config", "configs/quickstart.yaml",
                        "--trainer.enable_progress_bar", bar], monkeypatch)
    callbacks = cli.trainer.callbacks
    assert sum(isinstance(c, MemoryMonitor) for c in callbacks) == 1  # the summary line's peaks, workers included
    assert any(isinstance(c, console.ProgressBar) for c in callbacks) == (bar == "true")


def test_ckpt_path_says_which_of_the_given_values_its_hyper_parameters_replace(quickstart_run, tmp_path, caplog,
                                                                              monkeypatch):
    """LightningCLI puts a checkpoint's hyper-parameters over the command line: `validate --model.nsp false` of an
    MLM+NSP checkpoint validates with NSP. That is said in one line naming each replaced value; a value the
    checkpoint agrees with is not named."""
    import torch

    ckpt = quickstart_run / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True, map_location="cpu")["hyper_parameters"]
    monkeypatch.chdir(REPO)
    caplog.set_level("INFO")
    main(["validate", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--model.nsp", "false",
          "--model.lr", "0.5", f"--model.weight_decay={saved['weight_decay']}", "--trainer.limit_val_batches", "1",
          "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", f"--trainer.default_root_dir={tmp_path}",
          f"--data.cache_dir={quickstart_run.parent / 'cache'}", "--ckpt_path", str(ckpt)])  # config.yaml: tmp_path
    lines = [m for m in caplog.messages if m.startswith("--ckpt_path")]
    assert lines == [f"--ckpt_path {ckpt}: the checkpoint's hyper-parameters replace the config's lr 0.5 -> "
                     f"{saved['lr']!r}, nsp False -> True (a checkpoint runs as it was trained; to change them, start "
                     f"a new run from its weights)"]
