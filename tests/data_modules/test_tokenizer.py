"""The WordPiece tokenizer (data_modules/tokenizer.py): a BERT vocab.txt read as HF directories ship it (a token's id
is its line number), and a token on two lines refused in one line naming the file, the token and both lines."""

from pathlib import Path

import pytest

from data_modules.tokenizer import load_tokenizer, read_vocab, take_bytes, train_tokenizer
from data_modules.wikitext import SAMPLE_DIR
from one_line import cli_error

QUICK = ["fit", "--config", "cli.yaml", "--config", "configs/quickstart.yaml", "--trainer.max_steps=1"]


@pytest.fixture(scope="module")
def tokens() -> list[str]:
    """The vocabulary of a 600-token tokenizer of the bundled corpus, in id order (a vocab.txt's lines)."""
    tok = train_tokenizer((SAMPLE_DIR / "wiki.train.tokens").read_text().splitlines(), 600, show_progress=False)
    return [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]


def hf_dir(directory: Path, tokens: list[str]) -> Path:
    """A HuggingFace tokenizer directory holding only a vocab.txt, as old BERT releases have it."""
    directory.mkdir()
    (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return directory


def twice(tokens: list[str]) -> list[str]:
    """``tokens`` with line 41's token again on line 81."""
    return tokens[:80] + [tokens[40]] + tokens[80:]


def test_vocab_txt_ids_are_line_numbers(tmp_path, tokens):
    directory = hf_dir(tmp_path / "hf", tokens)
    assert read_vocab(directory / "vocab.txt") == {t: i for i, t in enumerate(tokens)}
    tok = load_tokenizer(directory)
    assert tok.get_vocab() == {t: i for i, t in enumerate(tokens)}
    assert tok.encode("the film").tokens[0] == "[CLS]"  # BERT's post-processor


def test_a_token_twice_names_the_file_the_token_and_both_lines(tmp_path, tokens):
    vocab = hf_dir(tmp_path / "hf", twice(tokens)) / "vocab.txt"
    with pytest.raises(ValueError) as e:
        load_tokenizer(vocab.parent, "--data.tokenizer")
    assert str(e.value) == (f"--data.tokenizer: {vocab}:81: the token {tokens[40]!r} again, first on line 41; "
                            f"expected every token once (its line number is its id)")
    blank = hf_dir(tmp_path / "blank", tokens[:5] + ["", "a", ""]) / "vocab.txt"
    with pytest.raises(ValueError, match=rf"^{blank}:8: the token '' again, first on line 6; "):
        read_vocab(blank)


def test_a_token_twice_is_one_line_from_the_command_line(tmp_path, tokens, capfd, monkeypatch):
    """Once an IndexError in a DataLoader worker (the id table one short of the ids): now refused before the cache."""
    vocab = hf_dir(tmp_path / "hf", twice(tokens)) / "vocab.txt"
    message = cli_error([*QUICK, f"--data.cache_dir={tmp_path / 'cache'}", f"--data.tokenizer={vocab.parent}"],
                        capfd, monkeypatch)
    assert message == (f"lit-lm: error: --data.tokenizer: {vocab}:81: the token {tokens[40]!r} again, first on line "
                       f"41; expected every token once (its line number is its id)")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_take_bytes_stops_after_the_document_that_reaches_the_limit():
    documents = [["aaaa", "bb"], ["cc"], ["dd"]]  # 5 + 3 bytes (a newline each), then 3, then 3
    assert list(take_bytes(documents, None)) == ["aaaa", "bb", "cc", "dd"]
    assert list(take_bytes(documents, 8)) == ["aaaa", "bb"]
    assert list(take_bytes(documents, 9)) == ["aaaa", "bb", "cc"]
