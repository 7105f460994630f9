"""What one ``lit-lm glue`` command runs, and where: its options, checked into a ``Plan`` before anything runs, and each
run's ``fit`` arguments (the recipe, the per-task overrides, the user's flags)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from data_modules.glue_tasks import TASKS
from lit_lm import resources
from lit_lm.errors import OneLineParser

DEFAULT_CONFIG = "configs/sst2.yaml"
"""The fine-tuning recipe, by its place in the repository (lit_lm.resources finds the installed copy elsewhere)."""


def task_flags(task: str) -> list[str]:
    """The flags a task adds after the recipe, before the command line's (which win): its ``GLUETask.max_epochs``."""
    epochs = TASKS[task].max_epochs
    return [] if epochs is None else ["--trainer.max_epochs", str(epochs)]


_PASS_THROUGH = ("--trainer.", "--model.", "--data.")
_OWNED = {  # flags the harness sets itself, and the harness option that sets them
    "--data.task_name": "--tasks", "--data.data_dir": "--data_dir", "--model.pretrained": "--pretrained",
    "--model.num_labels": "--tasks", "--trainer.logger": "--save_dir/--name", "--seed_everything": "--seeds",
}


def parser() -> argparse.ArgumentParser:
    """``lit-lm glue``'s options; its errors are one-line ValueErrors (lit_lm.errors.OneLineParser)."""
    overrides = "\n".join(f"  {t}: {' '.join(task_flags(t))}" for t in TASKS if task_flags(t))
    p = OneLineParser(
        prog="lit-lm glue", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune and score an encoder on every GLUE task: one `fit` run per (task, seed) with the\n"
                    "recipe, the dev metrics of each last checkpoint, mean ± sd over seeds, the BERT-style average\n"
                    "(WNLI out, reported beside it; Devlin et al., 2019) first, the leaderboard's GLUE score (all\n"
                    "nine, WNLI in) when every task ran, results.json and results.md; finished runs are skipped on a\n"
                    "rerun.",
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
    return resources.find(DEFAULT_CONFIG)  # relative in a checkout (shorter in the saved configs), else installed


def _task_list(text: str) -> list[str]:
    aliases = {t: t for t in TASKS} | {task.directory.lower().replace("-", ""): t for t, task in TASKS.items()}
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
        return None if self.data_dir is None else self.data_dir / TASKS[task].directory

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
        return args + task_flags(task) + self.extra


def make_plan(argv: list[str]) -> Plan:
    """Parse and check the command line (one-line ValueErrors naming the option)."""
    a, extra = parser().parse_known_args(argv)
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
    if not Path(resources.find(a.config)).is_file():  # the CLI reads an installed configs/... the same way
        raise ValueError(f"--config {a.config}: no such file")
    pretrained = None if a.pretrained is None else str(Path(a.pretrained).expanduser())
    name = a.name or _default_name(a.pretrained, a.random_init)
    return Plan(tasks=_task_list(a.tasks), seeds=_seed_list(a.seeds), config=a.config,
                out=Path(a.save_dir).expanduser() / name, pretrained=pretrained, random_init=a.random_init,
                data_dir=None if a.data_dir is None else Path(a.data_dir).expanduser(), predict=a.predict,
                overwrite=a.overwrite, extra=extra)


def required_files(plan: Plan, task: str) -> None:
    """A missing task directory or file, named in one line, before any of the task's runs starts."""
    d = plan.task_dir(task)
    if d is None:
        return
    t = TASKS[task]
    if d.is_file():  # a symbolic link copied as a plain file holds its target as text
        target = d.read_bytes()[:200].decode(errors="replace").strip()
        raise FileNotFoundError(f"--data_dir {plan.data_dir}: {t.directory} is a file, not a directory (a symbolic "
                                f"link saved as a file? it holds {target!r}); expected {t.directory}/"
                                f"{{{','.join(t.files)}}}")
    if not d.is_dir():
        raise FileNotFoundError(f"--data_dir {plan.data_dir}: no {t.directory}/ directory for GLUE {task} "
                                f"(expected {t.directory}/{{{','.join(t.files)}}})")
    missing = [n for n in t.files if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: missing {', '.join(missing)} of GLUE {task}")
