"""The command line: ``lit-lm COMMAND ...`` (``python -m lit_lm COMMAND ...``), one table of commands (``COMMANDS``).

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI's (lit_lm.lightning_cli: one entry point runs
pretraining with cli.yaml and fine-tuning with configs/sst2.yaml); ``glue``, ``export`` and ``config`` are lit-lm's
own. Whatever a command refuses is printed as one line (lit_lm.errors); ``LIT_LM_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NamedTuple, Optional

from lit_lm.errors import OneLineParser, config_error, fail, user_error

# Lightning and torch are imported by main() once a command is known: `lit-lm --help` answers in a blink.


def _export(argv: list[str]) -> None:
    from lit_lm.export import export

    p = OneLineParser(prog="lit-lm export", description="Write a lit-lm checkpoint as a HuggingFace BERT directory.")
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


def _glue(argv: list[str]) -> None:
    from lit_lm.glue.run import main as glue_main

    glue_main(argv)


class Command(NamedTuple):
    help: str
    """One line for ``lit-lm --help``."""
    run: Optional[Callable[[list[str]], None]] = None
    """The command, given the arguments after its name; None: one of LightningCLI's (``Trainer.fit`` ...)."""


COMMANDS: dict[str, Command] = {
    "fit": Command("train: pretrain (--config cli.yaml) or fine-tune (--config configs/sst2.yaml --model.pretrained "
                   "CKPT)"),
    "validate": Command("the dev-set metrics of a checkpoint (--config CONFIG --ckpt_path CKPT)"),
    "test": Command("pretraining: the MLM/NSP metrics of the corpus's test split (GLUE hides its test labels: see "
                    "predict)"),
    "predict": Command("a checkpoint's predictions; fine-tuned on GLUE: the task's submission file, e.g. SST-2.tsv"),
    "glue": Command("fine-tune and score an encoder on every GLUE task: the GLUE score table, a submission", _glue),
    "export": Command("write a lit-lm checkpoint as a HuggingFace BERT directory", _export),
    "config": Command("the fields of --model.config (BertConfig), or the values of a size or a config.json",
                      _show_config),
}
"""Every ``lit-lm`` command, in the order ``lit-lm --help`` lists them."""


def usage() -> str:
    """``lit-lm --help``: every command with its line, then how to get each one's help."""
    width = max(map(len, COMMANDS))
    return "\n".join([
        "usage: lit-lm COMMAND [ARGS]   (or python -m lit_lm COMMAND [ARGS])",
        "",
        "BERT pretraining (MLM + NSP) and GLUE fine-tuning with PyTorch Lightning.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {command.help}" for name, command in COMMANDS.items()),
        "",
        "Run lit-lm COMMAND --help for a command's options, e.g. lit-lm glue --help; fit, validate, test and predict",
        "take LightningCLI's: --config YAML, --trainer.*, --model.*, --data.* (lit-lm fit --help lists them all).",
    ])


def main(args: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if args is None else args
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)  # no command: nothing was run
    name = argv[0]
    if not name.startswith("-") and name not in COMMANDS:
        fail(f"unknown command {name!r} (expected one of {', '.join(COMMANDS)}; see lit-lm --help)")
    from lit_lm import console
    from lit_lm.callbacks import DivergenceError
    from lit_lm.lightning_cli import make_cli

    console.quiet_library_notices()
    command = COMMANDS.get(name)
    try:
        if command is not None and command.run is not None:
            return command.run(argv[1:])
        # LightningCLI's subcommands, and its options before one (lit-lm --config cli.yaml fit)
        make_cli(args)
    except argparse.ArgumentError as e:
        # report config errors ourselves, in one line, instead of the usage screen + validation tree
        if os.environ.get("LIT_LM_DEBUG"):
            raise
        fail(f"{config_error(str(e))} (see --help)")
    except (ValueError, OSError, DivergenceError) as e:  # OSError: missing/unreadable paths, a full disk
        # Our errors are one line naming the file, line or flag; a traceback would bury that.
        if os.environ.get("LIT_LM_DEBUG"):
            raise
        fail(user_error(e))
    finally:
        _destroy_process_group()


def _destroy_process_group() -> None:
    """Lightning destroys only NCCL process groups at exit; a gloo group left to the interpreter's shutdown
    aborts the process now and then. DDP runs this main() once per rank, so here each rank's run ends."""
    dist = sys.modules.get("torch.distributed")  # never imported: no group to destroy
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
