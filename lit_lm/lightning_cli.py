"""``LitLMCLI``: Lightning's CLI set up for lit-lm's ``fit``, ``validate``, ``test`` and ``predict``, and
``make_cli``, the one place it is built with the project's constructor arguments.

Model and data classes are chosen by the config (``class_path``), so one entry point runs pretraining
(cli.yaml) and fine-tuning (configs/sst2.yaml). Values the data and the model share are stated once, in the
data config, and linked into the model at parse time: LightningCLI builds the model before ``prepare_data``
runs, so nothing computed while preparing data could reach it.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import time
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint, ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from data_modules.glue import GLUEDataModule
from data_modules.glue_tasks import get_task
from data_modules.tokenizer import load_error
from lit_lm import console, resources
from lit_lm.callbacks import MemoryMonitor, guard_checkpoint_reads
from lit_lm.config import option

_KEPT_BY_THE_MODEL = ("config", "config_overrides", "vocab_size", "init_from", "pretrained")
"""Model arguments the checkpoint restores in another form (a size name becomes the resolved BertConfig, a source
path the weights it gave) or whose change the modules check themselves: not reported as replaced."""


def make_cli(args: Optional[list[str]], cli_class: Optional[type[LitLMCLI]] = None, **overrides: Any) -> LitLMCLI:
    """``LitLMCLI`` (or ``cli_class``, a subclass) on ``args`` as ``lit-lm`` builds it: the one place its constructor
    arguments are stated.

    The model and data classes come from the config (``class_path``); the models configure their own optimizers;
    ``config.yaml`` beside the logs is overwritten by a rerun; a parse error is raised (``argparse.ArgumentError``, made
    one line by lit_lm.errors.config_error), not printed as a usage screen. ``overrides``: other LightningCLI arguments
    (``run=False``: parse and build the classes, run nothing; ``save_config_callback=None`` ...).
    """
    cli_class = cli_class or LitLMCLI
    kwargs: dict[str, Any] = dict(
        subclass_mode_model=True, subclass_mode_data=True, auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        # a dict each: LightningCLI adds the subcommand's description to it
        parser_kwargs={"prog": "lit-lm", "exit_on_error": False,
                       **{s: {"exit_on_error": False} for s in cli_class.subcommands()}},
    )
    return cli_class(args=args, **(kwargs | overrides))


def num_labels(task_name: str) -> int:
    """Classes of a GLUE task (1 = regression, STS-B), from the GLUE registry; a one-line error naming the flag."""
    return get_task(task_name).num_labels


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

    def parse_arguments(self, parser, args) -> None:
        # `--config cli.yaml --config configs/quickstart.yaml` from outside a checkout: the copies installed with the
        # package (lit_lm.resources). The one place every build of the CLI parses, the GLUE harness's too.
        if args is None or isinstance(args, (list, tuple)):
            args = resources.config_args(sys.argv[1:] if args is None else args)
            self.config = parser.parse_args(args)  # Lightning's own would warn: args given beside sys.argv
            return
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path here (weights_only=True) for the model's hyper-parameters: a truncated or
        # tampered file would end in a page-long traceback instead of one line naming it.
        before = self._model_args()
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as e:
            path = self.config[self.config.subcommand].get("ckpt_path")
            raise ValueError(f"{path}: not a readable checkpoint ({load_error(e)})") from None
        # ...and puts them over the command line and the config files, silently: say which values it replaced.
        after = self._model_args()
        replaced = [f"{k} {before[k]!r} -> {v!r}" for k, v in after.items()
                    if k in before and k not in _KEPT_BY_THE_MODEL and before[k] != v]
        if replaced:
            path = self.config[self.config.subcommand].get("ckpt_path")
            rank_zero_info(f"--ckpt_path {path}: the checkpoint's hyper-parameters replace the config's "
                           f"{', '.join(replaced)} (a checkpoint runs as it was trained; to change them, start a new "
                           f"run from its weights)")

    def _model_args(self) -> dict[str, Any]:
        """The model's arguments in the parsed config, as plain values."""
        sub = self.config.get("subcommand")
        model = self.config[sub].get("model") if sub else None
        args = model.get("init_args", model) if model is not None else None
        return dict(args.as_dict() if hasattr(args, "as_dict") else args or {})

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
        if not any(isinstance(c, MemoryMonitor) for c in callbacks):  # the summary line's peaks, bar or no bar
            callbacks.append(MemoryMonitor())
        if trainer_config.get("enable_model_summary", True) is not False and not any(isinstance(c, ModelSummary) for c in callbacks):
            callbacks.append(console.ModelSummary())
            kwargs["enable_model_summary"] = False  # Lightning's own would only say it skipped adding its default
        # `predict` on GLUE writes the submission file(s) into the run's log dir, with no entry in the configs: so the
        # GLUE harness, which writes its own, can run the fine-tuning recipe as it is.
        if self.subcommand == "predict" and isinstance(self.datamodule, GLUEDataModule) and not any(
                isinstance(c, BasePredictionWriter) for c in callbacks):
            from lit_lm.classification import GLUEPredictionWriter

            callbacks.append(GLUEPredictionWriter())
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
        # Continued pretraining (--model.init_from): the model takes its architecture, vocabulary, weights and tokenizer
        # from the source itself; the data module is told the source's tokenizer and vocabulary here. A run resumed
        # from its checkpoint (--ckpt_path) takes all of them from the checkpoint instead, and the source is not read.
        if data_args is not None and model_args is not None and model_args.get("init_from") is not None:
            checkpoint = _resume_checkpoint(cfg)
            if checkpoint is None:
                _init_from_defaults(model_args.init_from, data_args)
            else:
                cfg.ckpt_path = str(checkpoint)  # the file read here is the one the trainer restores
                _resume_defaults(checkpoint, model_args, data_args)


def _resume_checkpoint(cfg: Any) -> Optional[Path]:
    """The checkpoint file ``--ckpt_path`` names in the parsed config ``cfg``: the path itself, or for ``last`` the
    newest ``last*.ckpt`` where the run's ModelCheckpoint callbacks write, as Lightning looks for it (their
    ``dirpath``, else ``save_dir/name/version/checkpoints`` of the first logger). None: no such file yet, ``best`` or
    ``hpc`` (the trainer resolves those), or a logger that numbers a new version each run."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None or ckpt_path in ("best", "hpc"):
        return None
    if ckpt_path != "last":
        return Path(ckpt_path) if Path(ckpt_path).is_file() else None
    trainer = cfg.get("trainer") or {}
    root = Path(trainer.get("default_root_dir") or ".")
    logger = trainer.get("logger")
    logger = logger[0] if isinstance(logger, list) and logger else logger
    callbacks = trainer.get("callbacks") or []
    found = []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        class_path = getattr(callback, "class_path", None)
        module, _, name = (class_path or "").rpartition(".")
        if not module or not issubclass(getattr(importlib.import_module(module), name), ModelCheckpoint):
            continue
        dirpath = callback.init_args.get("dirpath")
        if dirpath is None and logger is False:
            dirpath = root / "checkpoints"
        elif dirpath is None:
            log = getattr(logger, "init_args", None)
            version = None if log is None else log.get("version")
            if version is None:  # Lightning's default logger, or one that numbers a new version: no last.ckpt there
                continue
            version = version if isinstance(version, str) else f"version_{version}"
            dirpath = Path(log.get("save_dir") or root) / str(log.get("name")) / version / "checkpoints"
        found += Path(dirpath).expanduser().glob("last*.ckpt")
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def _init_from_defaults(source: str, data_args: Any) -> None:
    """--data.vocab_size becomes the source's (LightningCLI builds the model before prepare_data: the vocabulary is
    stated, not discovered); --data.tokenizer defaults to the source's and must otherwise have its vocabulary. The
    model reads the source itself, and says in one line what of the config's it replaces."""
    from lit_lm.weights import read_source

    with option("--model.init_from"):
        config, tokenizer_json = read_source(source, "--model.init_from")
    _data_defaults(data_args, config.vocab_size, source, tokenizer_json, "--model.init_from")


def _resume_defaults(checkpoint: Path, model_args: Any, data_args: Any) -> None:
    """The checkpoint of an --model.init_from run holds its weights, architecture and tokenizer: the model is built
    to the checkpoint's architecture (one line says what of the config's that replaces) and reads no source; its
    weights come from the restore. The data uses the checkpoint's tokenizer and vocabulary."""
    from jsonargparse import Namespace

    from lit_lm.pretraining import source_config
    from lit_lm.weights import read_source

    with option("--ckpt_path"):
        config, tokenizer_json = read_source(checkpoint, "--ckpt_path")
    asked = model_args.get("config")
    built = source_config(config, asked.as_dict() if isinstance(asked, Namespace) else asked,
                          model_args.get("vocab_size"), model_args.get("config_overrides"),
                          f"--ckpt_path {checkpoint}: the architecture and vocabulary of this --model.init_from run")
    model_args.config = Namespace(**built.asdict())
    model_args.config_overrides = None  # applied: built holds the regularisation they change
    model_args.vocab_size = built.vocab_size
    model_args.init_from = None  # the weights are the checkpoint's (whose hyper-parameters keep the source's name)
    _data_defaults(data_args, built.vocab_size, str(checkpoint), tokenizer_json, "--ckpt_path")


def _data_defaults(data_args: Any, vocab_size: int, tokenizer: str, tokenizer_json: str, flag: str) -> None:
    """--data.vocab_size and --data.tokenizer of a model whose vocabulary comes from the file or directory
    ``tokenizer`` named by ``flag`` (its tokenizer: ``tokenizer_json``): the data is told that vocabulary; a
    --data.tokenizer given must have it (checked before prepare_data spends time encoding the corpus with it)."""
    if "vocab_size" in data_args:
        data_args.vocab_size = vocab_size
    if "tokenizer" not in data_args:
        return
    if data_args.tokenizer is None:
        data_args.tokenizer = tokenizer
    elif data_args.tokenizer != tokenizer:
        from data_modules.tokenizer import load_tokenizer
        from lit_lm.weights import check_vocabulary

        given = load_tokenizer(data_args.tokenizer, "--data.tokenizer").to_str()
        check_vocabulary(given, f"--data.tokenizer {data_args.tokenizer}", tokenizer_json, tokenizer, flag)
