"""The command line: ``python -m lit_lm {fit,validate,test,predict,export,config} ...`` (LightningCLI).

Model and data classes are chosen by the config (``class_path``), so one entry point runs pretraining
(cli.yaml) and fine-tuning (configs/sst2.yaml). Values the data and the model share are stated once, in the
data config, and linked into the model at parse time: LightningCLI builds the model before ``prepare_data``
runs, so nothing computed while preparing data could reach it.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import time
from typing import Any, Optional

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningCLI

from data_modules.tokenizer import load_error
from lit_lm import console
from lit_lm.callbacks import DivergenceError, guard_checkpoint_reads

SUBCOMMANDS = ("fit", "validate", "test", "predict")
GLUE_NUM_LABELS = {"cola": 2, "sst2": 2, "mrpc": 2, "qqp": 2, "stsb": 1, "mnli": 3, "qnli": 2, "rte": 2, "wnli": 2}


def num_labels(task_name: str) -> int:
    """Classes of a GLUE task (1 = regression, STS-B)."""
    if task_name not in GLUE_NUM_LABELS:
        raise ValueError(f"--data.task_name {task_name!r}: expected one of {', '.join(GLUE_NUM_LABELS)}")
    return GLUE_NUM_LABELS[task_name]


class LitLMCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # Links whose source or target a chosen class lacks are skipped: pretraining uses the first,
        # GLUE fine-tuning the second.
        parser.link_arguments("data.init_args.vocab_size", "model.init_args.vocab_size")
        # MLM-only pretraining (--model.nsp false) reads packed text instead of sentence pairs.
        parser.link_arguments("model.init_args.nsp", "data.init_args.nsp")
        parser.link_arguments("data.init_args.task_name", "model.init_args.num_labels", compute_fn=num_labels)
        # Fine-tuning states the tokenizer once, in the data config; the model sizes a random-init encoder by it.
        parser.link_arguments("data.init_args.tokenizer", "model.init_args.tokenizer")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path here (weights_only=True) for the model's hyper-parameters: a truncated or
        # tampered file would end in a page-long traceback instead of one line naming it.
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as e:
            path = self.config[self.config.subcommand].get("ckpt_path")
            raise ValueError(f"{path}: not a readable checkpoint ({load_error(e)})") from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # The pre-read above sees only an existing file named by --ckpt_path: `last`, `best` and `hpc` are resolved
        # later, by the trainer, and read by its strategy. FSDP's loader unpickles a full checkpoint without
        # restriction (bypassing AtomicCheckpointIO), and --weights_only false reaches every strategy's loader. The
        # strategy is the one place every restore goes through, so the weights-only read is put there.
        # The progress bar and model summary are chosen here, not by what happens to be installed (Lightning takes
        # rich's when rich is importable): lit-lm's unless the config brings its own or turns them off.
        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = kwargs.pop("callbacks", trainer_config.get("callbacks")) or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if trainer_config.get("enable_progress_bar", True) is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(console.ProgressBar())
        if trainer_config.get("enable_model_summary", True) is not False and not any(isinstance(c, ModelSummary) for c in callbacks):
            callbacks.append(console.ModelSummary())
            kwargs["enable_model_summary"] = False  # Lightning's own would only say it skipped adding its default
        trainer = super().instantiate_trainer(callbacks=callbacks, **kwargs)
        guard_checkpoint_reads(trainer.strategy)
        return trainer

    def before_fit(self) -> None:
        self._fit_started = time.monotonic()

    def after_fit(self) -> None:
        # What the run achieved, in one line (also written beside the logs as summary.txt)
        console.write_summary(self.trainer, self.model, time.monotonic() - self._fit_started)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        # --trainer.default_root_dir DIR: the configs pin the logger's save_dir (runs/), which Lightning would let
        # win over it silently; the root the user names is where the logs, config.yaml and checkpoints go instead.
        trainer = cfg.get("trainer")
        root = trainer.get("default_root_dir") if trainer is not None else None
        if root is not None:
            loggers = trainer.get("logger")
            for logger in loggers if isinstance(loggers, list) else [loggers]:
                init_args = getattr(logger, "init_args", None)
                if init_args is not None and "save_dir" in init_args:
                    init_args.save_dir = root
        # Fine-tuning: the tokenizer defaults to the one inside --model.pretrained (a .ckpt or an HF directory).
        data, model = cfg.get("data"), cfg.get("model")
        data_args = getattr(data, "init_args", None)
        model_args = getattr(model, "init_args", None)
        if data_args is not None and model_args is not None and "tokenizer" in data_args and "pretrained" in model_args:
            if data_args.tokenizer is None and model_args.pretrained is not None:
                data_args.tokenizer = model_args.pretrained
            if "tokenizer" in model_args:  # the link above ran at parse time, before this default
                model_args.tokenizer = data_args.tokenizer


def _export(argv: list[str]) -> None:
    from lit_lm.export import export

    p = argparse.ArgumentParser(prog="lit-lm export", description="Write a lit-lm checkpoint as a HuggingFace BERT directory.")
    p.add_argument("checkpoint", help="a lit-lm .ckpt (pretraining or classification)")
    p.add_argument("out_dir", help="directory to write config.json, model.safetensors and tokenizer files into")
    a = p.parse_args(argv)
    out = export(a.checkpoint, a.out_dir)
    print(f"exported {a.checkpoint} -> {out}")


def _show_config(argv: list[str]) -> None:
    """``lit-lm config [NAME_OR_PATH]``: the BertConfig fields with their documentation, or a size's values."""
    from dataclasses import asdict

    from jsonargparse import ArgumentParser, set_parsing_settings

    from lit_lm.config import BertConfig

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # the field docstrings in config.py

    parser = ArgumentParser(prog="lit-lm config", description="Fields of --model.config (BertConfig); pass a size "
                            "name or a config.json path to print its values.")
    parser.add_argument("name_or_path", nargs="?", default=None)
    parser.add_class_arguments(BertConfig, "config")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return
    for key, value in asdict(BertConfig.resolve(argv[0])).items():
        print(f"{key}: {value}")


def _config_error(message: str) -> str:
    """jsonargparse's many-line validation report, reduced to the option and the specific complaint."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return "invalid arguments"
    # a link's compute_fn (e.g. num_labels of --data.task_name) raised one of our one-line errors
    linked = re.search(r"Call to compute_fn of link .* failed: (--.*)", lines[0])
    if linked:
        return linked.group(1)
    specific = re.compile(r"not accepted|not expected|[Uu]nrecognized|[Uu]nknown|Expected a (?!<class 'NoneType'>)|"
                          r"does not exist|not a valid|must be|invalid|No action for")
    detail = next((line.removeprefix("- ") for line in lines[1:] if specific.search(line)), None)
    head = lines[0].rstrip(":")
    # a nested report ('Parser key "data": ... Parser key "variant": ...'): name the option as the user types it
    keys = re.findall(r'Parser key "([^"]+)"', str(message))
    if detail and len(keys) > 1:
        given = re.findall(r"Given value: (.*)", str(message))
        value = f" (given {given[0]!r})" if given and not given[0].startswith(("Namespace(", "NestedArg(")) else ""
        return f"--{'.'.join(keys)}: {detail}{value}"
    return f"{head}: {detail}" if detail and detail != head else head


_UNION_REPORT = "Does not validate against any of the Union subtypes"


def _user_error(e: BaseException) -> str:
    """The message of an error to show as it is. jsonargparse wraps an error raised while it builds the model or the
    data module (``Optional[LightningModule]``) in its many-line union report, with the real error as the cause."""
    while _UNION_REPORT in str(e) and e.__cause__ is not None:
        e = e.__cause__
    message = str(e)
    if _UNION_REPORT in message:  # no cause kept: the report lists one error per union member, ours first
        errors = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ")]
        message = next((m for m in errors if not m.startswith("Expected a <class 'NoneType'>")), message)
    return " ".join(message.splitlines())


def main(args: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if args is None else args
    console.quiet_library_notices()
    try:
        if argv and argv[0] == "export":
            return _export(argv[1:])
        if argv and argv[0] == "config":
            return _show_config(argv[1:])
        if argv and argv[0] == "glue":
            from lit_lm.glue_harness import main as glue_main

            return glue_main(argv[1:])
        LitLMCLI(
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            # report config errors ourselves, in one line, instead of the usage screen + validation tree
            parser_kwargs={"exit_on_error": False, **{sub: {"exit_on_error": False} for sub in SUBCOMMANDS}},
            args=args,
        )
    except argparse.ArgumentError as e:
        if os.environ.get("LIT_LM_DEBUG"):
            raise
        print(f"lit-lm: error: {_config_error(str(e))} (see --help)", file=sys.stderr)
        sys.exit(2)
    except (ValueError, OSError, DivergenceError) as e:  # OSError: missing/unreadable paths, a full disk
        # Our errors are one line naming the file, line or flag; a traceback would bury that.
        if os.environ.get("LIT_LM_DEBUG"):
            raise
        print(f"lit-lm: error: {_user_error(e)}", file=sys.stderr)
        sys.exit(2)
    finally:
        _destroy_process_group()


def _destroy_process_group() -> None:
    """Lightning destroys only NCCL process groups at exit; a gloo group left to the interpreter's shutdown
    aborts the process now and then. DDP runs this main() once per rank, so here each rank's run ends."""
    dist = sys.modules.get("torch.distributed")  # never imported: no group to destroy
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
