"""The code paths that only run on CUDA, run on the CPU (issue 21 A): torch.cuda stand-ins where a branch asks the
device, a checkpoint that says it was saved from GPU memory, ``--model.compile true`` through a CPU fit. The gpu tier
(tests/gpu, benchmarks/gpu.sh) runs the same paths for real where a GPU is lent; these keep them tested everywhere.

Branches and where they are tested:
- pretraining.py on_save_checkpoint / on_train_start: the CUDA generators' states saved and restored (single device
  and per DDP rank), and a checkpoint with CUDA states resumed without CUDA;
- callbacks.TokenThroughput: on CUDA it synchronises the device, on logging steps only;
- the data modules pin their batches where CUDA is available (the copy then overlaps the step);
- checkpoints saved from GPU memory read on a CPU: --ckpt_path, --model.pretrained, lit_lm.load, export;
- lit-lm glue on a GPU: one device (an index list names one), the CUDA cache emptied between runs;
- torch.compile: a CPU fit through the compiled encoder (the GPU's speed path).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from one_line import run_main

REPO = Path(__file__).resolve().parents[2]
QUICK = ["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--data.num_workers=0",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeCudaRng:
    """torch.cuda's generators on a machine without CUDA: ``n_devices`` of them, whose states are 16-byte tensors, each
    read giving a new state (so a test can tell which read a checkpoint holds), every write recorded. torch's own
    ``get_rng_state_all`` / ``set_rng_state_all`` run on top (one call per visible device)."""

    def __init__(self, n_devices: int = 1) -> None:
        self.n_devices, self.returned, self.written = n_devices, [], []

    def get_rng_state(self, device="cuda") -> torch.Tensor:
        index = device if isinstance(device, int) else (torch.device(device).index or 0)
        state = torch.full((16,), len(self.returned) % 256, dtype=torch.uint8)
        self.returned.append((index, state))
        return state

    def set_rng_state(self, state: torch.Tensor, device="cuda") -> None:
        index = device if isinstance(device, int) else (torch.device(device).index or 0)
        if index >= self.n_devices:  # what torch.cuda.default_generators[index] does on this machine
            raise IndexError(f"CUDA device {index} does not exist here ({self.n_devices} visible)")
        self.written.append((index, state.clone()))

    def install(self, monkeypatch) -> "FakeCudaRng":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        for module in (torch.cuda, torch.cuda.random):
            monkeypatch.setattr(module, "get_rng_state", self.get_rng_state)
            monkeypatch.setattr(module, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda.random, "device_count", lambda: self.n_devices)
        # with "CUDA" available the loaders would pin memory, which a CPU-only torch cannot
        monkeypatch.setattr("data_modules.corpus.pin_memory", lambda: False)
        return self


def _fit(args: list[str], capfd, monkeypatch) -> str:
    code, out = run_main(args, capfd, monkeypatch)
    assert code == 0, out[-4000:]
    return out


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ---- the CUDA generators' states in checkpoints ------------------------------------------------------------------


def test_checkpoint_carries_the_cuda_rng_states_and_a_resume_restores_them(tmp_path, capfd, monkeypatch):
    """pretraining.py on_save_checkpoint / on_train_start with CUDA "available": the checkpoint holds the CUDA
    generators' states (read through Lightning's save and the weights-only load), and the resumed fit writes exactly
    those back before its first step, as it does the CPU generator's."""
    fake = FakeCudaRng().install(monkeypatch)
    run = [*QUICK, "--trainer.limit_val_batches=0", f"--trainer.logger.init_args.save_dir={tmp_path}",
           f"--data.cache_dir={tmp_path / 'cache'}"]
    _fit([*run, "--trainer.max_steps=3"], capfd, monkeypatch)
    ckpt = _load(tmp_path / "quickstart" / "checkpoints" / "last.ckpt")
    saved = ckpt["rng_states"]["cuda"]
    assert len(saved) == 1 and any(torch.equal(saved[0], state) for _, state in fake.returned), saved
    # (Lightning's isolate_rng around the sanity check writes back what it read: each read is a new value, so a
    # write of the saved one can only come from the checkpoint)
    assert not [i for i, s in fake.written if torch.equal(s, saved[0])]  # a fresh run restores nothing
    fake.written.clear()
    out = _fit([*run, "--trainer.max_steps=5", "--ckpt_path=last"], capfd, monkeypatch)
    assert "Restored all states from the checkpoint" in out
    assert [i for i, s in fake.written if torch.equal(s, saved[0])] == [0]  # once, to device 0
    assert _load(tmp_path / "quickstart" / "checkpoints" / "last.ckpt")["global_step"] == 5


def _module(device: str = "cpu", rank: int = 0, world: int = 1):
    """A tiny pretraining module as a rank of a ``world``-process run would see itself (a trainer stand-in)."""
    from lit_lm.pretraining import MLMPretraining

    module = MLMPretraining("tiny", vocab_size=64)
    module._trainer = SimpleNamespace(global_rank=rank, world_size=world)
    module._device = torch.device(device)
    return module


def test_ddp_ranks_keep_and_restore_their_own_cuda_rng_state(monkeypatch):
    """Under DDP on GPUs every rank's CUDA generator is kept (``cuda_per_rank``, gathered from the ranks) and a
    resumed rank sets its own device's state, after the shared ``cuda`` states: rank 1 gets rank 1's."""
    fake = FakeCudaRng().install(monkeypatch)
    torch.manual_seed(0)
    cpu0 = torch.get_rng_state()
    torch.manual_seed(1)
    cpu1 = torch.get_rng_state()
    cuda0, cuda1 = torch.full((16,), 100, dtype=torch.uint8), torch.full((16,), 101, dtype=torch.uint8)
    saver = _module("cuda:0", rank=0, world=2)
    # the all-gather of two ranks: rank 0's value and rank 1's (the CPU generator's state is 5056 bytes, ours 16)
    saver.all_gather = lambda t: torch.stack([cpu0, cpu1]) if t.numel() > 16 else torch.stack([cuda0, cuda1])
    checkpoint: dict = {}
    saver.on_save_checkpoint(checkpoint)
    states = checkpoint["rng_states"]
    assert torch.equal(states["cuda_per_rank"], torch.stack([cuda0, cuda1]))
    assert torch.equal(states["torch_per_rank"], torch.stack([cpu0, cpu1]))
    assert len(states["cuda"]) == 1

    resumed = _module("cuda:0", rank=1, world=2)
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_start()
    assert torch.equal(torch.get_rng_state(), cpu1)  # this rank's CPU generator
    assert [(i, s.tolist()) for i, s in fake.written] == [(0, states["cuda"][0].tolist()), (0, cuda1.tolist())]


def test_a_checkpoint_with_cuda_states_resumes_without_cuda():
    """A checkpoint written on a GPU machine carries ``cuda`` states: on a CPU machine they are left alone (the
    branch that sets them needs CUDA) and the CPU generator is restored."""
    torch.manual_seed(3)
    cpu = torch.get_rng_state()
    module = _module()
    module.on_load_checkpoint({"rng_states": {"torch": cpu, "cuda": [torch.zeros(16, dtype=torch.uint8)]}})
    torch.manual_seed(4)
    module.on_train_start()
    assert torch.equal(torch.get_rng_state(), cpu)


def test_a_single_gpu_checkpoint_resumes_where_fewer_gpus_are_visible(monkeypatch):
    """A single-device run on a machine with 8 visible GPUs, resumed on one with 1 (another machine, or
    CUDA_VISIBLE_DEVICES=0, as lit-lm glue's help suggests): the resume must set its own device's state only."""
    FakeCudaRng(n_devices=8).install(monkeypatch)
    checkpoint: dict = {}
    _module("cuda:0").on_save_checkpoint(checkpoint)
    fake = FakeCudaRng(n_devices=1).install(monkeypatch)
    resumed = _module("cuda:0")
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_start()  # IndexError today: device 1 does not exist
    assert [i for i, _ in fake.written] == [0]


# ---- the throughput callback's device synchronisation ----------------------------------------------------------


class _Tiny(L.LightningModule):
    """A linear layer on host-counted batches (``n_tokens``, as the collators give), with a FLOP count."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.flops_per_batch = 100

    def training_step(self, batch, batch_idx):
        return self.layer(batch["x"]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _tiny_loader(n: int = 16):
    batches = [{"x": torch.randn(4, 8), "input_ids": torch.zeros(4, 6, dtype=torch.long),
                "attention_mask": torch.ones(4, 6, dtype=torch.long), "n_tokens": 24} for _ in range(n)]
    return torch.utils.data.DataLoader(batches, batch_size=None)


def test_token_throughput_waits_for_the_gpu_on_logging_steps_only(tmp_path, monkeypatch):
    """On CUDA (the root device reported as cuda inside the callback; torch.cuda.synchronize counted) the rates need the
    queued steps finished, but only where they are computed: 8 steps logged every 4 synchronise twice, not 8 times
    (Lightning's ThroughputMonitor synchronises after every batch, which stalls the host's queueing of the next)."""
    from lit_lm.callbacks import TokenThroughput

    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: syncs.append(1))

    class OnCuda(TokenThroughput):
        def _update(self, trainer, pl_module, batch, iter_num):  # the one place the callback asks the device
            real, trainer.strategy._root_device = trainer.strategy._root_device, torch.device("cuda", 0)
            try:
                super()._update(trainer, pl_module, batch, iter_num)
            finally:
                trainer.strategy._root_device = real

    trainer = L.Trainer(accelerator="cpu", max_steps=8, log_every_n_steps=4, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[OnCuda(peak_flops=1e9)], default_root_dir=tmp_path)
    trainer.fit(_Tiny(), _tiny_loader())
    assert len(syncs) == 2, f"{len(syncs)} synchronisations in 8 steps logged every 4"


# ---- pinned memory -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cuda", [True, False])
def test_loaders_pin_memory_where_cuda_is_available(cuda, tmp_path, tokenizer_path, monkeypatch):
    """Lightning copies batches with non_blocking=True; from pinned memory that copy runs beside the step."""
    from data_modules.corpus import CorpusDataModule
    from data_modules.glue import SAMPLE_DIR, GLUEDataModule

    corpus = CorpusDataModule(data_dir=str(REPO / "data_modules" / "samples" / "wikitext"), cache_dir=str(tmp_path),
                              vocab_size=512, batch_size=8, num_workers=0, tokenizer_sample_bytes=200_000)
    corpus.prepare_data()
    corpus.setup("fit")
    glue = GLUEDataModule("sst2", data_dir=str(SAMPLE_DIR), tokenizer=str(tokenizer_path), cache_dir=str(tmp_path),
                          num_workers=0)
    glue.prepare_data()
    glue.setup("fit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    loaders = {"corpus train": corpus.train_dataloader(), "corpus val": corpus.val_dataloader(),
               "glue train": glue.train_dataloader(), "glue val": glue.val_dataloader()}
    assert {name: bool(dl.pin_memory) for name, dl in loaders.items()} == {name: cuda for name in loaders}


# ---- checkpoints saved from GPU memory, read on a CPU ------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_checkpoint(quickstart_run, tmp_path_factory) -> Path:
    """The quickstart checkpoint as a GPU run writes it: every tensor's storage tagged ``cuda:0`` (torch.load without a
    map_location would put it back there) and the CUDA generators' states beside the CPU one's."""
    import torch.serialization

    ckpt = _load(quickstart_run / "checkpoints" / "last.ckpt")
    ckpt["rng_states"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    path = tmp_path_factory.mktemp("gpu-ckpt") / "gpu.ckpt"
    tag = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(ckpt, path)
    finally:
        torch.serialization.location_tag = tag
    with pytest.raises(RuntimeError, match="on a CUDA device"):  # the control: it is GPU-tagged
        torch.load(path, weights_only=True)
    return path


def test_gpu_checkpoint_reads_through_the_checkpoint_io_and_lit_lm_load(gpu_checkpoint):
    import lit_lm
    from lit_lm.callbacks import AtomicCheckpointIO

    ckpt = AtomicCheckpointIO().load_checkpoint(gpu_checkpoint)
    assert {t.device.type for t in ckpt["state_dict"].values()} == {"cpu"}
    bert = lit_lm.load(gpu_checkpoint)
    assert len(bert.fill_mask("the [MASK] was released .")[0]) == 5


def test_gpu_checkpoint_exports_on_a_cpu(gpu_checkpoint, tmp_path, capfd, monkeypatch):
    code, out = run_main(["export", str(gpu_checkpoint), str(tmp_path / "hf")], capfd, monkeypatch)
    assert code == 0, out
    assert (tmp_path / "hf" / "model.safetensors").is_file()


@pytest.mark.slow
def test_gpu_checkpoint_fine_tunes_and_resumes_on_a_cpu(gpu_checkpoint, quickstart_run, tmp_path, capfd, monkeypatch):
    """--model.pretrained and --ckpt_path of a GPU-made checkpoint on a CPU: the weights, the AdamW moments and the
    data position load on the CPU, and the resumed fit runs its remaining steps."""
    _fit(["fit", "--config", "configs/quickstart_sst2.yaml", f"--model.pretrained={gpu_checkpoint}",
          "--trainer.max_steps=2", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
          f"--trainer.logger.init_args.save_dir={tmp_path}", f"--data.cache_dir={tmp_path / 'cache'}"],
         capfd, monkeypatch)
    step = _load(gpu_checkpoint)["global_step"]  # the CPU fixture's 30
    out = _fit([*QUICK, f"--ckpt_path={gpu_checkpoint}", f"--trainer.max_steps={step + 2}",
                "--trainer.limit_val_batches=0", f"--trainer.logger.init_args.save_dir={tmp_path}",
                f"--data.cache_dir={quickstart_run.parent / 'cache'}"], capfd, monkeypatch)
    assert "Restored all states from the checkpoint" in out
    assert _load(tmp_path / "quickstart" / "checkpoints" / "last.ckpt")["global_step"] == step + 2


# ---- lit-lm glue on a GPU ----------------------------------------------------------------------------------------


@pytest.fixture
def glue_plan_args(quickstart_run, tmp_path) -> list[str]:
    tree = tmp_path / "glue"
    tree.mkdir()
    (tree / "SST-2").symlink_to(REPO / "data_modules" / "samples" / "sst2")
    return ["--pretrained", str(quickstart_run / "checkpoints" / "last.ckpt"), "--data_dir", str(tree), "--tasks",
            "sst2", "--save_dir", str(tmp_path / "out"), "--trainer.accelerator", "gpu"]


@pytest.mark.parametrize("devices,one", [("1", True), ("0,", True), ("[1]", True), ("2", False), ("0,1", False),
                                         ("-1", False), ("auto", False)])
def test_glue_harness_runs_on_one_gpu_named_by_count_or_index(devices, one, glue_plan_args, monkeypatch):
    """The harness runs its tasks one after another in one process: one device (``1``, an index ``0,``, ``[1]``);
    several (or ``auto``/``-1``: all of a machine's GPUs) would rerun the whole loop on every DDP rank. Checked before
    any trainer is built, so this runs on a CPU with ``--trainer.accelerator gpu``."""
    from lit_lm.glue.plan import make_plan
    from lit_lm.glue.run import check_arguments

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["lit-lm"])
    plan = make_plan([*glue_plan_args, "--trainer.devices", devices])
    if one:
        check_arguments(plan)
    else:
        with pytest.raises(ValueError, match="one device"):
            check_arguments(plan)


@pytest.mark.parametrize("cuda", [True, False])
def test_glue_harness_empties_the_cuda_cache_between_runs(cuda, monkeypatch):
    from lit_lm.glue import run

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    run._free()
    assert len(emptied) == int(cuda)


# ---- torch.compile -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_fit_on_a_cpu(tmp_path, capfd, monkeypatch):
    """``--model.compile true`` through the quickstart on the CPU: two training steps through the compiled encoder
    (inductor builds C++ kernels: about a minute; validation's eval-mode graphs would double it, and the gpu tier runs
    them), the graph count said at the end, finite weights, and a checkpoint whose keys are the model's own, loading
    into an uncompiled module."""
    from lit_lm.pretraining import MLMPretraining

    out = _fit([*QUICK, "--model.compile=true", "--trainer.max_steps=2", "--trainer.limit_val_batches=0",
                "--trainer.log_every_n_steps=1",
                f"--trainer.logger.init_args.save_dir={tmp_path}", f"--data.cache_dir={tmp_path / 'cache'}"],
               capfd, monkeypatch)
    line = next((x for x in out.splitlines() if "torch.compile:" in x), None)
    assert line is not None and int(line.split("torch.compile:")[1].split()[0]) >= 1, out[-3000:]
    ckpt = _load(tmp_path / "quickstart" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert not [k for k in ckpt["state_dict"] if "_orig_mod" in k]
    state = ckpt["state_dict"]
    assert all(math.isfinite(float(v.float().abs().sum())) for v in state.values() if v.is_floating_point())
    eager = MLMPretraining(ckpt["hyper_parameters"]["config"], vocab_size=ckpt["bert_config"]["vocab_size"])
    eager.load_state_dict(state)  # strict: the same keys
