"""Bad input to the data modules: each case is either handled (the test shows how) or a one-line error that names
the file and line, or the flag, at fault. Cases already covered elsewhere are listed here and not repeated:

- empty corpus, one article: test_wikitext.py::test_empty_or_single_article, test_nsp.py::test_needs_two_articles_and_valid_offsets
- NUL bytes, invalid UTF-8 (WikiText): test_wikitext.py::test_read_lines_invalid_utf8_and_nul, ::test_bad_bytes_in_a_split
- CRLF and BOM (WikiText lines): test_wikitext.py::test_read_lines_crlf_bom
- TSV rows with extra or missing columns, labels out of range: test_glue.py::test_bad_rows, ::test_bad_file_reaches_prepare_data
- max_seq_len 7 / 513, batch_size 0 (WikiText): test_wikitext.py::test_argument_validation
- tokenizer bigger than --data.vocab_size: test_wikitext.py::test_reuse_tokenizer_and_vocab_check
- a vocab.txt holding a token twice (ids would skip one): test_tokenizer.py, from the function and the CLI
- a killed build's temp dir: test_wikitext.py::test_half_built_temp_dir_is_ignored
- every refused argument of the two LightningModules and the two DataModules, through the real CLI (one line naming
  the option, exit code 2, no jsonargparse union report): tests/lit_lm/test_cli_errors.py
- hub unreachable: test_wikitext.py::test_hub_offline_fails_fast, ::test_hub_unreachable_fails_at_once,
  test_glue.py::test_hub_fails_fast_offline
- any other corpus format (a binary file in a text folder, a JSONL row that is not JSON, a missing CSV column, a
  Parquet column that is not text, an empty folder, a glob that matches nothing, too few documents to carve the
  splits, a file edited during the build): test_corpus.py (through prepare_data and the CLI; the readers' own
  errors in detail in test_corpus_formats.py and test_corpus_detection.py)
"""

import errno
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

import data_modules.encoding as encoding
from data_modules.glue import SAMPLE_DIR as SST2_SAMPLE, GLUEDataModule
from data_modules.glue_reading import read_tsv
from data_modules.glue_tasks import TASKS
from data_modules.tokenizer import train_tokenizer
from data_modules.wikitext import SAMPLE_DIR, WikiText103DataModule

TWO_ARTICLES = " = A = \n \n One . Two . \n = B = \n \n Three . Four . \n"


def release(root, train=TWO_ARTICLES, valid=TWO_ARTICLES, test=TWO_ARTICLES):
    """A release dir; str texts are written as UTF-8, bytes as they are."""
    root.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        path = root / f"wiki.{split}.tokens"
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return root


def dm_for(tmp_path, root, **kw):
    kw = {"data_dir": str(root), "cache_dir": str(tmp_path / "cache"), "vocab_size": 200, "num_workers": 0,
          "batch_size": 2, "max_seq_len": 32, **kw}
    return WikiText103DataModule(**kw)


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def sample_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer trained on the bundled SST-2 sample (for GLUE and for --data.tokenizer)."""
    texts = [line.split("\t")[0] for line in (SST2_SAMPLE / "train.tsv").read_text().splitlines()[1:]]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(texts, 300, show_progress=False).save(str(path))
    return path


# ---- corpus content -------------------------------------------------------------------------------------------------


def test_articles_shorter_than_a_sentence(tmp_path):
    # one-word articles without a full stop, and one whose only "text" is control characters the tokenizer drops
    text = " = A = \n \n alpha \n = B = \n \n beta \n = C = \n \n \x01 \x02 \n = D = \n \n gamma delta \n"
    dm = dm_for(tmp_path, release(tmp_path / "d", train=text))
    dm.prepare_data()
    counts = json.loads((dm.cache_path() / "meta.json").read_text())["counts"]["train"]
    assert counts == {"articles": 3, "sentences": 3, "tokens": counts["tokens"]}  # C is dropped: nothing to encode
    dm.setup("fit")
    ds = dm.datasets["train"]
    for i in range(len(ds)):
        s = ds[(0, i)]
        # a one-sentence article cannot be split into A and B: B always comes from another article (label 1)
        assert s["next_sentence_label"] == 1 and (s["input_ids"] == dm.special.sep).sum() == 2


def test_lines_of_100k_characters(tmp_path, sample_tokenizer):
    long_sentence = " ".join(["word"] * 20_000)  # 100k characters, no full stop: one sentence
    long_word = "x" * 100_000  # longer than WordPiece's max_input_chars_per_word (100): one [UNK]
    text = f" = A = \n \n {long_sentence} \n = B = \n \n {long_word} . Short one . \n"
    # a given tokenizer (training one on a 100k-character word alone takes ~10 s)
    dm = dm_for(tmp_path, release(tmp_path / "d", train=text), tokenizer=str(sample_tokenizer), vocab_size=300)
    dm.prepare_data()
    dm.setup("fit")
    cache = dm.cache_path()
    ids, sent = np.load(cache / "train.ids.npy"), np.load(cache / "train.sent.npy")
    per_word = len(dm.tokenizer.encode("word", add_special_tokens=False).ids)
    assert sent[1] == 20_000 * per_word  # the long sentence is kept whole in the cache...
    assert ids[sent[1]] == dm.special.unk and sent[2] - sent[1] == 2  # "[UNK] ."
    ds = dm.datasets["train"]
    assert all(len(ds[(e, i)]["input_ids"]) <= 32 for e in range(3) for i in range(len(ds)))  # ...and truncated in pairs


def test_crlf_and_bom_give_the_same_cache(tmp_path, sample_tokenizer):
    lf = release(tmp_path / "lf")
    crlf = release(tmp_path / "crlf", *(("\ufeff" + TWO_ARTICLES).replace("\n", "\r\n").encode(),) * 3)
    caches = []
    for root in (lf, crlf):
        dm = dm_for(tmp_path, root, tokenizer=str(sample_tokenizer), vocab_size=300)
        dm.prepare_data()
        caches.append(dm.cache_path())
    assert caches[0] != caches[1]  # other files, other cache...
    for name in ("train.ids.npy", "train.sent.npy", "train.art.npy", "test.ids.npy"):
        assert (caches[0] / name).read_bytes() == (caches[1] / name).read_bytes()  # ...same content


def test_nul_byte_names_file_and_line(tmp_path):
    root = release(tmp_path / "d", valid=b" = A = \n \n ok . \n bad\x00 . \n")
    with pytest.raises(ValueError, match=r"wiki\.valid\.tokens:4: NUL byte") as e:
        dm_for(tmp_path, root).prepare_data()
    one_line(e)
    assert list((tmp_path / "cache").iterdir()) == []


# ---- configuration --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, match", [
    ({"max_seq_len": 3}, r"--data\.max_seq_len=3: expected 8\.\.512"),
    ({"max_seq_len": 513}, r"--data\.max_seq_len=513: expected 8\.\.512"),
    ({"batch_size": 0}, r"--data\.batch_size=0: expected >= 1"),
])
def test_glue_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        GLUEDataModule(data_dir=str(SST2_SAMPLE), **kw)


def _tokenizer_without_mask(path):
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", ".", "one", "two"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.save(str(path))
    return path


def test_tokenizer_without_special_tokens(tmp_path):
    tok = _tokenizer_without_mask(tmp_path / "other.json")
    with pytest.raises(ValueError, match=r"--data\.tokenizer .*other\.json lacks the special tokens \['\[MASK\]'\]") as e:
        dm_for(tmp_path, release(tmp_path / "d"), tokenizer=str(tok)).prepare_data()
    one_line(e)
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(ValueError, match=r"--data\.tokenizer .*other\.json lacks the special tokens"):
        GLUEDataModule(data_dir=str(SST2_SAMPLE), tokenizer=str(tok), cache_dir=str(tmp_path / "g")).prepare_data()


def test_tokenizer_json_from_another_run(tmp_path, sample_tokenizer):
    """A cache whose tokenizer.json was replaced by a bigger one (copied in from another run) fails in setup."""
    root = release(tmp_path / "d")
    dm = dm_for(tmp_path, root)
    dm.prepare_data()
    shutil.copy(sample_tokenizer, dm.cache_path() / "tokenizer.json")  # 300 tokens, vocab_size is 200
    with pytest.raises(ValueError, match=r"tokenizer .*tokenizer\.json has 300 tokens but --data\.vocab_size=200"):
        dm_for(tmp_path, root).setup("fit")


# ---- the cache directory ------------------------------------------------------------------------------------------


def _deny_writes(monkeypatch, directory):
    """Make ``directory`` unwritable: chmod where that binds (not root), and fail mkdtemp in it either way."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o555)
    real = tempfile.mkdtemp

    def mkdtemp(*a, dir=None, **k):
        if dir is not None and os.path.samefile(dir, directory):
            raise PermissionError(errno.EACCES, "Permission denied", str(directory))
        return real(*a, dir=dir, **k)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)


def test_read_only_cache_dir(tmp_path, monkeypatch, sample_tokenizer):
    root = release(tmp_path / "d")
    cache = tmp_path / "ro"
    _deny_writes(monkeypatch, cache)
    try:
        with pytest.raises(PermissionError, match=rf"--data\.cache_dir {cache}: cannot write there") as e:
            dm_for(tmp_path, root, cache_dir=str(cache)).prepare_data()
        one_line(e)
        with pytest.raises(PermissionError, match=rf"--data\.cache_dir {cache}: cannot write there"):
            GLUEDataModule(data_dir=str(SST2_SAMPLE), tokenizer=str(sample_tokenizer), cache_dir=str(cache)).prepare_data()
        # a complete cache in a read-only directory is used as it is
        os.chmod(cache, 0o755)
        monkeypatch.undo()
        dm = dm_for(tmp_path, root, cache_dir=str(cache))
        dm.prepare_data()
        _deny_writes(monkeypatch, cache)
        dm_for(tmp_path, root, cache_dir=str(cache)).prepare_data()
        dm.setup("fit")
    finally:
        os.chmod(cache, 0o755)


@pytest.mark.parametrize("damage", ["no meta.json", "truncated ids", "missing offsets"])
def test_damaged_cache_is_rebuilt_never_used(tmp_path, damage, capsys, sample_tokenizer):
    root = release(tmp_path / "d")
    # a given tokenizer: training one is not deterministic (huggingface/tokenizers#1794), the rebuild would differ
    dm = dm_for(tmp_path, root, tokenizer=str(sample_tokenizer), vocab_size=300)
    dm.prepare_data()
    cache = dm.cache_path()
    good = (cache / "train.ids.npy").read_bytes()
    if damage == "no meta.json":  # e.g. a copy of the cache that stopped half-way
        (cache / "meta.json").unlink()
    elif damage == "truncated ids":
        with open(cache / "train.ids.npy", "r+b") as f:
            f.truncate(len(good) - 2)
    else:
        (cache / "validation.sent.npy").unlink()
    with pytest.raises(ValueError, match=rf"{cache}: damaged cache \(.*\); run prepare_data\(\) again to rebuild it"):
        dm_for(tmp_path, root, tokenizer=str(sample_tokenizer), vocab_size=300).setup("fit")
    again = dm_for(tmp_path, root, tokenizer=str(sample_tokenizer), vocab_size=300)
    again.prepare_data()
    assert "rebuilding it" in capsys.readouterr().err
    assert (cache / "train.ids.npy").read_bytes() == good
    again.setup("fit")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.name]


def test_disk_full_while_writing(tmp_path, monkeypatch):
    calls = []

    def write_ids(f, ids, dtype):  # writes part of the batch, then the disk is full
        calls.append(len(ids))
        f.write(b"\0" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(encoding, "_write_ids", write_ids)
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match=rf"--data\.cache_dir {cache}: no space left on the device .* removed") as e:
        dm_for(tmp_path, release(tmp_path / "d")).prepare_data()
    assert e.value.errno == errno.ENOSPC and calls
    one_line(e)
    assert list(cache.iterdir()) == []  # no cache, no temp dir


def test_glue_disk_full_leaves_nothing(tmp_path, monkeypatch, sample_tokenizer):
    def save(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    import data_modules.glue as glue

    monkeypatch.setattr(glue.np, "save", save)
    cache = tmp_path / "g"
    dm = GLUEDataModule(data_dir=str(SST2_SAMPLE), tokenizer=str(sample_tokenizer), cache_dir=str(cache))
    with pytest.raises(OSError, match=rf"--data\.cache_dir {cache}: no space left on the device"):
        dm.prepare_data()
    assert list(cache.iterdir()) == []


# ---- GLUE files -----------------------------------------------------------------------------------------------------


def test_glue_crlf_and_bom(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("\ufeffsentence\tlabel\r\ngood \t1\r\nbad \t0\r\n".encode())
    ex = read_tsv(path, TASKS["sst2"], labelled=True)
    assert ex.texts == [("good ",), ("bad ",)] and ex.labels == [1, 0]


@pytest.mark.parametrize("raw, match", [
    (b"sentence\tlabel\ngood \t1\ncaf\xe9 \t0\n", r"train\.tsv:3: invalid UTF-8"),
    (b"sentence\tlabel\ngood \t1\nn\x00l \t0\n", r"train\.tsv:3: NUL byte"),
])
def test_glue_bad_bytes(tmp_path, raw, match):
    path = tmp_path / "train.tsv"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as e:
        read_tsv(path, TASKS["sst2"], labelled=True)
    one_line(e)
