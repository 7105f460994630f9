import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data_modules.wikitext import SAMPLE_DIR, WikiText103DataModule
from data_modules.wikitext_release import (Article, article_sentences, detokenize, read_release_lines, split_articles,
                                           split_sentences)

# ---- pure text functions --------------------------------------------------------------------------------------------


def test_split_articles_exact():
    lines = [" ", " = First = ", " ", " Para one . ", " ", " = = Section = = ", " ", " Para two . ",
             " = = = Deeper = = = ", "", " Para three . ", " ", " = Empty = ", " ", " = Second = ", " ", " Only para . ",
             " = Legend ; A = ", " Not a heading : no blank line follows . ", " ", " = Last = "]
    assert list(split_articles(lines)) == [
        Article("First", ["Para one .", "Para two .", "Para three ."]),
        Article("Second", ["Only para .", "= Legend ; A =", "Not a heading : no blank line follows ."]),
    ]
    assert list(split_articles([" text before any heading . ", " = T = ", " ", " x "])) == [
        Article("", ["text before any heading ."]), Article("T", ["x"])]
    assert list(split_articles([" ", " "])) == []


def test_detokenize_exact():
    assert detokenize("a well @-@ known 1 @,@ 000 km , 3 @.@ 5 m") == "a well-known 1,000 km , 3.5 m"
    assert detokenize("no @ markers here") == "no @ markers here"


def test_split_sentences_exact():
    assert split_sentences("It is big . It is red ! Is it ? Yes .") == ["It is big .", "It is red !", "Is it ?", "Yes ."]
    assert split_sentences('H. gammarus is 3.5 cm long . " Quote " ends') == ["H. gammarus is 3.5 cm long .", '" Quote " ends']
    assert split_sentences("no end mark") == ["no end mark"]
    assert split_sentences("  spaced   out .  ") == ["spaced out ."]
    assert split_sentences("") == []


def test_article_sentences_replaces_unk_and_detokenizes():
    art = Article("T", ["A <unk> of 1 @.@ 5 m . Next one .", "New para ."])
    assert article_sentences(art) == ["A [UNK] of 1.5 m .", "Next one .", "New para ."]
    assert article_sentences(art, detok=False)[0] == "A [UNK] of 1 @.@ 5 m ."


def test_read_lines_crlf_bom(tmp_path):
    p = tmp_path / "f.tokens"
    p.write_bytes("\ufeff = T = \r\n \r\n text é . \r\n".encode())
    assert list(read_release_lines(p)) == [" = T = ", " ", " text é . "]
    assert list(split_articles(read_release_lines(p))) == [Article("T", ["text é ."])]


def test_read_lines_invalid_utf8_and_nul(tmp_path):
    bad = tmp_path / "bad.tokens"
    bad.write_bytes(b" = T = \n ok \n caf\xe9 \n")
    with pytest.raises(ValueError, match=r"bad.tokens:3: invalid UTF-8"):
        list(read_release_lines(bad))
    nul = tmp_path / "nul.tokens"
    nul.write_bytes(b" = T = \n a\x00b \n")
    with pytest.raises(ValueError, match=r"nul.tokens:2: NUL byte"):
        list(read_release_lines(nul))


def test_sample_corpus_is_in_release_layout():
    for split in ("train", "valid", "test"):
        raw = (SAMPLE_DIR / f"wiki.{split}.tokens").read_bytes()
        lines = raw.decode("utf-8").split("\n")
        assert lines[-1] == "" and all(l.startswith(" ") and l.endswith(" ") for l in lines[:-1])
        n_art = len(list(split_articles(lines)))
        assert n_art >= (60 if split == "train" else 5)
    assert sum(f.stat().st_size for f in SAMPLE_DIR.iterdir()) < 1_000_000


# ---- the data module on the bundled sample --------------------------------------------------------------------------


def make_dm(tmp_path, **kw):
    kw = {"data_dir": str(SAMPLE_DIR), "cache_dir": str(tmp_path / "cache"), "vocab_size": 800, "num_workers": 0,
          "batch_size": 8, **kw}
    return WikiText103DataModule(**kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wt")
    dm = make_dm(tmp)
    dm.prepare_data()
    return tmp, dm


def test_cache_layout_and_tokenizer_round_trip(built):
    tmp, dm = built
    cache = dm.cache_path()
    assert cache.name.startswith("wikitext-") and len(cache.name) == len("wikitext-") + 12
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["vocab_size_reached"] <= 800 and meta["counts"]["train"]["articles"] >= 60
    for split in ("train", "validation", "test"):
        ids = np.load(cache / f"{split}.ids.npy", mmap_mode="r")
        sent, art = np.load(cache / f"{split}.sent.npy"), np.load(cache / f"{split}.art.npy")
        assert ids.dtype == np.uint16 and sent.dtype == art.dtype == np.int64
        assert sent[0] == 0 and sent[-1] == len(ids) and art[-1] == len(sent) - 1
        assert meta["counts"][split] == {"articles": len(art) - 1, "sentences": len(sent) - 1, "tokens": len(ids)}
    # the ids of the first train sentence decode to that sentence (lower-cased, detokenized)
    dm.setup("fit")
    first = article_sentences(next(split_articles(read_release_lines(SAMPLE_DIR / "wiki.train.tokens"))))[0]
    ids = np.load(cache / "train.ids.npy")[: np.load(cache / "train.sent.npy")[1]]
    assert dm.tokenizer.encode(first, add_special_tokens=False).ids == ids.tolist()
    assert dm.tokenizer.decode(ids.tolist()).replace(" ", "") == first.lower().replace(" ", "")
    assert dm.tokenizer.token_to_id("[UNK]") == 1 and dm.tokenizer.encode("[UNK]", add_special_tokens=False).ids == [1]
    assert json.loads(dm.tokenizer_json)["model"]["type"] == "WordPiece"


def test_second_prepare_reuses_cache(built, capsys, monkeypatch):
    tmp, dm = built
    meta = dm.cache_path() / "meta.json"
    before = meta.stat().st_mtime_ns
    again = make_dm(tmp)
    monkeypatch.setattr(WikiText103DataModule, "_build", lambda *a: pytest.fail("rebuilt an existing cache"))
    again.prepare_data()
    assert meta.stat().st_mtime_ns == before
    assert "reusing cache at" in capsys.readouterr().err


def test_cache_name_follows_the_options(built):
    tmp, dm = built
    names = {make_dm(tmp, **kw).cache_path().name for kw in
             [{}, {"detokenize": False}, {"lowercase": False}, {"vocab_size": 900}, {"tokenizer_sample_bytes": 1000}]}
    assert len(names) == 5
    # what acts after the cache does not change it
    assert make_dm(tmp, max_seq_len=64, batch_size=2, seed=1).cache_path() == dm.cache_path()


def test_half_built_temp_dir_is_ignored(tmp_path):
    dm = make_dm(tmp_path)
    final = dm.cache_path()
    final.parent.mkdir(parents=True)
    stale = final.parent / f".{final.name}.{os.uname().nodename}.999999999.abc"  # a killed builder's leftovers
    stale.mkdir()
    (stale / "train.ids.bin").write_bytes(b"\0" * 10)
    dm.prepare_data()
    assert (final / "meta.json").is_file() and not stale.exists()
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_failed_build_leaves_no_cache(tmp_path, monkeypatch):
    import data_modules.encoding as encoding

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(encoding, "_write_ids", boom)
    dm = make_dm(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert list((tmp_path / "cache").iterdir()) == []


def test_dataloaders(built):
    tmp, dm = built
    dm = make_dm(tmp, max_seq_len=64, max_val_pairs=10, val_batch_size=4)
    dm.setup("fit")
    assert dm.special.mask == 4
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 64
    assert (batch["input_ids"][:, 0] == dm.special.cls).all() and (batch["labels"] != -100).any()
    val = list(dm.val_dataloader())
    assert sum(len(b["index"]) for b in val) == 10
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(val, dm.val_dataloader()))
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == 10
    # the train loader's sampler hands out (epoch, index) and reshuffles per epoch
    loader = dm.train_dataloader()
    assert next(iter(loader.sampler))[0] == 0
    loader.sampler.set_epoch(1)
    assert next(iter(loader.sampler))[0] == 1


def test_reuse_tokenizer_and_vocab_check(built, tmp_path):
    _, dm = built
    tok = str(dm.cache_path() / "tokenizer.json")
    other = make_dm(tmp_path, tokenizer=tok)
    other.prepare_data()
    other.setup("validate")
    assert other.tokenizer.get_vocab() == dm.tokenizer.get_vocab()
    with pytest.raises(ValueError, match=r"has 800 tokens but --data.vocab_size=500.*--model.vocab_size"):
        make_dm(tmp_path, tokenizer=tok, vocab_size=500).prepare_data()


# ---- the word-level encoder against plain sentence encoding -------------------------------------------------------

TRICKY = ["Café au lait , naïve ΟΔΟΣ .", "日本語の文 and 中文 .", "a[UNK]b [MASK] <unk> [UNK] .", "tab\there , bell\x07ring",
          "double  space", "", " leading and trailing ", "x" * 150 + " long", "e\u0301 \u0301b combining", "emoji 🤗 !",
          "well-known 1,000 3.5 H. gammarus", "UPPER lower MiXeD"]


@pytest.mark.parametrize("lowercase", [True, False])
def test_word_level_encoding_equals_sentence_encoding(lowercase):
    from tokenizers import Tokenizer
    from tokenizers.pre_tokenizers import Whitespace

    from data_modules.tokenizer import train_tokenizer
    from data_modules.encoding import SentenceEncoder, flatten

    lines = [s for a in split_articles(read_release_lines(SAMPLE_DIR / "wiki.train.tokens"))
             for s in article_sentences(a)]
    tok = train_tokenizer(lines + TRICKY, 600, lowercase=lowercase, show_progress=False)
    sents = TRICKY + lines[:300]
    ref_ids, ref_lens = flatten(tok.encode_batch(sents, add_special_tokens=False))
    enc = SentenceEncoder(tok)
    assert enc.word_level
    for _ in range(2):  # second pass: every word already in the table
        ids, lens = enc(sents)
        assert ids.tolist() == ref_ids.tolist() and lens.tolist() == ref_lens.tolist()
    enc.max_words = 50  # the table starts over between batches
    out = [enc(sents[i : i + 40]) for i in range(0, len(sents), 40)]
    assert np.concatenate([o[0] for o in out]).tolist() == ref_ids.tolist()
    other = Tokenizer.from_str(tok.to_str())
    other.pre_tokenizer = Whitespace()  # not BERT's pipeline: encoded sentence by sentence
    other_enc = SentenceEncoder(other)
    assert not other_enc.word_level
    assert other_enc(sents)[0].tolist() == flatten(other.encode_batch(sents, add_special_tokens=False))[0].tolist()


def test_cache_equals_plain_encoding(built):
    """The cache written by the streamed, word-level path equals encoding every sentence on its own."""
    from tokenizers import Tokenizer

    tmp, dm = built
    cache = dm.cache_path()
    tok = Tokenizer.from_file(str(cache / "tokenizer.json"))
    for split, infix in (("train", "train"), ("test", "test")):
        arts = [article_sentences(a) for a in split_articles(read_release_lines(SAMPLE_DIR / f"wiki.{infix}.tokens"))]
        arts = [[e.ids for e in tok.encode_batch(a, add_special_tokens=False)] for a in arts if a]
        arts = [[ids for ids in a if ids] for a in arts]  # sentences without tokens are dropped...
        arts = [a for a in arts if a]  # ...and articles without sentences
        sents = [ids for a in arts for ids in a]
        assert np.load(cache / f"{split}.ids.npy").tolist() == [i for ids in sents for i in ids]
        assert np.load(cache / f"{split}.sent.npy").tolist() == np.cumsum([0] + [len(x) for x in sents]).tolist()
        assert np.load(cache / f"{split}.art.npy").tolist() == np.cumsum([0] + [len(a) for a in arts]).tolist()
        raw = (cache / f"{split}.ids.npy").read_bytes()  # byte for byte what np.save writes
        buf = io.BytesIO()
        np.save(buf, np.load(cache / f"{split}.ids.npy"))
        assert raw == buf.getvalue()


# ---- bad input ------------------------------------------------------------------------------------------------------


def write_release(root: Path, texts: dict[str, str] | None = None, ext="tokens") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    texts = texts or {}
    for split in ("train", "valid", "test"):
        (root / f"wiki.{split}.{ext}").write_text(
            texts.get(split, " = A = \n \n One . Two . \n = B = \n \n Three . Four . \n"), encoding="utf-8")
    return root


def test_missing_dir_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        make_dm(tmp_path, data_dir=str(tmp_path / "nope")).prepare_data()
    root = write_release(tmp_path / "d")
    (root / "wiki.valid.tokens").unlink()
    with pytest.raises(FileNotFoundError, match=r"tokens: missing wiki.valid.tokens; raw: missing wiki.train.raw"):
        make_dm(tmp_path, data_dir=str(root)).prepare_data()
    with pytest.raises(FileNotFoundError, match=r"\(raw: missing wiki.train.raw, wiki.valid.raw, wiki.test.raw\)"):
        make_dm(tmp_path, data_dir=str(root), variant="raw").prepare_data()


def test_raw_variant_is_found(tmp_path):
    root = write_release(tmp_path / "d", ext="raw")
    dm = make_dm(tmp_path, data_dir=str(root), vocab_size=100)
    dm.prepare_data()
    files = json.loads((dm.cache_path() / "meta.json").read_text())["key"]["source"]["files"]
    assert files["train"][0][0] == "wiki.train.raw"


@pytest.mark.parametrize("text, match", [
    ("", r"wiki.train.tokens: 0 articles with text; need at least 2"),
    (" = Only = \n \n One . Two . \n", r"wiki.train.tokens: 1 articles with text; need at least 2"),
])
def test_empty_or_single_article(tmp_path, text, match):
    root = write_release(tmp_path / "d", {"train": text})
    with pytest.raises(ValueError, match=match):
        make_dm(tmp_path, data_dir=str(root), vocab_size=100).prepare_data()
    assert [p for p in (tmp_path / "cache").iterdir()] == []


def test_bad_bytes_in_a_split(tmp_path):
    root = write_release(tmp_path / "d")
    (root / "wiki.test.tokens").write_bytes(b" = A = \n ok . \n bad \xff\xfe . \n")
    with pytest.raises(ValueError, match=r"wiki.test.tokens:3: invalid UTF-8"):
        make_dm(tmp_path, data_dir=str(root), vocab_size=100).prepare_data()


@pytest.mark.parametrize("kw, match", [
    ({"max_seq_len": 7}, "max_seq_len=7"), ({"max_seq_len": 513}, "max_seq_len=513"),
    ({"batch_size": 0}, "batch_size=0"), ({"mlm_probability": 0.0}, "mlm_probability"),
    ({"variant": "xml"}, "variant"), ({"num_workers": -1}, "num_workers"),
])
def test_argument_validation(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        make_dm(tmp_path, **kw)


def test_hub_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for module in ("datasets.config", "huggingface_hub.constants"):  # read the variable when first imported
        if module in sys.modules:
            monkeypatch.setattr(sys.modules[module], "HF_HUB_OFFLINE", True)
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"lit-lm/no-such-dataset-xyz.*pass --data.data_dir PATH") as e:
        WikiText103DataModule(cache_dir=str(tmp_path), hub_dataset="lit-lm/no-such-dataset-xyz").prepare_data()
    assert time.perf_counter() - t < 15 and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_hub_unreachable_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"127.0.0.1 unreachable.*HF_HUB_OFFLINE=1.*--data.data_dir DIR"):
        WikiText103DataModule(cache_dir=str(tmp_path)).prepare_data()
    assert time.perf_counter() - t < 6


# ---- real data ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_wikitext2_cache_built_then_reused(wikitext2, capsys):
    dm = WikiText103DataModule(**wikitext2, num_workers=0)
    dm.prepare_data()
    meta = json.loads((dm.cache_path() / "meta.json").read_text())
    assert 7000 <= meta["vocab_size_reached"] <= 8000
    assert meta["counts"]["train"]["articles"] == 600  # WikiText-2: 600 train, 60 valid, 60 test articles
    assert meta["counts"]["validation"]["articles"] == 60 and meta["counts"]["test"]["articles"] == 60
    assert meta["counts"]["train"]["tokens"] > 2_000_000
    WikiText103DataModule(**wikitext2).prepare_data()
    assert "reusing cache at" in capsys.readouterr().err
    dm.setup("fit")
    s = dm.datasets["train"][(0, 0)]
    assert len(s["input_ids"]) <= 128
    unk = dm.special.unk
    assert (np.load(dm.cache_path() / "train.ids.npy", mmap_mode="r")[:200000] == unk).mean() > 0.005  # <unk> kept
