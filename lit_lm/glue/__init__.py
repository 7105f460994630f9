"""``python -m lit_lm glue``: GLUE as a benchmark. Fine-tune an encoder on every GLUE task (and seed), score each on
dev with the task's official metric(s), average them as BERT did (WNLI out, reported beside it; the headline) and,
when all nine ran, as the GLUE leaderboard does, and optionally write the GLUE server's submission.

Every (task, seed) is a normal ``python -m lit_lm fit`` run through LightningCLI, the same SequenceClassification
and GLUEDataModule, configured by the recipe (configs/sst2.yaml), the per-task overrides and the user's
``--trainer.* / --model.* / --data.*`` flags, and logged under ``runs/glue/<name>/<task>/seed<k>/`` (TensorBoard,
config.yaml, checkpoints/last.ckpt, result.json). The dev metrics are ``trainer.validate`` of that last checkpoint,
so they equal ``python -m lit_lm validate --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt``.

One module a job, from the bottom up (the facts of each task: ``data_modules.glue_tasks.TASKS``):

- ``scoring``: the GLUE arithmetic and the results table, pure functions;
- ``plan``: the command line and what it runs, checked before anything runs;
- ``submission``: the GLUE server's files (predictions, AX, submission.zip);
- ``run``: fitting and scoring each run, skipping finished ones, the report (``main``).
"""
