"""The general pretraining data module (data_modules.corpus) end to end on every format: carved splits, the
content-hash cache key, line_by_line, a mixture of sources with shares, bad input as one line, exact resume on a
JSONL corpus and the CLI on a folder of text. The readers themselves are tested in test_corpus_formats.py,
test_corpus_detection.py, test_corpus_content.py, test_wikitext_release.py and test_sentence_splitter.py."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from data_modules import corpus_cache
from data_modules.corpus import CorpusDataModule
from data_modules.corpus_formats import CorpusSource

REPO = Path(__file__).resolve().parents[2]
WORDS = ("river stone light paper garden window music winter horse table silver cloud market letter bridge forest "
         "doctor summer engine island").split()


def doc_text(i: int, n_sentences: int = 3) -> list[str]:
    """Document i: sentences of common words, the first naming the document (``docI``), so content tells it apart."""
    rng = np.random.default_rng(i)
    out = [f"Marker doc{i} opens this document."]
    for _ in range(n_sentences - 1):
        out.append(" ".join(rng.choice(WORDS, 8)).capitalize() + ".")
    return out


def write_corpus(root: Path, fmt: str, n_docs: int, column: str = "text") -> Path:
    """``n_docs`` documents in ``fmt`` under ``root`` (two files, so a folder is really read as one)."""
    root.mkdir(parents=True, exist_ok=True)
    docs = [" ".join(doc_text(i)) for i in range(n_docs)]
    halves = [docs[: n_docs // 2], docs[n_docs // 2:]]
    for k, part in enumerate(halves):
        if fmt == "text":
            (root / f"part{k}.txt").write_text("\n\n".join(part) + "\n", encoding="utf-8")
        elif fmt == "text_per_file":
            for j, d in enumerate(part):  # one document a file, its sentences on lines of their own
                (root / f"doc{k}_{j:03d}.txt").write_text(d.replace(". ", ".\n") + "\n", encoding="utf-8")
        elif fmt == "jsonl":
            (root / f"part{k}.jsonl").write_text("".join(json.dumps({column: d, "id": j}) + "\n"
                                                         for j, d in enumerate(part)), encoding="utf-8")
        elif fmt in ("csv", "tsv"):
            import csv

            with open(root / f"part{k}.{fmt}", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, delimiter="," if fmt == "csv" else "\t", quoting=csv.QUOTE_MINIMAL if fmt == "csv"
                               else csv.QUOTE_NONE, escapechar=None if fmt == "csv" else "\\")
                w.writerow(["id", column])
                w.writerows([j, d] for j, d in enumerate(part))
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"id": list(range(len(part))), column: part}), root / f"part{k}.parquet")
    return root


def make_dm(tmp_path: Path, data_dir, **kw) -> CorpusDataModule:
    kw = {"data_dir": None if data_dir is None else str(data_dir), "cache_dir": str(tmp_path / "cache"),
          "vocab_size": 200, "num_workers": 0, "batch_size": 4, "max_seq_len": 32, **kw}
    return CorpusDataModule(**kw)


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message, message
    return message


def documents_of(dm: CorpusDataModule, split: str, stem: str | None = None) -> list[str]:
    """The documents of a cached split, decoded (lower-cased, spaces removed: the tokenizer's normal form)."""
    cache = dm.cache_path()
    stem = stem or split
    ids, sent, art = (np.load(cache / f"{stem}.{k}.npy") for k in ("ids", "sent", "art"))
    tok = dm.tokenizer
    return [tok.decode(ids[sent[art[j]]:sent[art[j + 1]]].tolist()).replace(" ", "") for j in range(len(art) - 1)]


# ---- every format, end to end ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, kw", [
    ("text", {}), ("text_per_file", {"document_per_file": True}), ("jsonl", {}), ("csv", {"text_column": "body"}),
    ("tsv", {"text_column": "body"}), ("parquet", {}),
])
def test_every_format_trains(tmp_path, fmt, kw):
    root = write_corpus(tmp_path / fmt, fmt, 24, column=kw.get("text_column", "text"))
    dm = make_dm(tmp_path, root, val_fraction=0.1, **kw)
    dm.prepare_data()
    meta = json.loads((dm.cache_path() / "meta.json").read_text())
    assert dm.cache_path().name.startswith(("text-", "jsonl-", "csv-", "tsv-", "parquet-"))
    assert meta["sources"][0]["carved"] == ["validation", "test"]
    counts = meta["counts"]
    assert sum(counts[s]["articles"] for s in ("train", "validation", "test")) == 24  # every document, once
    assert all(counts[s]["articles"] >= 2 for s in ("validation", "test"))
    # every document has its three sentences (the readers split running text into sentences)
    assert sum(counts[s]["sentences"] for s in ("train", "validation", "test")) == 24 * 3
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape[1] <= 32
    assert (batch["input_ids"][:, 0] == dm.special.cls).all() and (batch["labels"] != -100).any()
    assert set(batch["next_sentence_label"].tolist()) <= {0, 1}
    assert len(next(iter(dm.val_dataloader()))["input_ids"]) >= 1


def test_split_files_are_used_not_carved(tmp_path):
    root = tmp_path / "named"
    write_corpus(tmp_path / "a", "jsonl", 8)
    root.mkdir()
    (tmp_path / "a/part0.jsonl").rename(root / "train.jsonl")
    (tmp_path / "a/part1.jsonl").rename(root / "valid.jsonl")
    dm = make_dm(tmp_path, root)
    dm.prepare_data()
    meta = json.loads((dm.cache_path() / "meta.json").read_text())
    assert meta["sources"][0]["carved"] == ["test"] and meta["counts"]["validation"]["articles"] == 4
    assert "carve" in meta["key"]  # the seed decides the test split: it is in the key
    assert make_dm(tmp_path, root, seed=7).cache_path() != dm.cache_path()


def test_packed_mlm_only(tmp_path):
    dm = make_dm(tmp_path, write_corpus(tmp_path / "j", "jsonl", 12), nsp=False)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert (batch["next_sentence_label"] == 0).all() and batch["input_ids"].shape[1] <= 32
    assert type(dm.datasets["train"]).__name__ == "PackedDataset"


# ---- carved splits --------------------------------------------------------------------------------------------------


def test_carved_splits_never_share_a_document_and_follow_the_seed(tmp_path):
    root = write_corpus(tmp_path / "t", "text", 60)
    splits = {}
    for seed in (1, 1, 2):
        dm = make_dm(tmp_path, root, seed=seed, val_fraction=0.1, cache_dir=str(tmp_path / f"cache{len(splits)}"))
        dm.prepare_data()
        dm.setup()
        docs = {s: documents_of(dm, s) for s in ("train", "validation", "test")}
        assert all(len(set(d)) == len(d) for d in docs.values())
        assert not (set(docs["train"]) & set(docs["validation"]) or set(docs["train"]) & set(docs["test"])
                    or set(docs["validation"]) & set(docs["test"]))
        assert sum(map(len, docs.values())) == 60
        assert all(any(f"doc{i}opens" in d for d in sum(docs.values(), [])) for i in range(60))
        splits.setdefault(seed, []).append(docs)
    assert splits[1][0] == splits[1][1]  # deterministic per seed...
    assert splits[1][0]["validation"] != splits[2][0]["validation"]  # ...and the seed decides


def test_a_few_dozen_documents_train_with_the_defaults(tmp_path, capsys):
    dm = CorpusDataModule(data_dir=str(write_corpus(tmp_path / "t", "text", 24)), cache_dir=str(tmp_path / "c"),
                          vocab_size=200, num_workers=0, batch_size=4)
    dm.prepare_data()
    counts = json.loads((dm.cache_path() / "meta.json").read_text())["counts"]
    assert counts["validation"]["articles"] == counts["test"]["articles"] == 2  # 1% of 24, raised to 2 each
    carved = [line for line in capsys.readouterr().err.splitlines() if "carved from train" in line]
    assert carved == ["[data] t: no validation or test split, carved from train by document (--data.val_fraction "
                      "0.01, seed 42): train 20 documents, validation 2 documents, test 2 documents"]
    dm.setup("fit")
    next(iter(dm.train_dataloader()))


def test_too_few_documents(tmp_path):
    root = write_corpus(tmp_path / "t", "text", 5)
    with pytest.raises(ValueError) as e:
        make_dm(tmp_path, root).prepare_data()
    assert one_line(e) == (f"2 files under {root}: 5 documents; carving validation and test from train needs at "
                           f"least 6 (2 for each of train, validation, test: NSP draws a random next sentence from "
                           f"another document); documents are separated by blank lines, or one per file with "
                           f"--data.document_per_file")
    assert list((tmp_path / "cache").iterdir()) == []


# ---- the cache key --------------------------------------------------------------------------------------------------


def test_editing_one_byte_rebuilds(tmp_path):
    root = write_corpus(tmp_path / "j", "jsonl", 12)
    dm = make_dm(tmp_path, root)
    dm.prepare_data()
    path = root / "part1.jsonl"
    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"Marker") + 1] = ord("A")  # same size...
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...same mtime
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    again = make_dm(tmp_path, root)
    assert again.cache_path() != dm.cache_path()
    again.prepare_data()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([dm.cache_path().name,
                                                                             again.cache_path().name])


def test_a_file_edited_during_the_build_is_an_error(tmp_path, monkeypatch):
    root = write_corpus(tmp_path / "j", "jsonl", 12)
    build = corpus_cache.build

    def build_then_edit(*a, **k):
        meta = build(*a, **k)
        with open(root / "part0.jsonl", "a") as f:
            f.write(json.dumps({"text": "A late addition."}) + "\n")
        return meta
    monkeypatch.setattr(corpus_cache, "build", build_then_edit)
    with pytest.raises(ValueError) as e:
        make_dm(tmp_path, root).prepare_data()
    assert one_line(e).startswith("j: part0.jsonl changed while the cache was being built")
    assert list((tmp_path / "cache").iterdir()) == []


# ---- line_by_line ---------------------------------------------------------------------------------------------------


def test_line_by_line(tmp_path):
    root = tmp_path / "lines"
    root.mkdir()
    lines = [f"Short text number {i} about the {WORDS[i % len(WORDS)]}. A second sentence." for i in range(30)]
    lines[3] = " ".join(WORDS * 5)  # longer than max_seq_len: truncated
    (root / "tweets.txt").write_text("\n".join(lines[:15]) + "\n\n\n" + "\n".join(lines[15:]) + "\n")
    dm = make_dm(tmp_path, root, line_by_line=True, nsp=False, val_fraction=0.1)
    dm.prepare_data()
    counts = json.loads((dm.cache_path() / "meta.json").read_text())["counts"]
    assert sum(c["sentences"] for c in counts.values()) == 30  # one sample a non-empty line, sentences not split
    assert sum(c["articles"] for c in counts.values()) == 30
    dm.setup("fit")
    ds = dm.datasets["train"]
    assert len(ds) == counts["train"]["sentences"]
    samples = [ds[(0, i)] for i in range(len(ds))]
    assert all(s["input_ids"][0] == dm.special.cls and s["input_ids"][-1] == dm.special.sep for s in samples)
    assert max(len(s["input_ids"]) for s in samples) == 32 and min(len(s["input_ids"]) for s in samples) < 32
    assert all((s["input_ids"] == dm.special.sep).sum() == 1 for s in samples)
    batch = next(iter(dm.train_dataloader()))
    assert (batch["next_sentence_label"] == 0).all()
    longest = int(batch["attention_mask"].sum(1).max())  # padded to the batch's longest, rounded up to a bucket
    assert batch["input_ids"].shape[1] == min(dm.max_seq_len, -(-longest // 32) * 32)


def test_line_by_line_refuses_nsp(tmp_path):
    with pytest.raises(ValueError, match=r"^--data\.line_by_line true: .*add --model\.nsp false") as e:
        make_dm(tmp_path, tmp_path, line_by_line=True)
    one_line(e)


# ---- several sources ------------------------------------------------------------------------------------------------


def test_mixture_follows_the_shares(tmp_path, capsys):
    a = write_corpus(tmp_path / "wiki", "text", 40)
    b = write_corpus(tmp_path / "notes", "jsonl", 10)
    sources = [CorpusSource(path=str(a), share=0.25), CorpusSource(path=str(b), share=0.75, name="notes")]
    dm = make_dm(tmp_path, None, sources=sources, nsp=False, val_fraction=0.1)
    dm.prepare_data()
    assert dm.cache_path().name.startswith("mixture-")
    dm.setup("fit")
    ds = dm.datasets["train"]
    sizes = [len(p) for p in ds.datasets]
    counts = Counter(ds.sources([i for _, i in dm.train_dataloader().sampler]).tolist())
    assert sum(counts.values()) == len(ds) == sum(sizes)  # an epoch keeps the sources' total size...
    assert abs(counts[0] - 0.25 * len(ds)) <= 1 and abs(counts[1] - 0.75 * len(ds)) <= 1  # ...split by the shares
    assert counts[1] > sizes[1]  # the small source is repeated
    (line,) = [l for l in capsys.readouterr().err.splitlines() if "mixture of" in l]
    assert line.startswith(f"[data] mixture of 2 sources, {len(ds):,} training samples an epoch: wiki 25.")
    # validation combines both sources
    val_docs = documents_of(dm, "validation", "source0.validation") + documents_of(dm, "validation",
                                                                                 "source1.validation")
    assert len(dm.datasets["validation"]) >= 2 and len(val_docs) >= 4
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4
    assert batch["source"].tolist() == ds.sources(batch["index"].numpy()).tolist()  # what per-source metrics group by
    # a mixture's hyper-parameters are plain values (checkpoints are read with weights_only=True)
    assert dm.hparams["sources"][1]["name"] == "notes"


def test_two_sources_of_one_name_are_a_one_line_error(tmp_path):
    """Their validation metrics (val/<name>/mlm_acc) would share one curve: named before anything is built."""
    a, b = write_corpus(tmp_path / "x" / "corpus", "text", 10), write_corpus(tmp_path / "y" / "corpus", "jsonl", 10)
    dm = make_dm(tmp_path, None, sources=[CorpusSource(path=str(a)), CorpusSource(path=str(b))], nsp=False)
    with pytest.raises(ValueError) as e:
        dm.prepare_data()
    assert one_line(e) == ("--data.sources[1]: named 'corpus' like --data.sources[0]; give it a name of its own "
                           "(--data.sources[1].name), the label of its validation metrics")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_mixture_without_shares_is_the_concatenation(tmp_path):
    from data_modules.mixture import mixture_counts

    assert mixture_counts([30, 10], [None, None]) == [30, 10]
    assert mixture_counts([30, 10], [1.0, 1.0]) == [20, 20]
    assert mixture_counts([30, 10], [None, 0.75]) == [10, 30]  # the source without a share takes the rest
    assert mixture_counts([30, 10, 20], [0.5, None, None]) == [30, 10, 20]  # the rest split by size
    assert sum(mixture_counts([7, 5, 3], [0.2, 0.3, 0.5])) == 15
    with pytest.raises(ValueError, match=r"--data\.sources: the shares given sum to 1\.2, leaving nothing"):
        make_dm(tmp_path, None, sources=[CorpusSource(path="a", share=1.2), CorpusSource(path="b")])


# ---- bad input reaches the user as one line, with nothing left in the cache ---------------------------------------


def _binary_in_folder(tmp_path):
    root = write_corpus(tmp_path / "t", "text", 12)
    (root / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    return root, {}, r"image\.txt:1: invalid UTF-8 at byte 0 .*it looks binary"


def _jsonl_not_json(tmp_path):
    root = write_corpus(tmp_path / "j", "jsonl", 12)
    with open(root / "part1.jsonl", "a") as f:
        f.write("{not json}\n")
    return root, {}, r"part1\.jsonl:7: not JSON"


def _csv_column_missing(tmp_path):
    return write_corpus(tmp_path / "c", "csv", 12), {"text_column": "body"}, r"part0\.csv:1: no column 'body'"


def _parquet_not_text(tmp_path):
    return write_corpus(tmp_path / "p", "parquet", 12), {"text_column": "id"}, r"column 'id' is of type int64"


def _empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty", {}, r"--data\.data_dir .*empty: empty folder"


def _glob_matches_nothing(tmp_path):
    return str(tmp_path / "nowhere" / "*.jsonl"), {}, r"the glob matches no file"


@pytest.mark.parametrize("case", [_binary_in_folder, _jsonl_not_json, _csv_column_missing, _parquet_not_text,
                                  _empty_folder, _glob_matches_nothing])
def test_bad_input_is_one_line_and_leaves_no_cache(tmp_path, case):
    root, kw, match = case(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=match) as e:
        make_dm(tmp_path, root, **kw).prepare_data()
    one_line(e)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


# ---- the command line -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_on_a_text_folder(tmp_path, capfd, monkeypatch):
    from one_line import run_main

    root = write_corpus(tmp_path / "my_texts", "text", 24)
    code, out = run_main(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml",
                          f"--data.data_dir={root}", f"--data.cache_dir={tmp_path / 'cache'}", "--data.vocab_size=300",
                          "--trainer.max_steps=3", "--data.batch_size=4", "--data.num_workers=0",
                          "--trainer.val_check_interval=3", "--trainer.limit_val_batches=1",
                          f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.enable_progress_bar=false"],
                         capfd, monkeypatch)
    assert code == 0, out
    assert "carved from train by document" in out
    assert list((tmp_path / "quickstart/checkpoints").glob("*.ckpt"))


@pytest.mark.parametrize("case", ["binary file", "unknown format"])
def test_cli_bad_corpus_is_one_line(tmp_path, capfd, monkeypatch, case):
    from one_line import cli_error

    root, args, needles = write_corpus(tmp_path / "t", "text", 12), [], ()
    if case == "binary file":
        (root / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
        needles = (f"{root / 'image.txt'}:1: invalid UTF-8", "looks binary")
    else:
        args, needles = ["--data.format=docx"], ("--data.format='docx': expected one of wikitext, text, jsonl",)
    cli_error(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", f"--data.data_dir={root}", *args,
               f"--data.cache_dir={tmp_path / 'cache'}", "--trainer.max_steps=1",
               f"--trainer.logger.init_args.save_dir={tmp_path}"], capfd, monkeypatch, *needles)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_cli_line_by_line_needs_nsp_off(tmp_path, capfd, monkeypatch):
    from one_line import cli_error

    cli_error(["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", f"--data.data_dir={tmp_path}",
               "--data.line_by_line=true", f"--data.cache_dir={tmp_path}", "--trainer.max_steps=1",
               f"--trainer.logger.init_args.save_dir={tmp_path}"],
              capfd, monkeypatch, "--data.line_by_line true", "--model.nsp false")


# ---- exact resume on a JSONL corpus ---------------------------------------------------------------------------------


class _Record(L.Callback):
    """Every training batch's step, epoch, sample ids and a digest of input_ids + labels (the masks)."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import hashlib

        h = hashlib.sha256(batch["input_ids"].numpy().tobytes() + batch["labels"].numpy().tobytes()).hexdigest()
        self.records.append({"step": trainer.global_step, "epoch": trainer.current_epoch,
                             "index": batch["index"].tolist(), "digest": h[:16],
                             "rng": hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16]})


class _CrashAt(L.Callback):
    """Dies at the start of training step ``step``: no checkpoint after the last periodic one."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def _fit(tmp: Path, corpus: Path, run: str, crash_at: int | None = None, ckpt_path: str | None = None) -> _Record:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lit_lm.pretraining import MLMPretraining

    L.seed_everything(42, verbose=False)
    dm = CorpusDataModule(data_dir=str(corpus), cache_dir=str(tmp / "cache"), vocab_size=300, batch_size=4,
                          num_workers=0, max_seq_len=32)
    model = MLMPretraining(config="tiny", vocab_size=300, lr=1e-3, warmup_steps=2, plateau_check=None)
    record = _Record()
    callbacks = [ModelCheckpoint(dirpath=tmp / run, every_n_train_steps=3, save_last=True, save_top_k=-1), record]
    if crash_at is not None:
        callbacks.append(_CrashAt(crash_at))
    trainer = L.Trainer(max_steps=9, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks, limit_val_batches=1,
                        use_distributed_sampler=False, num_sanity_val_steps=0)
    try:
        trainer.fit(model, dm, ckpt_path=ckpt_path)
    except RuntimeError as e:
        assert crash_at is not None and "simulated crash" in str(e)
    return record


@pytest.mark.slow
def test_exact_resume_on_a_jsonl_corpus(tmp_path):
    corpus = write_corpus(tmp_path / "notes", "jsonl", 16)
    full = _fit(tmp_path, corpus, "full").records
    crashed = _fit(tmp_path, corpus, "crashed", crash_at=7).records
    assert crashed == full[:8]
    resumed = _fit(tmp_path, corpus, "crashed", ckpt_path=str(tmp_path / "crashed" / "last.ckpt")).records
    assert [r["step"] for r in full] == list(range(9)) and len({r["epoch"] for r in full}) > 1  # crosses epochs
    assert [r["step"] for r in resumed] == list(range(6, 9))  # from the checkpoint at step 6, mid-epoch
    assert resumed == full[6:]  # same samples, masks and dropout RNG
    a = torch.load(tmp_path / "full" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "crashed" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 9
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["CorpusDataModule"] == b["CorpusDataModule"]


def test_a_checkpoint_without_this_modules_state_is_said(tmp_path, capsys):
    """A run begun under WikiText103DataModule and resumed under CorpusDataModule (cli.yaml's class since the data
    module became general): Lightning hands over no state, and the data module says so instead of starting over
    silently."""
    from types import SimpleNamespace

    dm = make_dm(tmp_path, write_corpus(tmp_path / "j", "jsonl", 12))
    dm.prepare_data()
    dm.setup("fit")
    dm.trainer = SimpleNamespace(ckpt_path="runs/last.ckpt", is_global_zero=True)
    capsys.readouterr()
    dm.train_dataloader()
    dm.train_dataloader()
    assert capsys.readouterr().err.splitlines() == [
        "[data] runs/last.ckpt holds no CorpusDataModule state (written by another data module class?): the training "
        "data starts its epoch over; resume with that class (--data.class_path) to continue exactly where it stopped"]
    dm.load_state_dict({})  # the state came (a checkpoint of this class): nothing to say
    dm._state_loaded = True
    dm.train_dataloader()
    assert capsys.readouterr().err == ""


def test_source_paths_into_the_package_resolve_from_any_directory(tmp_path, monkeypatch):
    """A bundled-sample path in --data.sources finds the installed copy from outside the checkout, as --data.data_dir
    does (data_modules.resources.find)."""
    monkeypatch.chdir(tmp_path)
    dm = CorpusDataModule(sources=[{"path": "data_modules/samples/wikitext", "share": 0.5},
                                   {"path": "data_modules/samples/wikitext", "share": 0.5}],
                          cache_dir=str(tmp_path / "cache"))
    assert all(Path(s.path).is_dir() and Path(s.path).is_absolute() for s in dm.sources)
