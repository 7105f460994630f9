"""Running ``lit-lm glue``: each (task, seed) fitted and scored on dev, or skipped when its result exists, and the
report at the end (results.json, results.md, the table printed, one error line for whatever failed).

A run whose result.json exists is skipped, so a killed harness continues where it stopped (the run it was in
starts again from scratch); ``--overwrite`` reruns everything. A run that fails is reported and the others go on.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from data_modules.glue_tasks import TASKS
from lit_lm.errors import fail, one_line
from lit_lm.glue.plan import Plan, make_plan, required_files, task_flags
from lit_lm.glue.scoring import metrics_line, official_metrics, render_table, summarize, task_score
from lit_lm.glue.submission import submission_files, write_predictions, zip_submission
from lit_lm.lightning_cli import LitLMCLI, make_cli


class _DryRunCLI(LitLMCLI):
    """Builds the model and the data module, not the trainer (``check_arguments``)."""

    def instantiate_trainer(self, **kwargs: Any) -> None:
        return None


def check_arguments(plan: Plan) -> None:
    """Parse the first run's arguments as ``fit`` would and build its model and data module, not its trainer: a
    mistyped flag, an unreadable checkpoint or tokenizer is one line at once, not a failure of every run, the first
    after hours of data preparation."""
    cli = make_cli(plan.fit_args(plan.tasks[0], plan.seeds[0]), cli_class=_DryRunCLI, run=False)
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


def fit_and_score(plan: Plan, task: str, seed: int) -> dict[str, Any]:
    """One fine-tuning run: fit, validate the last checkpoint, result.json (and the submission files)."""
    run_dir = plan.run_dir(task, seed)
    if run_dir.exists():  # an unfinished run (killed) or --overwrite: start afresh, no stale last-v1.ckpt
        shutil.rmtree(run_dir)
    args = plan.fit_args(task, seed)
    t0 = time.perf_counter()
    cli = make_cli(["fit", *args])
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
        _try(result, lambda: write_predictions(plan, task, cli, ckpt, run_dir))
    del cli, trainer
    _free()
    return result


def predict_only(plan: Plan, task: str, result: dict[str, Any]) -> None:
    """The submission files of a finished run, from its last checkpoint (a rerun that adds --predict)."""
    def predict() -> str:
        cli = make_cli(list(result["args"]), run=False, save_config_callback=None)
        try:
            return write_predictions(plan, task, cli, result["checkpoint"], plan.run_dir(task, result["seed"]))
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
        result["predict_error"] = one_line(e)


def _free() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)  # a killed harness never leaves half a result


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def _say(message: str) -> None:
    print(f"glue: {message}", flush=True)


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
        result["metrics"] = official_metrics(task, result["logged"])  # scored by today's rule (a NaN correlation: 0)
        if plan.predict and not all((run_dir / f).is_file() for f in submission_files(task)):
            predict_only(plan, task, result)
        _say(f"{label}: done before, skipped ({metrics_line(result['metrics'])}; --overwrite reruns)"
             f"{_predicted(result)}")
        return result
    _say(f"{label}: started -> {run_dir}")
    result = fit_and_score(plan, task, seed)
    _say(f"{label}: done in {_duration(time.perf_counter() - t0)}: {metrics_line(result['metrics'])} "
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
            _say(f"{task}: FAILED, not run: {one_line(e)}")
            failed.append((task, None, one_line(e)))
            continue
        for seed in plan.seeds:
            k += 1
            label, t0 = f"[{k}/{n_runs}] {task} seed {seed}", time.perf_counter()
            try:
                result = run_or_skip(plan, task, seed, label)
            except Exception as e:  # noqa: BLE001 - a failed run is reported at the end, the others go on
                if os.environ.get("LIT_LM_DEBUG"):
                    raise
                _say(f"{label}: FAILED after {_duration(time.perf_counter() - t0)}: {one_line(e)}")
                failed.append((task, seed, one_line(e)))
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
              "task_overrides": {t: task_flags(t) for t in plan.tasks if task_flags(t)},
              "seeds": plan.seeds, **summary, "runs": where}
    if plan.predict:
        report["submission"] = zip_submission(plan, summary)
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
        fail(_failures(failed), code=1)


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
