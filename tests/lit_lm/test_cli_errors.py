"""Every argument of the two LightningModules and the two DataModules that can be refused is refused through the real
CLI in one line naming the option and what was expected (exit code 2, no traceback, no jsonargparse union report).

LightningCLI builds the modules after parsing, inside jsonargparse, which wraps an error raised there in a
many-line "Does not validate against any of the Union subtypes" report; the CLI shows the error itself.
"""

from __future__ import annotations

import pytest
import torch
from one_line import cli_error

PRETRAIN = ["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.max_steps=1"]
FINETUNE = ["fit", "--config", "configs/quickstart_sst2.yaml", "--trainer.max_steps=1"]

# (extra arguments, what the error line must hold: the option first)
PRETRAINING_CASES = {
    "model size": (["--model.config=bogus"], "--model.config 'bogus'", "not a size"),
    "config.json path": (["--model.config=missing/config.json"], "--model.config", "no such config.json"),
    "unknown override": (["--model.config_overrides={bogus: 1}"], "--model.config_overrides", "unknown BertConfig field(s) bogus"),
    "heads": (["--model.config_overrides={n_head: 3}"], "--model.config_overrides", "divisible by n_head=3"),
    "rope head size": (["--model.config_overrides={relative_positions: rope, n_head: 128}"],
                       "--model.config_overrides", "even head size"),
    "no positions": (["--model.config_overrides={position_embedding: none}"], "--model.config_overrides", "alibi"),
    "lr": (["--model.lr=0"], "--model.lr=0.0", "expected > 0"),
    "weight decay": (["--model.weight_decay=-0.1"], "--model.weight_decay=-0.1", "expected >= 0"),
    "warmup": (["--model.warmup_steps=-5"], "--model.warmup_steps=-5", "expected >= 0"),
    "plateau check": (["--model.plateau_check=1.5"], "--model.plateau_check=1.5", "(0, 1]"),
    "budget": (["--model.budget=epochs"], "--model.budget", "'steps', 'time'"),
    "schedule": (["--model.schedule=step"], "--model.schedule", "'linear'"),
    "variant": (["--data.variant=bogus"], "--data.variant", "'tokens', 'raw'"),
    "max_seq_len": (["--data.max_seq_len=4"], "--data.max_seq_len=4", "expected 8..512"),
    "vocab_size": (["--data.vocab_size=3"], "--data.vocab_size=3", "expected > 5"),
    "batch_size": (["--data.batch_size=0"], "--data.batch_size=0", "expected >= 1"),
    "val_batch_size": (["--data.val_batch_size=0"], "--data.val_batch_size=0", "expected >= 1"),
    "num_workers": (["--data.num_workers=-1"], "--data.num_workers=-1", "expected >= 0"),
    "short_seq_prob": (["--data.short_seq_prob=2"], "--data.short_seq_prob=2.0", "expected 0..1"),
    "nsp_prob": (["--data.nsp_prob=-1"], "--data.nsp_prob=-1.0", "expected 0..1"),
    "mlm_probability": (["--data.mlm_probability=1"], "--data.mlm_probability=1.0", "expected in (0, 1)"),
    "tokenizer_sample_bytes": (["--data.tokenizer_sample_bytes=0"], "--data.tokenizer_sample_bytes=0", "expected > 0"),
    "max_val_pairs": (["--data.max_val_pairs=0"], "--data.max_val_pairs=0", "expected >= 1"),
    "pad_to_multiple_of": (["--data.pad_to_multiple_of=0"], "--data.pad_to_multiple_of=0", "expected >= 1"),
    "tokenizer file": (["--data.tokenizer=missing.json"], "--data.tokenizer: missing.json", "no such tokenizer file"),
    "not a number": (["--data.max_seq_len=long"], "--data.max_seq_len", "int"),
}


@pytest.mark.parametrize("args, option, expected", PRETRAINING_CASES.values(), ids=PRETRAINING_CASES.keys())
def test_pretraining_arguments(args, option, expected, tmp_path, capfd, monkeypatch):
    cli_error([*PRETRAIN, f"--data.cache_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}", *args],
              capfd, monkeypatch, option, expected)


def _finetuning_cases(tmp_path, pretrained: str, tokenizer: str) -> dict[str, tuple[list[str], str, str]]:
    plain = tmp_path / "plain.txt"
    plain.write_text("not a checkpoint\n")
    classification = tmp_path / "classification.ckpt"
    torch.save({"lit_lm_kind": "classification", "state_dict": {}, "bert_config": {}}, classification)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    other_tokenizer = tmp_path / "other.json"
    from data_modules.tokenizer import train_tokenizer

    train_tokenizer(["a completely different little corpus of words"] * 20, 40, show_progress=False).save(str(other_tokenizer))
    random_init = ["--model.pretrained=null", f"--data.tokenizer={tokenizer}"]
    with_model = [f"--model.pretrained={pretrained}"]
    return {
        # the issue's first case: configs/sst2.yaml without a model or a tokenizer
        "no model, no tokenizer": (["--model.pretrained=null"], "--data.tokenizer is required without --model.pretrained", ""),
        "empty pretrained": (["--model.pretrained="], "--model.pretrained ''", "expected a lit-lm pretraining .ckpt"),
        "missing pretrained": ([f"--model.pretrained={tmp_path / 'nope.ckpt'}"], "--model.pretrained", "no such file"),
        "not a checkpoint": ([f"--model.pretrained={plain}"], "--model.pretrained", "not a readable lit-lm checkpoint"),
        "classification checkpoint": ([f"--model.pretrained={classification}"], "--model.pretrained",
                                      "expected a pretraining checkpoint"),
        "directory without config.json": ([f"--model.pretrained={empty_dir}"], "--model.pretrained", "no config.json"),
        "other tokenizer": ([*with_model, f"--data.tokenizer={other_tokenizer}"], "--data.tokenizer",
                            "its vocabulary differs"),
        "missing tokenizer": (["--model.pretrained=null", f"--data.tokenizer={tmp_path / 'nope.json'}"],
                              "--data.tokenizer", "no such tokenizer file"),
        "tokenizer not JSON": (["--model.pretrained=null", f"--data.tokenizer={plain}"], "--data.tokenizer",
                               "not a tokenizers JSON file"),
        "random-init size": ([*random_init, "--model.config=huge"], "--model.config 'huge'", "not a size"),
        "random-init checkpoint shape": ([*random_init, f"--model.config={plain.with_suffix('.ckpt')}"],
                                         "--model.config", "no such checkpoint file"),
        "dropout": ([*with_model, "--model.dropout=1.5"], "--model.dropout=1.5", "expected 0 <= p < 1"),
        "classifier dropout": ([*with_model, "--model.classifier_dropout=-0.1"], "--model.classifier_dropout=-0.1",
                               "expected 0 <= p < 1"),
        "lr": ([*with_model, "--model.lr=-1"], "--model.lr=-1.0", "expected > 0"),
        "weight decay": ([*with_model, "--model.weight_decay=-1"], "--model.weight_decay=-1.0", "expected >= 0"),
        "warmup": ([*with_model, "--model.warmup_steps=-1"], "--model.warmup_steps=-1", "expected >= 0"),
        "schedule": ([*with_model, "--model.schedule=step"], "--model.schedule", "'linear'"),
        "task": ([*with_model, "--data.task_name=imdb"], "--data.task_name 'imdb'", "expected one of cola, sst2"),
        "max_seq_len": ([*with_model, "--data.max_seq_len=1024"], "--data.max_seq_len=1024", "expected 8..512"),
        "batch_size": ([*with_model, "--data.batch_size=0"], "--data.batch_size=0", "expected >= 1"),
        "num_workers": ([*with_model, "--data.num_workers=-2"], "--data.num_workers=-2", "expected >= 0"),
        "train_subset": ([*with_model, "--data.train_subset=0"], "--data.train_subset=0", "expected >= 1"),
        "data_dir": ([*with_model, f"--data.data_dir={tmp_path / 'no-sst2'}"], "--data.data_dir", "no-sst2"),
    }


FINETUNING_IDS = ["no model, no tokenizer", "empty pretrained", "missing pretrained", "not a checkpoint",
                  "classification checkpoint", "directory without config.json", "other tokenizer", "missing tokenizer",
                  "tokenizer not JSON", "random-init size", "random-init checkpoint shape", "dropout",
                  "classifier dropout", "lr", "weight decay", "warmup", "schedule", "task", "max_seq_len", "batch_size",
                  "num_workers", "train_subset", "data_dir"]


@pytest.mark.parametrize("case", FINETUNING_IDS)
def test_finetuning_arguments(case, quickstart_run, tmp_path, capfd, monkeypatch):
    pretrained = quickstart_run / "checkpoints" / "last.ckpt"
    cases = _finetuning_cases(tmp_path, str(pretrained), str(pretrained))
    assert sorted(cases) == sorted(FINETUNING_IDS)
    args, option, expected = cases[case]
    cli_error([*FINETUNE, f"--data.cache_dir={tmp_path / 'cache'}", f"--trainer.logger.init_args.save_dir={tmp_path}",
               *args], capfd, monkeypatch, option, expected)


def test_the_issue_command_sst2_yaml_without_a_model(capfd, monkeypatch, data_root, tmp_path):
    """``python -m lit_lm fit --config configs/sst2.yaml --data.data_dir SST-2`` with no pretrained model."""
    cli_error(["fit", "--config", "configs/sst2.yaml", f"--data.data_dir={data_root / 'SST-2'}",
               f"--data.cache_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"],
              capfd, monkeypatch, "--data.tokenizer is required without --model.pretrained")
