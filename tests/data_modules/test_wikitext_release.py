"""WikiText's release layout (data_modules/wikitext_release.py) read as a corpus: the documents unchanged since
c15abc1, line by line, and a single release file."""

import hashlib

import pytest

from corpus_reading import docs
from data_modules.corpus_detection import open_corpus
from data_modules.corpus_formats import CorpusSource
from data_modules.wikitext_release import article_sentences, read_release_lines, split_articles

GOLDEN = {  # sha256 of the valid split's articles (sentences joined by \n, articles by \n\n) as the code of c15abc1 read them
    ("tokens", True): "dabf76f7882d7d38e5916a9e498d595325683c41773414a03ae07ab6df20c7bc",
    ("tokens", False): "f6d29a5117bf340dcbc3a382c7da34dabac36a62fe200746adb573bdb4816ca7",
    ("raw", True): "1ec6f9fba021df19990204ecf3e8310c52fb9547a42e70c2770ee278ab1d8dda",
}


def _digest(articles) -> str:
    h = hashlib.sha256()
    for sents in articles:
        h.update(("\n".join(sents) + "\n\n").encode())
    return h.hexdigest()


@pytest.mark.parametrize("variant, detok", list(GOLDEN))
def test_wikitext_documents_unchanged(data_root, variant, detok):
    path = data_root / "wikitext-2" / f"wiki.valid.{variant}"
    if variant == "tokens":  # the release folder (WikiText-2 has no wiki.train.raw: the raw file is read alone)
        corpus = open_corpus(CorpusSource(str(path.parent), variant=variant, detokenize=detok))
        assert corpus.format == "wikitext" and list(corpus.splits) == ["train", "validation", "test"]
        ours = list(corpus.documents("validation"))
    else:
        corpus = open_corpus(CorpusSource(str(path), detokenize=detok))
        assert corpus.format == "wikitext" and list(corpus.splits) == ["train"]
        ours = list(corpus.documents("train"))
    theirs = [s for s in (article_sentences(a, detok) for a in split_articles(read_release_lines(path))) if s]
    assert ours == theirs and len(ours) == 60
    assert _digest(ours) == GOLDEN[variant, detok]


def test_wikitext_line_by_line_and_single_file(tmp_path):
    p = tmp_path / "wiki.train.tokens"
    p.write_text(" = T = \n \n A <unk> of 1 @.@ 5 m . Next . \n \n = = S = = \n \n Para two . \n")
    assert docs(p) == [["A [UNK] of 1.5 m .", "Next .", "Para two ."]]
    assert docs(p, line_by_line=True) == [["A [UNK] of 1.5 m . Next ."], ["Para two ."]]
    assert open_corpus(CorpusSource(str(p))).format == "wikitext"
