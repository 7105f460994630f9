"""``python -m lit_lm glue``: GLUE as a benchmark. Fine-tune an encoder on every GLUE task (and seed), score each on
dev with the task's official metric(s), average them as the GLUE leaderboard does, and optionally write the GLUE
server's submission.

Every (task, seed) is a normal ``python -m lit_lm fit`` run through LightningCLI, the same SequenceClassification
and GLUEDataModule, configured by the recipe (configs/glue.yaml), the per-task overrides below and the user's
``--trainer.* / --model.* / --data.*`` flags, and logged under ``runs/glue/<name>/<task>/seed<k>/`` (TensorBoard,
config.yaml, checkpoints/last.ckpt, result.json). The dev metrics are ``trainer.validate`` of that last checkpoint,
so they equal ``python -m lit_lm validate --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt``.

A run whose result.json exists is skipped, so a killed harness continues where it stopped (the run it was in
starts again from scratch); ``--overwrite`` reruns everything. A run that fails is reported and the others go on.

The GLUE score (Wang et al., 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language
Understanding", ICLR, section 3.4): "The benchmark site shows per-task scores and a macro-average of those scores
[...]. For tasks with multiple metrics (e.g., accuracy and F1), we use an unweighted average of the metrics as the
score for the task when computing the overall macro-average." So a task scores the mean of its metrics (MRPC and
QQP: F1 and accuracy; STS-B: Pearson and Spearman; MNLI: matched and mismatched accuracy) and the GLUE score is the
unweighted mean over the nine tasks, WNLI included, the diagnostic AX not. Checked against the leaderboard's rows:
BERT-large (CoLA 60.5, SST-2 94.9, MRPC 89.3/85.4, STS-B 87.6/86.5, QQP 72.1/89.3, MNLI 86.7/85.9, QNLI 92.7, RTE
70.1, WNLI 65.1) scores 80.5 this way, BERT-base 78.3; MNLI-m and MNLI-mm as two columns would give 81.1 and 78.9
(tests/lit_lm/test_glue_harness.py). The score without WNLI is reported too: Cramming (Geiping and Goldstein, 2023;
cramming/config/eval/GLUE.yaml comments wnli out) averages the other eight. BERT's table 1 "Average" is another mean
again (one metric per task, MNLI-m and -mm as two columns, no WNLI).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shutil
import statistics
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from data_modules.glue import GLUETask

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "glue.yaml"

TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
"""The nine GLUE tasks in the leaderboard's column order."""

TASK_DIRS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI",
             "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}
"""Directory of each task in the GLUE release (download_glue_data.py's layout: GLUE_DIR/SST-2/train.tsv ...)."""

AX_FILE = "diagnostic/diagnostic.tsv"
"""The diagnostic set's input in the release tree; the GLUE server wants its predictions, from the MNLI model, as
AX.tsv."""

METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    # task: ((official name, key SequenceClassification logs in trainer.validate), ...), in the leaderboard's order
    "cola": (("matthews", "val/mcc"),),
    "sst2": (("accuracy", "val/acc"),),
    "mrpc": (("f1", "val/f1"), ("accuracy", "val/acc")),
    "stsb": (("pearson", "val/pearson"), ("spearman", "val/spearman")),
    "qqp": (("f1", "val/f1"), ("accuracy", "val/acc")),
    "mnli": (("matched", "val/acc"), ("mismatched", "val_mismatched/acc")),  # dev_matched, dev_mismatched
    "qnli": (("accuracy", "val/acc"),),
    "rte": (("accuracy", "val/acc"),),
    "wnli": (("accuracy", "val/acc"),),
}

TASK_OVERRIDES: dict[str, list[str]] = {
    # HF transformers, examples/pytorch/text-classification/README.md: every task with batch 32, lr 2e-5, 3 epochs,
    # max_seq_length 128, "with an exception for MRPC and WNLI which are tiny and where we used 5 epochs instead of 3".
    "mrpc": ["--trainer.max_epochs", "5"],
    "wnli": ["--trainer.max_epochs", "5"],
}
"""Added after the recipe, before the command line's flags (which win). configs/glue.yaml lists them too."""

_NAMES = {**TASK_DIRS, "mnli": "MNLI-m/mm"}  # the table's task column
_METRIC_NAMES = {"matthews": "Matthews corr.", "accuracy": "accuracy", "f1": "F1", "pearson": "Pearson",
                 "spearman": "Spearman", "matched": "matched acc.", "mismatched": "mismatched acc."}
_PASS_THROUGH = ("--trainer.", "--model.", "--data.")
_OWNED = {  # flags the harness sets itself, and the harness option that sets them
    "--data.task_name": "--tasks", "--data.data_dir": "--data_dir", "--model.pretrained": "--pretrained",
    "--model.num_labels": "--tasks", "--trainer.logger": "--save_dir/--name", "--seed_everything": "--seeds",
}


# ---------------------------------------------------------------------------------------------------------------------
# scores: pure functions


def official_metrics(task: str, logged: Mapping[str, float]) -> dict[str, float]:
    """The official dev metric(s) of ``task`` from the dict ``trainer.validate`` returned (fractions, as logged)."""
    missing = [key for _, key in METRICS[task] if key not in logged]
    if missing:
        raise ValueError(f"validation of {task} logged no {', '.join(missing)} (got {', '.join(sorted(logged))})")
    return {name: float(logged[key]) for name, key in METRICS[task]}


def task_score(metrics: Mapping[str, float]) -> float:
    """A task's GLUE score: the unweighted mean of its metrics (Wang et al., 2019, section 3.4)."""
    return sum(metrics.values()) / len(metrics)


def glue_score(task_scores: Mapping[str, float], without: Sequence[str] = ()) -> Optional[float]:
    """The unweighted mean of the task scores (GLUE's macro-average), leaving out ``without``; None if none is left."""
    scores = [s for t, s in task_scores.items() if t not in without]
    return sum(scores) / len(scores) if scores else None


def mean_sd(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (n - 1); the sd is None for a single value."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(runs: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, Any]:
    """Per task and metric: mean, sd and the per-seed values; the task score likewise; the GLUE averages.

    ``runs``: task -> seed -> official metrics. The averages are over the tasks present; their sd is that of the
    per-seed averages, over the seeds every present task has.
    """
    tasks: dict[str, Any] = {}
    for task in (t for t in TASKS if runs.get(t)):
        by_seed = runs[task]
        entry = {}
        for name, _ in METRICS[task]:
            values = {seed: m[name] for seed, m in by_seed.items()}
            mean, sd = mean_sd(list(values.values()))
            entry[name] = {"mean": mean, "sd": sd, "per_seed": {str(s): v for s, v in values.items()}}
        scores = {seed: task_score(m) for seed, m in by_seed.items()}
        mean, sd = mean_sd(list(scores.values()))
        entry["score"] = {"mean": mean, "sd": sd, "per_seed": {str(s): v for s, v in scores.items()}}
        tasks[task] = entry

    def average(without: Sequence[str]) -> Optional[dict[str, Any]]:
        included = [t for t in tasks if t not in without]
        if not included:
            return None
        mean = glue_score({t: tasks[t]["score"]["mean"] for t in included})
        common = set.intersection(*(set(runs[t]) for t in included))
        per_seed = {s: glue_score({t: task_score(runs[t][s]) for t in included}) for s in sorted(common)}
        sd = statistics.stdev(per_seed.values()) if len(per_seed) > 1 else None
        return {"mean": mean, "sd": sd, "per_seed": {str(s): v for s, v in per_seed.items()}, "tasks": included,
                "complete": len(included) == len([t for t in TASKS if t not in without])}

    return {"tasks": tasks, "glue_score": average(()), "glue_score_without_wnli": average(("wnli",))}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _mean_sd(entry: Mapping[str, Any]) -> str:
    return _pct(entry["mean"]) + ("" if entry["sd"] is None else f" ± {_pct(entry['sd'])}")


def render_table(summary: Mapping[str, Any], seeds: Sequence[int], failed: Optional[Mapping[str, str]] = None) -> str:
    """The results as a markdown table: dev metrics ×100, mean ± sd over seeds, the per-seed values, the averages."""
    lines = [f"| task | metric | dev ×100, mean ± sd | per seed ({', '.join(map(str, seeds))}) |",
             "|---|---|---:|---|"]
    for task in TASKS:
        names = [n for n, _ in METRICS[task]]
        metric = " / ".join(_METRIC_NAMES[n] for n in names)
        if task in summary["tasks"]:
            e = summary["tasks"][task]
            per_seed = ", ".join("/".join(_pct(e[n]["per_seed"][str(s)]) for n in names)
                                 for s in seeds if str(s) in e[names[0]]["per_seed"])
            lines.append(f"| {_NAMES[task]} | {metric} | {' / '.join(_mean_sd(e[n]) for n in names)} | {per_seed} |")
        elif failed and task in failed:
            lines.append(f"| {_NAMES[task]} | {metric} | failed | {failed[task]} |")
    for key, label in (("glue_score", "GLUE score"), ("glue_score_without_wnli", "GLUE score without WNLI")):
        avg = summary[key]
        if avg is None or (key == "glue_score_without_wnli" and "wnli" not in summary["tasks"]):
            continue  # without WNLI it would repeat the line above
        per_seed = ", ".join(_pct(v) for v in avg["per_seed"].values())
        shown = "**" + _mean_sd(avg) + "**" if key == "glue_score" else _mean_sd(avg)
        lines.append(f"| {label} | mean of the task scores | {shown} | {per_seed} |")
    notes = ["", "Task score = the mean of its metrics; GLUE score = the unweighted mean of the task scores (Wang et "
             "al., 2019, section 3.4, as the leaderboard computes it; the diagnostic AX is not part of it); sd over "
             "seeds (n - 1)."]
    avg = summary["glue_score"]
    if avg is not None and not avg["complete"]:
        names = ", ".join(_NAMES[t] for t in avg["tasks"])
        notes.append(f"Averages over {len(avg['tasks'])} of the 9 tasks ({names}): not comparable with a full GLUE "
                     f"score.")
    return "\n".join(lines + notes) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# the command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line through lit_lm.cli.main, not a usage screen
        raise ValueError(f"{message} (see lit-lm glue --help)")


def _parser() -> argparse.ArgumentParser:
    overrides = "\n".join(f"  {t}: {' '.join(a)}" for t, a in TASK_OVERRIDES.items())
    p = _Parser(
        prog="lit-lm glue", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune and score an encoder on every GLUE task: one `fit` run per (task, seed) with the\n"
                    "recipe, the dev metrics of each last checkpoint, mean ± sd over seeds, the GLUE average (as the\n"
                    "leaderboard computes it), results.json and results.md; finished runs are skipped on a rerun.",
        epilog="Any --trainer.*, --model.* or --data.* flag of `python -m lit_lm fit` applies to every run, after the "
               "recipe\nand the per-task overrides:\n" + overrides + "\n"
               "e.g. --trainer.max_steps 6 (smoke test), --model.lr 2e-4 (tiny/mini encoders), "
               "--trainer.precision 32-true.\n"
               "Without --pretrained: a random-init encoder from --data.tokenizer TOK and --model.config SIZE.\n"
               "Outputs: SAVE_DIR/NAME/{results.json,results.md,submission.zip} and SAVE_DIR/NAME/<task>/seed<k>/.")
    p.add_argument("--pretrained", metavar="CKPT_OR_HF_DIR",
                   help="the encoder: a lit-lm pretraining .ckpt or a HuggingFace BERT directory")
    p.add_argument("--random_init", action="store_true",
                   help="random weights with the architecture and tokenizer of --pretrained (the baseline)")
    p.add_argument("--data_dir", metavar="GLUE_DIR",
                   help="the GLUE release tree (CoLA/, SST-2/, ..., diagnostic/); default: the hub's nyu-mll/glue")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated (default: all nine): " + ",".join(TASKS))
    p.add_argument("--seeds", default="42", help="comma-separated seeds, one run each (default: 42, the recipe's); "
                                                 "the table shows mean ± sd over them")
    p.add_argument("--config", default=_default_config(), metavar="YAML",
                   help="the fine-tuning recipe (default: %(default)s)")
    p.add_argument("--name", help="the results' directory under SAVE_DIR (default: from --pretrained, e.g. cpu_hour "
                                  "for runs/cpu_hour/checkpoints/last.ckpt; -random with --random_init)")
    p.add_argument("--save_dir", default="runs/glue", help="default: %(default)s")
    p.add_argument("--predict", action="store_true",
                   help="also write the GLUE server's submission (per task the seed with the best dev score; AX "
                        "from the MNLI model) as SAVE_DIR/NAME/submission.zip")
    p.add_argument("--overwrite", action="store_true", help="rerun (task, seed) runs whose result exists")
    return p


def _default_config() -> str:
    relative = Path("configs") / DEFAULT_CONFIG.name  # shorter in the saved configs when run from the checkout
    return str(relative) if relative.resolve() == DEFAULT_CONFIG else str(DEFAULT_CONFIG)


def _task_list(text: str) -> list[str]:
    aliases = {t: t for t in TASKS} | {d.lower().replace("-", ""): t for t, d in TASK_DIRS.items()}
    tasks = []
    for word in (w.strip().lower().replace("-", "") for w in text.split(",")):
        if word == "ax":
            raise ValueError("--tasks ax: AX is not fine-tuned; --predict writes it with the MNLI model")
        if word not in aliases:
            raise ValueError(f"--tasks {text}: {word!r} is not a GLUE task (expected a comma-separated subset of "
                             f"{','.join(TASKS)})")
        if aliases[word] not in tasks:
            tasks.append(aliases[word])
    return tasks


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds {text}: expected comma-separated integers, e.g. 1,2,3") from None
    return list(dict.fromkeys(seeds))


def _flag(token: str) -> str:
    return token.split("=", 1)[0]


def _check_pass_through(extra: list[str], owned: dict[str, str]) -> None:
    for token in extra:
        if not token.startswith("-") or token.lstrip("-").replace(".", "", 1).isdigit():
            continue  # a value
        flag = _flag(token)
        for key, option in owned.items():
            if flag == key or flag.startswith(key + "."):
                raise ValueError(f"{flag} is set by the harness for every run: use {option}")
        if not flag.startswith(_PASS_THROUGH):
            raise ValueError(f"unrecognized argument {token} (the harness passes on --trainer.*, --model.* and "
                             f"--data.* flags; see lit-lm glue --help)")


def _default_name(pretrained: Optional[str], random_init: bool) -> str:
    if pretrained is None:
        return "random"
    path = Path(pretrained.rstrip("/"))
    if path.suffix == ".ckpt":  # runs/cpu_hour/checkpoints/last.ckpt -> cpu_hour
        name = path.parent.parent.name if path.parent.name == "checkpoints" and path.parent.parent.name else path.stem
    else:
        name = path.name
    return name + ("-random" if random_init else "")


@dataclass
class Plan:
    """What one ``lit-lm glue`` command runs, and where."""

    tasks: list[str]
    seeds: list[int]
    config: str
    out: Path
    pretrained: Optional[str] = None
    random_init: bool = False
    data_dir: Optional[Path] = None
    predict: bool = False
    overwrite: bool = False
    extra: list[str] = field(default_factory=list)

    def run_dir(self, task: str, seed: int) -> Path:
        return self.out / task / f"seed{seed}"

    def task_dir(self, task: str) -> Optional[Path]:
        return None if self.data_dir is None else self.data_dir / TASK_DIRS[task]

    def fit_args(self, task: str, seed: int) -> list[str]:
        """The LightningCLI arguments of one run (without the subcommand): recipe, harness, task, user."""
        args = ["--config", self.config, "--data.task_name", task]
        if self.data_dir is not None:
            args += ["--data.data_dir", str(self.task_dir(task))]
        if self.pretrained is not None and not self.random_init:
            args += ["--model.pretrained", self.pretrained]
        elif self.pretrained is not None:  # the same architecture and tokenizer, random weights
            path = Path(self.pretrained)
            config = str(path / "config.json") if path.is_dir() else self.pretrained
            args += ["--model.pretrained", "null", "--data.tokenizer", self.pretrained, "--model.config", config]
        args += ["--seed_everything", str(seed),
                 "--trainer.logger.init_args.save_dir", str(self.out / task),
                 "--trainer.logger.init_args.name", f"seed{seed}", "--trainer.logger.init_args.version", ""]
        return args + TASK_OVERRIDES.get(task, []) + self.extra


def make_plan(argv: list[str]) -> Plan:
    """Parse and check the command line (one-line ValueErrors naming the option)."""
    a, extra = _parser().parse_known_args(argv)
    owned = dict(_OWNED)
    if a.random_init:
        if a.pretrained is None:
            raise ValueError("--random_init needs --pretrained CKPT_OR_HF_DIR: its architecture and tokenizer")
        owned |= {"--model.config": "--random_init", "--data.tokenizer": "--random_init"}
    _check_pass_through(extra, owned)
    if a.pretrained is None and not any(_flag(t) == "--data.tokenizer" for t in extra):
        raise ValueError("give --pretrained CKPT_OR_HF_DIR (with --random_init for its random-init baseline), or "
                         "--data.tokenizer TOK and --model.config SIZE for a random-init encoder")
    if a.pretrained is not None and not Path(a.pretrained).expanduser().exists():
        raise ValueError(f"--pretrained {a.pretrained}: no such file or directory")
    if a.data_dir is not None and not Path(a.data_dir).expanduser().is_dir():
        raise ValueError(f"--data_dir {a.data_dir}: no such directory (expected the GLUE release tree: CoLA/, "
                         f"SST-2/, ...)")
    if not Path(a.config).is_file():
        raise ValueError(f"--config {a.config}: no such file")
    pretrained = None if a.pretrained is None else str(Path(a.pretrained).expanduser())
    name = a.name or _default_name(a.pretrained, a.random_init)
    return Plan(tasks=_task_list(a.tasks), seeds=_seed_list(a.seeds), config=a.config,
                out=Path(a.save_dir).expanduser() / name, pretrained=pretrained, random_init=a.random_init,
                data_dir=None if a.data_dir is None else Path(a.data_dir).expanduser(), predict=a.predict,
                overwrite=a.overwrite, extra=extra)


# ---------------------------------------------------------------------------------------------------------------------
# files


def required_files(plan: Plan, task: str) -> None:
    """A missing task directory or file, named in one line, before any of the task's runs starts."""
    from data_modules.glue import TASKS as GLUE_TASKS

    d = plan.task_dir(task)
    if d is None:
        return
    t = GLUE_TASKS[task]
    names = [f"{split}.tsv" for split in ("train", *t.dev, *t.test)]
    if not d.is_dir():
        raise FileNotFoundError(f"--data_dir {plan.data_dir}: no {TASK_DIRS[task]}/ directory for GLUE {task} "
                                f"(expected {TASK_DIRS[task]}/{{{','.join(names)}}})")
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: missing {', '.join(missing)} of GLUE {task}")


def submission_files(task: str) -> list[str]:
    from data_modules.glue import TASKS as GLUE_TASKS

    return [*GLUE_TASKS[task].submission, *(["AX.tsv"] if task == "mnli" else [])]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)  # a killed harness never leaves half a result


def _write_predictions(path: Path, task: "GLUETask", batches: list[dict]) -> int:
    """The submission file of ``task`` from predict batches (lit_lm.classification.write_submission)."""
    import torch

    from lit_lm.classification import write_submission

    index = torch.cat([b["index"] for b in batches]).tolist()
    return write_submission(path, task, index, torch.cat([b["prediction"] for b in batches]).tolist())


def _ax_loader(plan: Plan, dm):
    """AX (the diagnostic set) as batches for the MNLI model: premise/hypothesis pairs with their indices."""
    from torch.utils.data import DataLoader

    from data_modules import sources
    from data_modules.collators import PadCollator
    from data_modules.glue import TASKS as GLUE_TASKS
    from data_modules.glue import hub_examples, read_tsv

    ax = dataclasses.replace(GLUE_TASKS["mnli"], name="ax")  # sentence1/sentence2 (hub: premise/hypothesis), index
    if plan.data_dir is None:
        ds = sources.load_hub("nyu-mll/glue", "ax", f"pass --data_dir GLUE_DIR holding {AX_FILE}")
        examples = hub_examples(ds, ax, "test", labelled=False)
    else:
        examples = read_tsv(plan.data_dir / AX_FILE, ax, labelled=False)
    tok = dm.tokenizer  # the run's: truncation to --data.max_seq_len, no padding
    encodings = tok.encode_batch([t[0] if len(t) == 1 else t for t in examples.texts])
    samples = [{"input_ids": e.ids, "token_type_ids": e.type_ids, "index": i}
               for e, i in zip(encodings, examples.index)]
    return DataLoader(samples, batch_size=dm.batch_size, shuffle=False,
                      collate_fn=PadCollator(tok.token_to_id("[PAD]")))


# ---------------------------------------------------------------------------------------------------------------------
# runs


def _cli(args: list[str], dry_run: bool = False, **kwargs):
    """``LitLMCLI`` on ``args``, as ``lit_lm.cli.main`` builds it (errors raised, not printed)."""
    from lit_lm.cli import SUBCOMMANDS, LitLMCLI

    class HarnessCLI(LitLMCLI):
        def parse_arguments(self, parser, args) -> None:
            # LightningCLI warns when sys.argv holds arguments besides ``args``: here they are the harness's own
            argv, sys.argv = sys.argv, sys.argv[:1]
            try:
                super().parse_arguments(parser, args)
            finally:
                sys.argv = argv

        def instantiate_trainer(self, **kw: Any):
            return None if dry_run else super().instantiate_trainer(**kw)

    return HarnessCLI(subclass_mode_model=True, subclass_mode_data=True, auto_configure_optimizers=False,
                      parser_kwargs={"exit_on_error": False, **{s: {"exit_on_error": False} for s in SUBCOMMANDS}},
                      args=args, **kwargs)


def check_arguments(plan: Plan) -> None:
    """Parse the first run's arguments as ``fit`` would and build its model and data module, not its trainer: a
    mistyped flag, an unreadable checkpoint or tokenizer is one line at once, not a failure of every run, the first
    after hours of data preparation."""
    cli = _cli(plan.fit_args(plan.tasks[0], plan.seeds[0]), dry_run=True, run=False)
    devices, nodes = cli.config["trainer"]["devices"], cli.config["trainer"]["num_nodes"]
    # One process runs the tasks one after another; under DDP every rank would rerun the whole loop.
    one = len(devices) == 1 if isinstance(devices, (list, tuple)) else str(devices).strip(", ") == "1" or (
        str(devices).endswith(",") and str(devices).count(",") == 1)  # "1", [3] or "3,": one device
    if not one or nodes != 1:
        raise ValueError(f"--trainer.devices {devices} --trainer.num_nodes {nodes}: the harness runs each run on one "
                         f"device (GLUE fine-tunings are small); to use several GPUs, start one harness per GPU with "
                         f"CUDA_VISIBLE_DEVICES=i and its own --tasks")
    del cli
    _free()


def _predict(plan: Plan, task: str, cli, ckpt_path: Optional[str], run_dir: Path) -> str:
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    out = trainer.predict(model, datamodule=dm, ckpt_path=ckpt_path, return_predictions=True)
    per_split = out if len(dm.test_splits) > 1 else [out]  # Lightning nests the lists only for several loaders
    counts = [f"{name} {_write_predictions(run_dir / name, dm.task, batches)}"
              for name, batches in zip(dm.task.submission, per_split)]
    if task == "mnli":  # AX: the MNLI model's predictions on the diagnostic set (weights already loaded above)
        if plan.data_dir is not None and not (plan.data_dir / AX_FILE).is_file():
            raise FileNotFoundError(f"--data_dir {plan.data_dir}: missing {AX_FILE}, the input of AX.tsv "
                                    f"({', '.join(counts)} written)")
        batches = trainer.predict(model, dataloaders=_ax_loader(plan, dm), return_predictions=True)
        counts.append(f"AX.tsv {_write_predictions(run_dir / 'AX.tsv', dm.task, batches)}")
    return ", ".join(counts)


def fit_and_score(plan: Plan, task: str, seed: int) -> dict[str, Any]:
    """One fine-tuning run: fit, validate the last checkpoint, result.json (and the submission files)."""
    run_dir = plan.run_dir(task, seed)
    if run_dir.exists():  # an unfinished run (killed) or --overwrite: start afresh, no stale last-v1.ckpt
        shutil.rmtree(run_dir)
    args = plan.fit_args(task, seed)
    t0 = time.perf_counter()
    cli = _cli(["fit", *args], save_config_kwargs={"overwrite": True})
    trainer = cli.trainer
    ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or None
    logged: dict[str, float] = {}
    for d in trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, verbose=False):
        logged.update({k: float(v) for k, v in d.items()})
    metrics = official_metrics(task, logged)
    result = {"task": task, "seed": seed, "metrics": metrics, "score": task_score(metrics),
              "steps": trainer.global_step, "wall_s": round(time.perf_counter() - t0, 1), "checkpoint": ckpt,
              "logged": logged, "args": args}
    _write_json(run_dir / "result.json", result)  # the run is done: a failed prediction below does not undo it
    if plan.predict:
        _try(result, lambda: _predict(plan, task, cli, ckpt, run_dir))
    del cli, trainer
    _free()
    return result


def predict_only(plan: Plan, task: str, result: dict[str, Any]) -> None:
    """The submission files of a finished run, from its last checkpoint (a rerun that adds --predict)."""
    def predict() -> str:
        cli = _cli(list(result["args"]), run=False, save_config_callback=None)
        try:
            return _predict(plan, task, cli, result["checkpoint"], plan.run_dir(task, result["seed"]))
        finally:
            del cli
            _free()

    _try(result, predict)


def _try(result: dict[str, Any], predict) -> None:
    """``result["predictions"]``: what ``predict()`` wrote, or ``result["predict_error"]``: why it failed."""
    try:
        result["predictions"] = predict()
    except Exception as e:  # noqa: BLE001 - the dev result stands; the failure is reported at the end
        if os.environ.get("LIT_LM_DEBUG"):
            raise
        result["predict_error"] = _one_line(e)


def _free() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def _metrics_line(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {_pct(v)}" for name, v in metrics.items())


def _say(message: str) -> None:
    print(f"glue: {message}", flush=True)


def _one_line(e: BaseException) -> str:
    if isinstance(e, argparse.ArgumentError):
        from lit_lm.cli import _config_error

        return _config_error(str(e))
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _arg_pairs(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    for token in args:
        if token.startswith("--"):
            out.append(token.replace("=", " ", 1))
        elif out:
            out[-1] += f" {token}"
    return out


def _reusable(result: Mapping[str, Any], args: list[str], where: Path) -> None:
    """A finished run counts only if it was made with the same arguments: a table never mixes recipes."""
    if list(result.get("args", [])) != args:
        old, new = _arg_pairs(result.get("args", [])), _arg_pairs(args)
        then = [p for p in old if p not in new] or ["(order)"]
        now = [p for p in new if p not in old] or ["(order)"]
        raise ValueError(f"{where} was run with other arguments ({'; '.join(then)} instead of {'; '.join(now)}): "
                         f"--overwrite reruns it, --name starts another table")


def run_or_skip(plan: Plan, task: str, seed: int, label: str) -> dict[str, Any]:
    """One (task, seed): reuse its result.json if made with the same arguments, else fit and score it."""
    run_dir = plan.run_dir(task, seed)
    done = run_dir / "result.json"
    t0 = time.perf_counter()
    if done.is_file() and not plan.overwrite:
        result = json.loads(done.read_text())
        _reusable(result, plan.fit_args(task, seed), run_dir)
        if plan.predict and not all((run_dir / f).is_file() for f in submission_files(task)):
            predict_only(plan, task, result)
        _say(f"{label}: done before, skipped ({_metrics_line(result['metrics'])}; --overwrite reruns)"
             f"{_predicted(result)}")
        return result
    _say(f"{label}: started -> {run_dir}")
    result = fit_and_score(plan, task, seed)
    _say(f"{label}: done in {_duration(time.perf_counter() - t0)}: {_metrics_line(result['metrics'])} "
         f"({result['steps']} steps){_predicted(result)}")
    return result


def _predicted(result: Mapping[str, Any]) -> str:
    if "predict_error" in result:
        return f"; prediction FAILED: {result['predict_error']}"
    return f"; predicted {result['predictions']}" if "predictions" in result else ""


def main(argv: list[str]) -> None:
    """``python -m lit_lm glue ARGS``: see ``--help``."""
    plan = make_plan(argv)
    check_arguments(plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    n_runs = len(plan.tasks) * len(plan.seeds)
    source = plan.data_dir if plan.data_dir is not None else "the hub (nyu-mll/glue)"
    _say(f"{len(plan.tasks)} task(s) x {len(plan.seeds)} seed(s) = {n_runs} run(s), data from {source}, "
         f"results in {plan.out}")
    runs: dict[str, dict[int, dict[str, float]]] = {}  # task -> seed -> official metrics
    where: dict[str, dict[str, Any]] = {}  # task -> seed -> steps, time, directory
    failed: list[tuple[str, Optional[int], str]] = []  # (task or "submission.zip", seed or None, why)
    k, t_all = 0, time.perf_counter()
    for task in plan.tasks:
        try:
            required_files(plan, task)
        except (OSError, ValueError) as e:
            k += len(plan.seeds)
            _say(f"{task}: FAILED, not run: {_one_line(e)}")
            failed.append((task, None, _one_line(e)))
            continue
        for seed in plan.seeds:
            k += 1
            label, t0 = f"[{k}/{n_runs}] {task} seed {seed}", time.perf_counter()
            try:
                result = run_or_skip(plan, task, seed, label)
            except Exception as e:  # noqa: BLE001 - a failed run is reported at the end, the others go on
                if os.environ.get("LIT_LM_DEBUG"):
                    raise
                _say(f"{label}: FAILED after {_duration(time.perf_counter() - t0)}: {_one_line(e)}")
                failed.append((task, seed, _one_line(e)))
                continue
            if "predict_error" in result:
                failed.append((task, seed, f"--predict: {result['predict_error']}"))
            runs.setdefault(task, {})[seed] = result["metrics"]
            where.setdefault(task, {})[str(seed)] = {"steps": result["steps"], "wall_s": result["wall_s"],
                                                     "dir": str(plan.run_dir(task, seed))}

    summary = summarize(runs)
    report = {"name": plan.out.name, "pretrained": plan.pretrained, "random_init": plan.random_init,
              "data_dir": None if plan.data_dir is None else str(plan.data_dir), "config": plan.config,
              "overrides": plan.extra,
              "task_overrides": {t: TASK_OVERRIDES[t] for t in plan.tasks if t in TASK_OVERRIDES},
              "seeds": plan.seeds, **summary, "runs": where}
    if plan.predict:
        report["submission"] = _zip_submission(plan, summary)
        if report["submission"]["missing"]:
            failed.append(("submission.zip", None, f"lacks {', '.join(report['submission']['missing'])}"))
    report["failed"] = [{"task": task, "seed": seed, "error": why} for task, seed, why in failed]
    _write_json(plan.out / "results.json", report)

    encoder = plan.pretrained or "random init"
    if plan.random_init:
        encoder += " (random init with its architecture and tokenizer)"
    title = (f"# GLUE dev: {plan.out.name}\n\nEncoder: {encoder}; recipe {plan.config}"
             f"{' + ' + ' '.join(plan.extra) if plan.extra else ''}; seeds {', '.join(map(str, plan.seeds))}.\n\n")
    not_scored = {task: why for task, _, why in failed if task in TASKS and task not in summary["tasks"]}
    table = render_table(summary, plan.seeds, not_scored)
    (plan.out / "results.md").write_text(title + table)
    print("\n" + table, flush=True)
    outputs = [plan.out / "results.json", plan.out / "results.md"]
    if "submission" in report:
        outputs.append(Path(report["submission"]["zip"]))
    _say(f"{sum(map(len, runs.values()))} of {n_runs} run(s) scored in {_duration(time.perf_counter() - t_all)}: "
         f"{', '.join(map(str, outputs))}")
    if failed:
        print(f"lit-lm: error: {_failures(failed)}", file=sys.stderr, flush=True)
        sys.exit(1)


def _failures(failed: list[tuple[str, Optional[int], str]]) -> str:
    """One line for all failures; the seeds of a task that failed alike are named together."""
    groups: dict[tuple[str, str], list[Optional[int]]] = {}
    for task, seed, why in failed:
        groups.setdefault((task, why), []).append(seed)
    parts = []
    for (task, why), seeds in groups.items():
        named = [s for s in seeds if s is not None]
        which = "" if not named else f" seed{'s' * (len(named) > 1)} {', '.join(map(str, named))}"
        parts.append(f"{task}{which} ({why})")
    return f"{len(failed)} failed: " + "; ".join(parts)


def _zip_submission(plan: Plan, summary: Mapping[str, Any]) -> dict[str, Any]:
    """SAVE_DIR/NAME/submission.zip: per task the files of the seed with the best dev score (GLUE's server scores
    one submission, so one model per task is chosen, on dev, as BERT chose its learning rate)."""
    chosen: dict[str, int] = {}
    files: list[Path] = []
    missing: list[str] = []
    for task, entry in summary["tasks"].items():
        per_seed = entry["score"]["per_seed"]
        seed = int(max(per_seed, key=lambda s: (per_seed[s], -int(s))))  # ties: the first seed
        chosen[task] = seed
        for name in submission_files(task):
            path = plan.run_dir(task, seed) / name
            (files if path.is_file() else missing).append(path if path.is_file() else f"{name} ({task} seed {seed})")
    zip_path = plan.out / "submission.zip"
    tmp = zip_path.with_name("submission.zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path in files:
            z.write(path, arcname=path.name)  # the server wants the files at the top of the archive
    os.replace(tmp, zip_path)
    return {"zip": str(zip_path), "seeds": chosen, "files": [p.name for p in files], "missing": missing}
