"""The gpu tier (issue 21 B): the shipped commands, run for real on a CUDA device.

Until issue 21 every shipped config crashed on CUDA at its first optimizer step (Lightning refused gradient clipping
with the fused AdamW), and nothing ran there to say so. Here, on the device: ``fit`` of the quickstart pretraining and
SST-2 fine-tuning under each precision with clipping on (both algorithms), ``--model.compile true``, an exact resume
after a SIGKILL, ``predict``, ``export``, ``lit_lm.load`` on the device, ``lit-lm glue`` on every GLUE task with
data, and a few training steps under ``torch.cuda.set_sync_debug_mode("error")`` (a step must not wait on the GPU).

Every test is marked ``gpu`` and skipped without CUDA (CI never runs them); benchmarks/gpu.sh runs the tier in its one
device call. ``LIT_LM_GPU_TIER_ON_CPU=1`` rehearses it on the CPU (the plumbing; CUDA-only checks skipped).

    python -m pytest tests/gpu -o addopts="" -v        # addopts: the device's image has no nbmake
"""

from __future__ import annotations

import json
import math
import os
import signal
import textwrap
import traceback
import warnings
from pathlib import Path

import pytest
import torch
from gpu_fixtures import cuda_pretrained, cuda_sst2, gpu_cache  # noqa: F401  (fixtures)
from gpu_helpers import ACCELERATOR, CUDA, CUDA_ONLY, DEVICE, NO_CUDA, ON_CPU, SYNC_FROM, SYNC_TO
from one_line import run_main

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not (CUDA or ON_CPU), reason=NO_CUDA)]
cuda_only = pytest.mark.skipif(not CUDA, reason=CUDA_ONLY)

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = ["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml"]
FINETUNE = ["fit", "--config", "configs/quickstart_sst2.yaml"]
PRECISIONS = ["32-true", "bf16-mixed", "16-mixed"]
COMPUTE_DTYPE = {"32-true": "torch.float32", "bf16-mixed": "torch.bfloat16", "16-mixed": "torch.float16"}
CLIP = 1.0  # the shipped configs' gradient_clip_val: what crashed at the first step
STEPS = 4


def _on_device(tmp_path: Path, cache: Path) -> list[str]:
    return [f"--trainer.accelerator={ACCELERATOR}", f"--trainer.logger.init_args.save_dir={tmp_path}",
            f"--data.cache_dir={cache}"]


def _probed_fit(args: list[str], tmp_path: Path, capfd, monkeypatch) -> dict:
    """Run ``lit-lm ARGS`` with gpu_helpers.Probe; what it recorded."""
    monkeypatch.setenv("LIT_LM_GPU_PROBE", str(tmp_path / "probe.json"))
    code, out = run_main([*args, "--trainer.callbacks+=gpu_helpers.Probe"], capfd, monkeypatch)
    assert code == 0, out[-4000:]
    return json.loads((tmp_path / "probe.json").read_text())


def _check_fit(record: dict, precision: str, algorithm: str, steps: int = STEPS) -> None:
    """Ran on the device, fused, every step, finite losses, autocast as the precision says, fp32 master weights, and
    no step with gradients past the clip value."""
    assert record["device"].startswith(DEVICE), record["device"]
    assert record["fused"], "the path under test is the fused AdamW's"
    assert record["global_step"] == steps and len(record["losses"]) == steps, record
    assert all(math.isfinite(x) for x in record["losses"]), record["losses"]
    if CUDA or precision != "16-mixed":
        assert set(record["forward_dtypes"]) == {COMPUTE_DTYPE[precision]}, record["forward_dtypes"]
    assert record["weight_dtype"] == "torch.float32"
    # a 16-mixed step whose gradients overflowed is skipped by the scaler (its gradients are inf: not a clip check)
    finite = [i for i, n in enumerate(record["norm_at_step"]) if math.isfinite(n)]
    assert finite, record["norm_at_step"]
    if algorithm == "norm":
        assert all(record["norm_at_step"][i] <= CLIP * (1 + 1e-3) for i in finite), record["norm_at_step"]
    else:
        assert all(record["max_abs_at_step"][i] <= CLIP * (1 + 1e-6) for i in finite), record["max_abs_at_step"]


def _skip_fp16_on_cpu(precision: str) -> None:
    if precision == "16-mixed" and not CUDA:
        pytest.skip(f"{CUDA_ONLY} (on a CPU Lightning runs 16-mixed as bf16)")


# ---- fit under every precision, clipping on -------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["norm", "value"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_pretraining_quickstart_fits_with_clipping_on(precision, algorithm, tmp_path, gpu_cache, capfd, monkeypatch):
    _skip_fp16_on_cpu(precision)
    record = _probed_fit([*PRETRAIN, *_on_device(tmp_path, gpu_cache), f"--trainer.precision={precision}",
                          f"--trainer.gradient_clip_val={CLIP}", f"--trainer.gradient_clip_algorithm={algorithm}",
                          f"--trainer.max_steps={STEPS}", f"--trainer.val_check_interval={STEPS}",
                          "--trainer.limit_val_batches=2"], tmp_path, capfd, monkeypatch)
    _check_fit(record, precision, algorithm)
    if algorithm == "norm":  # the first steps' norm is ~5-20 for the tiny model: clipping must have acted
        assert any(n == pytest.approx(CLIP, rel=1e-3) for n in record["norm_at_step"]), record["norm_at_step"]
    assert (tmp_path / "quickstart" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("precision,algorithm", [(p, "norm") for p in PRECISIONS] + [("16-mixed", "value")])
def test_sst2_fine_tuning_fits_with_clipping_on(precision, algorithm, tmp_path, gpu_cache, cuda_pretrained, capfd,
                                                monkeypatch):
    _skip_fp16_on_cpu(precision)
    record = _probed_fit([*FINETUNE, f"--model.pretrained={cuda_pretrained}", *_on_device(tmp_path, gpu_cache),
                          f"--trainer.precision={precision}", f"--trainer.gradient_clip_val={CLIP}",
                          f"--trainer.gradient_clip_algorithm={algorithm}", f"--trainer.max_steps={STEPS}",
                          f"--trainer.val_check_interval={STEPS}", "--trainer.limit_val_batches=2"],
                         tmp_path, capfd, monkeypatch)
    _check_fit(record, precision, algorithm)


# ---- no host sync inside a training step ---------------------------------------------------------------------


def _sync_site(error: BaseException) -> str:
    """Where the synchronising op was called: the innermost frames, lit-lm's first."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f"{os.sep}lit_lm{os.sep}" in f.filename or f"{os.sep}data_modules{os.sep}" in f.filename]
    site = (ours or frames)[-1]
    chain = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames[-5:]))
    return f"{site.filename}:{site.lineno}: {site.line}   (innermost frames: {chain})"


@cuda_only
@pytest.mark.parametrize("precision", PRECISIONS)
def test_training_steps_never_wait_on_the_gpu(precision, tmp_path, gpu_cache, capfd, monkeypatch):
    """SYNC-FREE STEP: steps SYNC_FROM..SYNC_TO of the quickstart (shipped callbacks, progress, one loader worker) under
    ``torch.cuda.set_sync_debug_mode("error")``: any op that makes the host wait on the device (``.item()``,
    ``bool(t)``, a boolean mask's ``nonzero``, a blocking copy, ``torch.cuda.synchronize``) raises; the failure names
    it. ``LIT_LM_SYNC_DEBUG=warn`` lists every one instead of the first."""
    monkeypatch.setenv("LIT_LM_SYNC_RECORD", str(tmp_path / "window.json"))
    mode = os.environ.get("LIT_LM_SYNC_DEBUG", "error")
    args = [*PRETRAIN, *_on_device(tmp_path, gpu_cache), f"--trainer.precision={precision}",
            f"--trainer.max_steps={SYNC_TO + 2}", "--trainer.log_every_n_steps=1000", "--trainer.limit_val_batches=0",
            "--trainer.callbacks+=gpu_helpers.SyncFreeWindow"]
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            code, out = run_main(args, capfd, monkeypatch)
    except RuntimeError as e:
        if "synchronizing CUDA operation" not in str(e):
            raise
        pytest.fail(f"SYNC IN A TRAINING STEP ({precision}): {_sync_site(e)}", pytrace=False)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert code == 0, out[-4000:]
    syncs = [f"{w.filename}:{w.lineno}" for w in seen if "synchronizing CUDA operation" in str(w.message)]
    if syncs:  # warn mode
        counts = {site: syncs.count(site) for site in dict.fromkeys(syncs)}
        pytest.fail(f"SYNCS IN TRAINING STEPS ({precision}, {mode}): {counts}", pytrace=False)
    window = json.loads((tmp_path / "window.json").read_text())
    assert (window["opened"], window["closed"]) == (SYNC_FROM, SYNC_TO), window  # the window did cover the steps


# ---- torch.compile -------------------------------------------------------------------------------------------


def test_pretraining_with_compile(tmp_path, gpu_cache, capfd, monkeypatch):
    """``--model.compile true``: training and a validation through the compiled encoder; the graphs are counted at the
    end (past the recompile limit a compiled module silently runs eager) and the checkpoint's keys are the model's
    own (no ``_orig_mod.``)."""
    if ON_CPU and not CUDA:
        pytest.skip("the CPU compile path is tests/lit_lm/test_cuda_paths.py's (inductor's C++ build is slow here)")
    monkeypatch.setenv("LIT_LM_GPU_PROBE", str(tmp_path / "probe.json"))
    code, out = run_main([*PRETRAIN, *_on_device(tmp_path, gpu_cache), "--model.compile=true",
                          "--trainer.precision=bf16-mixed", "--trainer.max_steps=6", "--trainer.val_check_interval=6",
                          "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
                          "--trainer.callbacks+=gpu_helpers.Probe"], capfd, monkeypatch)
    assert code == 0, out[-4000:]
    record = json.loads((tmp_path / "probe.json").read_text())
    assert len(record["losses"]) == 6 and all(math.isfinite(x) for x in record["losses"]), record["losses"]
    line = next((x for x in out.splitlines() if "torch.compile:" in x), None)
    assert line is not None, out[-3000:]
    graphs = int(line.split("torch.compile:")[1].split()[0])
    assert graphs >= 1, line
    print(f"\n{line.strip()}")
    ckpt = torch.load(tmp_path / "quickstart" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not [k for k in ckpt["state_dict"] if "_orig_mod" in k]


# ---- exact resume --------------------------------------------------------------------------------------------

RESUME = """
trainer:
  precision: bf16-mixed          # cli.yaml's, the GPU's
  deterministic: warn            # deterministic kernels where torch has them; a warning names any other
  max_steps: 8
  val_check_interval: 4
  limit_val_batches: 2
  enable_progress_bar: false
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        every_n_train_steps: 4
        save_last: true
        save_top_k: -1
    - class_path: lit_lm.callbacks.DivergenceGuard
"""
KILL_AT = 6  # the last checkpoint before it: step 4


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, gpu_cache) -> dict:
    """An uninterrupted 8-step fit and one SIGKILLed at step 6 side by side on the device, then the killed one resumed
    with ``--ckpt_path last`` (real ``python -m lit_lm fit`` subprocesses: a kill needs a process of its own)."""
    from resume_helpers import finish, launch_fit

    tmp = tmp_path_factory.mktemp("gpu-resume")
    (tmp / "resume.yaml").write_text(textwrap.dedent(RESUME))

    def fit(run: str, *extra: str):
        return ["--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--config", str(tmp / "resume.yaml"),
                f"--trainer.accelerator={ACCELERATOR}", f"--trainer.logger.init_args.save_dir={tmp / run}",
                f"--data.cache_dir={gpu_cache}", *extra]

    full = launch_fit(fit("full"), {})
    killed = launch_fit(fit("killed", "--trainer.callbacks+=resume_helpers.KillAt"), {"LIT_LM_KILL_AT": str(KILL_AT)})
    outputs = {"killed": finish(killed, -signal.SIGKILL), "full": finish(full, 0)}
    outputs["resumed"] = finish(launch_fit(fit("killed", "--ckpt_path", "last"), {}), 0)
    assert "Restored all states from the checkpoint" in outputs["resumed"], outputs["resumed"][-3000:]
    return {"tmp": tmp, "out": outputs}


def _ckpt(resumed: dict, run: str, name: str) -> dict:
    from resume_helpers import load_checkpoint

    (path,) = (resumed["tmp"] / run / "quickstart" / "checkpoints").glob(name)
    return load_checkpoint(path)


def test_two_fresh_runs_on_the_device_agree_bitwise(resumed):
    """The control of the resume test: without it a difference after the resume could be the kernels'."""
    from resume_helpers import max_abs_diff

    a, b = _ckpt(resumed, "full", "epoch=*-step=4.ckpt"), _ckpt(resumed, "killed", "epoch=*-step=4.ckpt")
    dw = max_abs_diff(a["state_dict"], b["state_dict"])
    nondeterministic = sorted({line.strip()[:200] for out in resumed["out"].values() for line in out.splitlines()
                               if "deterministic" in line})
    assert dw == 0.0, (f"two fresh runs differ at step 4 (max |dw| {dw}): the device's kernels are not deterministic, "
                       f"so no resume can be bitwise; torch warned: {nondeterministic}")


def test_resume_on_the_device_ends_with_the_uninterrupted_weights(resumed):
    from resume_helpers import assert_same_weights_and_optimizer

    full, again = _ckpt(resumed, "full", "last.ckpt"), _ckpt(resumed, "killed", "last.ckpt")
    assert full["global_step"] == 8
    assert_same_weights_and_optimizer(full, again, "resumed on the device")
    assert full["lr_schedulers"] == again["lr_schedulers"]
    if CUDA:  # the dropout masks of a resumed step come from the CUDA generator: its state travels in the checkpoint
        assert "cuda" in full["rng_states"], list(full["rng_states"])


# ---- predict, export, lit_lm.load, lit-lm glue -----------------------------------------------------------------


def test_predict_writes_the_sst2_submission(tmp_path, gpu_cache, cuda_pretrained, cuda_sst2, capfd, monkeypatch):
    code, out = run_main(["predict", "--config", "configs/quickstart_sst2.yaml", f"--model.pretrained={cuda_pretrained}",
                          f"--ckpt_path={cuda_sst2}", *_on_device(tmp_path, gpu_cache)], capfd, monkeypatch)
    assert code == 0, out[-4000:]
    rows = (tmp_path / "quickstart_sst2" / "SST-2.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 101, rows[:3]  # the sample's 100 test sentences
    assert {r.split("\t")[1] for r in rows[1:]} <= {"0", "1"}


def test_export_of_checkpoints_made_on_the_device(tmp_path, cuda_pretrained, cuda_sst2, capfd, monkeypatch):
    for ckpt, out_dir in ((cuda_pretrained, tmp_path / "bert"), (cuda_sst2, tmp_path / "sst2")):
        code, out = run_main(["export", str(ckpt), str(out_dir)], capfd, monkeypatch)
        assert code == 0, out[-3000:]
        assert (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file(), out
    try:
        import transformers
    except ModuleNotFoundError:
        return
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "sst2").eval()
    assert hf.config.num_labels == 2


def test_lit_lm_load_runs_on_the_device(cuda_pretrained, cuda_sst2):
    """``lit_lm.load(path, device=...)``: the same answers on the device as on the CPU."""
    import lit_lm

    bert, bert_cpu = lit_lm.load(cuda_pretrained, device=DEVICE), lit_lm.load(cuda_pretrained)
    assert next(bert.model.parameters()).device.type == DEVICE
    text = "the game was released in [MASK] ."
    assert [t["token"] for t in bert.fill_mask(text)[0]][:1] == [t["token"] for t in bert_cpu.fill_mask(text)[0]][:1]
    assert bert.next_sentence("the game was released .", "it sold well .") == pytest.approx(
        bert_cpu.next_sentence("the game was released .", "it sold well ."), abs=1e-3)
    clf, clf_cpu = lit_lm.load(cuda_sst2, device=DEVICE), lit_lm.load(cuda_sst2)
    texts = ["a gorgeous , witty film", "a dull mess"]
    torch.testing.assert_close(clf.predict_proba(texts).cpu(), clf_cpu.predict_proba(texts), atol=1e-3, rtol=0)


def test_glue_harness_on_the_device(tmp_path, gpu_cache, cuda_pretrained, request, capfd, monkeypatch):
    """``lit-lm glue`` over every GLUE task with data (the real release tree when LIT_LM_DATA has it, else the bundled
    SST-2 sample), 3 steps each: fit, validate the last checkpoint, score, the table."""
    try:
        root, tasks = request.getfixturevalue("glue_root"), ["cola", "sst2", "mrpc", "stsb", "rte", "wnli"]
    except pytest.skip.Exception:
        root, tasks = tmp_path / "glue", ["sst2"]
        root.mkdir()
        (root / "SST-2").symlink_to(REPO / "data_modules" / "samples" / "sst2")
    code, out = run_main(["glue", "--pretrained", str(cuda_pretrained), "--data_dir", str(root), "--tasks",
                          ",".join(tasks), "--seeds", "1", "--save_dir", str(tmp_path), "--name", "device",
                          f"--trainer.accelerator={ACCELERATOR}", "--trainer.max_steps=3", "--model.lr=2e-4",
                          f"--data.cache_dir={gpu_cache}"], capfd, monkeypatch)
    assert code == 0, out[-4000:]
    results = json.loads((tmp_path / "device" / "results.json").read_text())
    assert results["failed"] == [] and sorted(results["tasks"]) == sorted(tasks), results
    assert {t: results["runs"][t]["1"]["steps"] for t in tasks} == {t: 3 for t in tasks}
