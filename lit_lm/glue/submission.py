"""The GLUE server's files: a run's predictions on the task's test split(s) (and, for MNLI, on the diagnostic set AX),
and submission.zip, which holds per task the files of the seed with the best dev score."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader

from data_modules import sources
from data_modules.collators import PadCollator
from data_modules.glue_reading import hub_examples, read_tsv
from data_modules.glue_tasks import TASKS, GLUETask
from lit_lm.classification import write_submission
from lit_lm.glue.plan import Plan


def submission_files(task: str) -> list[str]:
    """The files a run of ``task`` writes for the server: one per test split, and the diagnostic set's (MNLI: AX)."""
    t = TASKS[task]
    return [*t.submission, *(t.diagnostic.submission if t.diagnostic is not None else ())]


def write_predictions(plan: Plan, task: str, cli, ckpt_path: Optional[str], run_dir: Path) -> str:
    """The submission files of one run from ``cli``'s trainer, model and data module (the weights of ``ckpt_path``)
    into ``run_dir``; returns what was written, e.g. ``SST-2.tsv 1821``."""
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    out = trainer.predict(model, datamodule=dm, ckpt_path=ckpt_path, return_predictions=True)
    per_split = out if len(dm.test_splits) > 1 else [out]  # Lightning nests the lists only for several loaders
    counts = [f"{name} {_write_file(run_dir / name, dm.task, batches)}"
              for name, batches in zip(dm.task.submission, per_split)]
    diagnostic = dm.task.diagnostic
    if diagnostic is not None:  # AX: the MNLI model's predictions on the diagnostic set (weights already loaded above)
        source = None if plan.data_dir is None else plan.data_dir / diagnostic.directory / diagnostic.files[0]
        if source is not None and not source.is_file():
            raise FileNotFoundError(f"--data_dir {plan.data_dir}: missing {source.relative_to(plan.data_dir)}, the "
                                    f"input of {diagnostic.submission[0]} ({', '.join(counts)} written)")
        batches = trainer.predict(model, dataloaders=_diagnostic_loader(diagnostic, source, dm),
                                  return_predictions=True)
        name = diagnostic.submission[0]
        counts.append(f"{name} {_write_file(run_dir / name, diagnostic, batches)}")
    return ", ".join(counts)


def _write_file(path: Path, task: GLUETask, batches: list[dict]) -> int:
    """The submission file of ``task`` from predict batches (lit_lm.classification.write_submission)."""
    index = torch.cat([b["index"] for b in batches]).tolist()
    return write_submission(path, task, index, torch.cat([b["prediction"] for b in batches]).tolist())


def _diagnostic_loader(diagnostic: GLUETask, source: Optional[Path], dm) -> DataLoader:
    """A diagnostic set (AX) as batches for the model of ``dm``'s task: sentence pairs with their indices, from
    ``source`` (its file in the release tree) or, when None, from the hub."""
    if source is None:
        where = f"{diagnostic.directory}/{diagnostic.files[0]}"
        ds = sources.load_hub("nyu-mll/glue", diagnostic.name, f"pass --data_dir GLUE_DIR holding {where}")
        examples = hub_examples(ds, diagnostic, "test", labelled=False)
    else:
        examples = read_tsv(source, diagnostic, labelled=False)
    tok = dm.tokenizer  # the run's: truncation to --data.max_seq_len, no padding
    encodings = tok.encode_batch([t[0] if len(t) == 1 else t for t in examples.texts])
    samples = [{"input_ids": e.ids, "token_type_ids": e.type_ids, "index": i}
               for e, i in zip(encodings, examples.index)]
    return DataLoader(samples, batch_size=dm.batch_size, shuffle=False,
                      collate_fn=PadCollator(tok.token_to_id("[PAD]")))


def zip_submission(plan: Plan, summary: Mapping[str, Any]) -> dict[str, Any]:
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
