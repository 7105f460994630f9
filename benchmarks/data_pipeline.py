"""Preprocessing throughput and peak memory: lit-lm's WikiText cache build against the HuggingFace run_mlm.py recipe.

Ours: ``WikiText103DataModule.prepare_data()`` on a WikiText release directory: read, split articles and
sentences, detokenize, train the WordPiece tokenizer (on ``--sample-bytes`` of train, timed apart), tokenize every
split and write the memory-mapped cache. HF: what run_mlm.py does with the same fast tokenizer
(``PreTrainedTokenizerFast`` around the tokenizer.json ours trained): ``load_dataset("text", data_files=...)`` then
``map(tokenize, batched=True, num_proc=N)`` into the datasets cache (its ``group_texts`` step is not counted).

Every case runs in a child process that reports its own peak RSS (``RUSAGE_SELF``, plus ``RUSAGE_CHILDREN`` for
the map workers), so the figures do not include this driver. MB/s counts the bytes of the three release files;
tokens/s counts the tokens written (ours: sentence ids, no special tokens; HF: ids per line, [CLS]/[SEP] included).

    python benchmarks/data_pipeline.py                         # WikiText-2 (ours, ours sentence-by-sentence, HF)
    python benchmarks/data_pipeline.py --big-mb 540            # + a 540 MB corpus (wikitext-2 train repeated)
    python benchmarks/data_pipeline.py --big-mb 540 --hf-big   # + the HF recipe on it (slow)

The big corpus is written to a temporary directory and deleted afterwards. Plain copies keep WikiText-2's vocabulary
(33k distinct words); ``--distinct-words 270000`` respells words per copy so it has about WikiText-103's ~270k, and
``--sample-bytes 0`` trains the tokenizer on all of train, as cli.yaml does. The raw output (command, machine, date,
table) is also written to ``--out`` (benchmarks/results/data_pipeline-<date>.txt).

A plain-text folder (any corpus, ``CorpusDataModule``): ``--text-folder-mb N`` writes about N MB of running text
(WikiText-2's train articles detokenised: `` @-@ `` rejoined, punctuation and clitics attached to their words,
``<unk>`` dropped, sub-headings dropped), one paragraph a line, documents separated by blank lines, in files of about
4 MB, with ``--distinct-words`` respelling as above; then ``CorpusDataModule(data_dir=folder).prepare_data()``:
format detected, validation and test carved from train (``val_fraction``), the tokenizer trained on all of train
unless ``--sample-bytes`` says otherwise. It reports MB/s over the folder's bytes, the time split (``Corpus.identity()``
on the folder timed on its own; tokenizer training, encoding and baselines from meta.json; the rest of prepare_data,
mostly hashing every file before and after the build) and peak RSS; with ``--big-mb`` in the same run, the WikiText
path's figures per byte beside it.

    python benchmarks/data_pipeline.py --no-wikitext-2 --text-folder-mb 10    # a quick check
    python benchmarks/data_pipeline.py --no-wikitext-2 --big-mb 1000 --text-folder-mb 1000 --distinct-words 270000 \
        --sample-bytes 0                                                          # 1 GB, beside the WikiText path
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import string
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from report import default_out, tee  # noqa: E402  (benchmarks/report.py, beside this script)

FILES = ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024  # Linux: KiB


# ---------------------------------------------------------------------------------------------------------------------
# children: one measurement each, printed as one JSON line


def child_ours(data_dir: str, cache_dir: str, vocab_size: int, sample_bytes: int | None, sentence_path: bool) -> dict:
    import data_modules.wikitext as wt
    from data_modules.encoding import SentenceEncoder

    if sentence_path:  # the pre-optimisation path: encode_batch over every sentence
        init = SentenceEncoder.__init__

        def sentence_level(self, tok):
            init(self, tok)
            self.word_level = False
        SentenceEncoder.__init__ = sentence_level
    t = time.perf_counter()
    dm = wt.WikiText103DataModule(data_dir=data_dir, cache_dir=cache_dir, vocab_size=vocab_size,
                                  tokenizer_sample_bytes=sample_bytes)
    dm.prepare_data()
    wall = time.perf_counter() - t
    meta = json.loads((dm.cache_path() / "meta.json").read_text())
    tokens = sum(c["tokens"] for c in meta["counts"].values())
    return {"wall_s": wall, "tokenizer_s": meta["timings"]["tokenizer_s"], "tokens": tokens,
            "cache": str(dm.cache_path()), "rss_mb": _peak_rss_mb(), "timings": meta["timings"]}


def child_text(folder: str, cache_dir: str, vocab_size: int, sample_bytes: int | None) -> dict:
    from data_modules.corpus import CorpusDataModule
    from data_modules.corpus_detection import open_corpus
    from data_modules.corpus_formats import CorpusSource

    t = time.perf_counter()  # the content hash on its own (prepare_data takes it twice: before and after the build)
    corpus = open_corpus(CorpusSource(path=folder))
    corpus.identity()
    identity_s = time.perf_counter() - t
    t = time.perf_counter()
    dm = CorpusDataModule(data_dir=folder, cache_dir=cache_dir, vocab_size=vocab_size,
                          tokenizer_sample_bytes=sample_bytes)
    dm.prepare_data()
    wall = time.perf_counter() - t
    meta = json.loads((dm.cache_path() / "meta.json").read_text())
    return {"wall_s": wall, "tokenizer_s": meta["timings"]["tokenizer_s"], "timings": meta["timings"],
            "identity_s": identity_s, "format": corpus.format, "files": len(corpus.files),
            "tokens": sum(c["tokens"] for c in meta["counts"].values()),
            "documents": {k: c["articles"] for k, c in meta["counts"].items()}, "rss_mb": _peak_rss_mb()}


def child_hf(data_dir: str, tokenizer_json: str, cache_dir: str, num_proc: int | None) -> dict:
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets
    from transformers import PreTrainedTokenizerFast

    datasets.disable_progress_bars()
    t = time.perf_counter()
    tok = PreTrainedTokenizerFast(tokenizer_file=tokenizer_json, unk_token="[UNK]", sep_token="[SEP]",
                                  pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    files = {"train": f"{data_dir}/{FILES[0]}", "validation": f"{data_dir}/{FILES[1]}", "test": f"{data_dir}/{FILES[2]}"}
    raw = datasets.load_dataset("text", data_files=files, cache_dir=cache_dir)

    def tokenize(batch):  # run_mlm.py, not line_by_line
        return tok(batch["text"], return_special_tokens_mask=True)
    out = raw.map(tokenize, batched=True, num_proc=num_proc, remove_columns=["text"])
    wall = time.perf_counter() - t
    tokens = 0
    for split in out.values():  # counted after the clock stops
        for batch in split.with_format("numpy").iter(batch_size=100_000):
            tokens += sum(len(x) for x in batch["input_ids"])
    return {"wall_s": wall, "tokenizer_s": 0.0, "tokens": tokens, "rss_mb": _peak_rss_mb()}


# ---------------------------------------------------------------------------------------------------------------------
# driver


def run_child(*args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cipher(copy: int) -> dict[int, int]:
    """A letter substitution of its own for each copy (a-z and A-Z alike), as str.translate takes it."""
    letters = list(string.ascii_lowercase)
    random.Random(copy).shuffle(letters)
    table = dict(zip(map(ord, string.ascii_lowercase), map(ord, letters)))
    table.update(zip(map(ord, string.ascii_uppercase), map(ord, "".join(letters).upper())))
    return table


def _respelling(words: list[str], copy: int, share: float) -> dict[str, str]:
    """word -> its respelling in ``copy`` (copy's letter cipher), for the ``share`` of ``words`` a hash picks."""
    table = _cipher(copy)
    return {w: w.translate(table) for w in words if zlib.crc32(f"{copy}:{w}".encode()) < share * 2**32}


def make_big_corpus(src: Path, dst: Path, mb: int, distinct_words: int = 0) -> int:
    """train = src's train file repeated to about ``mb`` MB; valid and test copied. With ``distinct_words``, each
    copy after the first respells a share of the word types (a letter cipher per copy, the types chosen by a hash),
    so the corpus holds about that many distinct words, as a real corpus of that size does, instead of the
    source's. Returns the number of distinct words of the big train file."""
    dst.mkdir(parents=True)
    train = (src / FILES[0]).read_text(encoding="utf-8")
    copies = max(1, round(mb * 1e6 / len(train.encode("utf-8"))))
    lines = train.split("\n")
    types = sorted({w for line in lines for w in line.split(" ") if w})
    words = [w for w in types if w.isalpha()]  # headings' "=", "@-@", "<unk>" and numbers stay as they are
    share = 0.0 if not distinct_words or copies == 1 else max(0.0, distinct_words - len(types)) / ((copies - 1) * len(words))
    n_distinct = len(types)
    with open(dst / FILES[0], "w", encoding="utf-8") as f:
        for copy in range(copies):
            if copy == 0 or share == 0.0:
                f.write(train)
                continue
            respelled = _respelling(words, copy, share)
            n_distinct += len(set(respelled.values()) - set(types))  # near enough: ciphers rarely collide
            f.write("\n".join(" ".join(respelled.get(w, w) for w in line.split(" ")) for line in lines))
    for name in FILES[1:]:
        shutil.copy(src / name, dst / name)
    return n_distinct


_DETOK = [(re.compile(p), r) for p, r in [
    (r"\s*<unk>", ""),                      # WikiText's out-of-vocabulary marker: no such thing in text
    (r"(\w)n 't\b", r"\1n't"),              # doesn 't -> doesn't
    (r" '(s|re|m|ve|ll|d)\b", r"'\1"),      # game 's -> game's
    (r"s ' ", "s' "),                       # games ' method -> games' method
    (r'" ([^"]*?) "', r'"\1"'),             # " Nameless " -> "Nameless"
    (r" ([.,;:!?%)\]}])", r"\1"),           # closing punctuation onto the word before
    (r"([(\[{$]) ", r"\1"),                 # opening brackets onto the word after
]]


def running_text(paragraph: str) -> str:
    """A WikiText paragraph (space-separated tokens) as ordinary running text."""
    from data_modules.wikitext_release import detokenize

    p = detokenize(paragraph)
    for pattern, repl in _DETOK:
        p = pattern.sub(repl, p)
    return " ".join(p.split())


def make_text_folder(src: Path, dst: Path, mb: int, distinct_words: int = 0, file_mb: float = 4.0) -> tuple[int, int]:
    """About ``mb`` MB of plain-text documents in ``dst``: src's train articles as running text (one paragraph a
    line, sub-headings dropped), articles separated by blank lines, repeated (the last copy cut at an article) and
    respelled per copy as ``make_big_corpus`` does, in files of about ``file_mb`` MB ending at an article. Returns
    (distinct words (letter runs) in the folder, files written)."""
    from data_modules.wikitext_release import read_release_lines, split_articles

    dst.mkdir(parents=True)
    articles = ["\n".join(t for t in map(running_text, a.paragraphs) if t)
                for a in split_articles(read_release_lines(src / FILES[0]))]
    text = "\n\n".join(a for a in articles if a) + "\n\n"
    parts = re.split(r"([^\W\d_]+)", text)  # odd indices: the words (letter runs), respelled per copy
    words = sorted(set(parts[1::2]))
    target = int(mb * 1e6)
    copies = max(1, -(-target // len(text.encode("utf-8"))))
    share = (0.0 if not distinct_words or copies == 1
             else max(0.0, distinct_words - len(words)) / ((copies - 1) * len(words)))
    n_distinct, written, n_files = len(words), 0, 0
    for copy in range(copies):
        respelled = _respelling(words, copy, share) if copy and share else {}
        n_distinct += len(set(respelled.values()) - set(words))  # near enough: ciphers rarely collide
        data = "".join(map(respelled.get, parts, parts)).encode("utf-8") if respelled else text.encode("utf-8")
        if written + len(data) > target:  # the last copy: cut after the article that reaches the target
            cut = data.find(b"\n\n", target - written)
            data = data if cut < 0 else data[:cut + 2]
        start = 0
        while start < len(data):  # files of about file_mb MB, each ending at an article
            cut = data.find(b"\n\n", start + int(file_mb * 1e6))
            end = len(data) if cut < 0 else cut + 2
            (dst / f"part-{n_files:05d}.txt").write_bytes(data[start:end])
            n_files, written, start = n_files + 1, written + end - start, end
        if written >= target:
            break
    return n_distinct, n_files


def folder_mb(d: Path) -> float:
    return sum(p.stat().st_size for p in d.iterdir()) / 1e6


def corpus_mb(d: Path) -> float:
    return sum((d / n).stat().st_size for n in FILES) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "wikitext-2"))
    p.add_argument("--vocab-size", type=int, default=30522)
    p.add_argument("--sample-bytes", type=int, default=None,
                   help="tokenizer training sample (bytes of train); 0: all of train, as cli.yaml trains it "
                        "(default: 20 MB for the WikiText cases, all of train for --text-folder-mb)")
    p.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="HF map num_proc values (1 = no pool)")
    p.add_argument("--big-mb", type=int, default=0, help="also build a corpus of about this many MB (0: skip)")
    p.add_argument("--hf-big", action="store_true", help="run the HF recipe on the big corpus too")
    p.add_argument("--distinct-words", type=int, default=0,
                   help="respell words per copy so the big corpus and the text folder have about this many distinct words "
                        "(WikiText-103: ~270,000; 0: plain copies, WikiText-2's 33k)")
    p.add_argument("--out", default=default_out("data_pipeline"), help="the raw output goes here too")
    p.add_argument("--no-sentence-path", action="store_true", help="skip the sentence-by-sentence run of ours")
    p.add_argument("--no-wikitext-2", action="store_true",
                   help="skip the cases on the --data-dir release itself (ours, sentence-by-sentence, HF); it is "
                        "still the source of --big-mb and --text-folder-mb")
    p.add_argument("--text-folder-mb", type=int, default=0,
                   help="also preprocess a folder of about this many MB of plain-text documents with "
                        "CorpusDataModule (0: skip)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "ours":
            out = child_ours(rest[0], rest[1], int(rest[2]), int(rest[3]) or None, rest[4] == "1")
        elif kind == "text":
            out = child_text(rest[0], rest[1], int(rest[2]), int(rest[3]) or None)
        else:
            out = child_hf(rest[0], rest[1], rest[2], None if rest[3] == "1" else int(rest[3]))
        print(json.dumps(out))
        return

    with tee(args.out):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    text_sample = args.sample_bytes or 0  # the text folder: all of train unless --sample-bytes names a sample
    if args.sample_bytes is None:
        args.sample_bytes = 20_000_000  # the WikiText cases' default, as before
    rows, text = [], None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lit-lm-bench-") as tmp:
        tmp = Path(tmp)
        corpora = [] if args.no_wikitext_2 else [("wikitext-2", Path(args.data_dir))]
        distinct = None
        if args.big_mb:
            distinct = make_big_corpus(Path(args.data_dir), tmp / "big", args.big_mb, args.distinct_words)
            corpora.append((f"{corpus_mb(tmp / 'big'):.0f} MB", tmp / "big"))
        for name, d in corpora:
            mb, big = corpus_mb(d), d != Path(args.data_dir)
            cache = tmp / f"cache-{len(rows)}"
            ours = run_child("ours", str(d), str(cache), str(args.vocab_size), str(args.sample_bytes), "0")
            rows.append((name, mb, "lit-lm", ours))
            print(_row(*rows[-1]), file=sys.stderr, flush=True)
            if not big and not args.no_sentence_path:
                r = run_child("ours", str(d), str(tmp / f"cache-s{len(rows)}"), str(args.vocab_size),
                              str(args.sample_bytes), "1")
                rows.append((name, mb, "lit-lm sentence-by-sentence", r))
                print(_row(*rows[-1]), file=sys.stderr, flush=True)
            if not big or args.hf_big:
                for n in args.num_proc:
                    hf = run_child("hf", str(d), f"{ours['cache']}/tokenizer.json", str(tmp / f"hf-{len(rows)}"), str(n))
                    rows.append((name, mb, f"HF map num_proc={n}", hf))
                    print(_row(*rows[-1]), file=sys.stderr, flush=True)
            shutil.rmtree(cache, ignore_errors=True)
        if args.text_folder_mb:
            t = time.perf_counter()
            words, files = make_text_folder(Path(args.data_dir), tmp / "text", args.text_folder_mb, args.distinct_words)
            made_s = time.perf_counter() - t
            mb = folder_mb(tmp / "text")
            print(f"text folder: {mb:.0f} MB in {files} files, {words:,} distinct words, written in {made_s:.0f} s",
                  file=sys.stderr, flush=True)
            r = run_child("text", str(tmp / "text"), str(tmp / "cache-text"), str(args.vocab_size), str(text_sample))
            text = (f"{mb:.0f} MB text folder", mb, words, files, r)
            shutil.rmtree(tmp / "cache-text", ignore_errors=True)
    load_after = os.getloadavg()

    sample = f"the first {args.sample_bytes / 1e6:.0f} MB of train" if args.sample_bytes else "all of train"
    print(f"\nload average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          + (f"tokenizer trained on {sample}, " if rows else "") + f"vocab {args.vocab_size}"
          + (f"; big corpus: {distinct:,} distinct words" if distinct is not None else ""))
    if rows:
        print("\n| corpus | pipeline | tokenize+write s | MB/s | tokens | tokens/s | tokenizer training s | peak RSS MB | HF time / ours |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, mb, who, r in rows:
            ours = next(x for n, _, w, x in rows if n == name and w == "lit-lm")
            print(_row(name, mb, who, r, ratio=_work_s(r) / _work_s(ours)))
    if text is not None:
        _text_report(args, text, text_sample, rows)


def _text_report(args: argparse.Namespace, text: tuple, text_sample: int, rows: list) -> None:
    """The text folder's table, the WikiText path's big corpus (when run) beside it, per byte."""
    name, mb, words, files, r = text
    doc = r["documents"]
    sample = f"the first {text_sample / 1e6:.0f} MB of train" if text_sample else "all of train"
    print(f"\ntext folder ({r['format']} detected): {mb:.0f} MB in {files} files, {words:,} distinct words; "
          f"documents train {doc['train']:,}, validation {doc['validation']:,}, test {doc['test']:,} (carved, "
          f"val_fraction 0.01); tokenizer trained on {sample}; Corpus.identity() (sha256 of every file, page cache "
          f"warm): {r['identity_s']:.2f} s, {mb / r['identity_s']:.0f} MB/s")
    big = next(((n, m, x) for n, m, w, x in rows if w == "lit-lm" and n != "wikitext-2"), None)
    print("\n| corpus | pipeline | total s | MB/s | s per GB | tokens | tokens/s | tokenizer training s | encoding s | "
          "baselines s | rest s (hashing, opening) | tokenize+write MB/s | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(_text_row(name, mb, "lit-lm CorpusDataModule", r))
    if big is None:
        print("\n(the WikiText path's figure on the same bytes: add --big-mb "
              f"{args.text_folder_mb} to the same run)")
        return
    print(_text_row(big[0] + " (WikiText path)", big[1], "lit-lm", big[2]))
    per_byte = (r["wall_s"] / mb) / (big[2]["wall_s"] / big[1])
    work = (_work_s(r) / mb) / (_work_s(big[2]) / big[1])
    print(f"\ntext folder / WikiText path, seconds per byte: {per_byte:.2f} end to end, {work:.2f} tokenize+write "
          f"(<= 1.00: within the WikiText path's speed per byte)")


def _text_row(name: str, mb: float, who: str, r: dict) -> str:
    t = r["timings"]
    encode = sum(v for k, v in t.items() if k.endswith("encode_s"))
    rest = r["wall_s"] - t["total_s"]
    return (f"| {name} | {who} | {r['wall_s']:.1f} | {mb / r['wall_s']:.2f} | {r['wall_s'] / mb * 1000:.0f} | "
            f"{r['tokens']:,} | {r['tokens'] / r['wall_s']:,.0f} | {t['tokenizer_s']:.1f} | {encode:.1f} | "
            f"{t.get('baselines_s', 0.0):.1f} | {rest:.1f} | {mb / _work_s(r):.2f} | {r['rss_mb']:.0f} |")


def _work_s(r: dict) -> float:
    return r["wall_s"] - r["tokenizer_s"]


def _row(name: str, mb: float, who: str, r: dict, ratio: float | None = None) -> str:
    s = _work_s(r)
    return (f"| {name} | {who} | {s:.1f} | {mb / s:.2f} | {r['tokens']:,} | {r['tokens'] / s:,.0f} | "
            f"{r['tokenizer_s']:.1f} | {r['rss_mb']:.0f} | {'' if ratio is None else f'{ratio:.2f}'} |")


if __name__ == "__main__":
    main()
