"""WikiText-103 for BERT pretraining: the general corpus data module with WikiText's defaults.

``WikiText103DataModule`` is ``corpus.CorpusDataModule`` reading the HuggingFace hub's ``Salesforce/wikitext``
(``wikitext-103-raw-v1``) when no ``data_dir`` is given; a ``data_dir`` holding the release files
``wiki.{train,valid,test}.tokens`` (or ``.raw``, Merity et al., 2016) is recognised by their names, as any other
corpus format is. The release format's parsing lives in ``wikitext_release``, the cache in ``corpus_cache`` and
``encoding``.
"""

from __future__ import annotations

from pathlib import Path

from data_modules.corpus import CorpusDataModule

SAMPLE_DIR = Path(__file__).parent / "samples" / "wikitext"
"""A tiny corpus in the release layout, written for this project (quickstart and tests)."""


class WikiText103DataModule(CorpusDataModule):
    """WikiText-103 (or any corpus in its release layout, or any other corpus) as BERT MLM + NSP batches:
    ``CorpusDataModule`` whose hub dataset defaults to ``Salesforce/wikitext`` (``wikitext-103-raw-v1``).

    Args:
        data_dir: as CorpusDataModule's; a folder holding ``wiki.{train,valid,test}.<variant>`` is read in the
            release layout. None loads ``hub_dataset``.
        hub_dataset: HuggingFace dataset used when ``data_dir`` is None.
        hub_config: configuration of ``hub_dataset``.
        **kwargs: every other argument of CorpusDataModule.
    """

    log_tag = "wikitext"

    def __init__(self, data_dir: str | None = None, *, hub_dataset: str | None = "Salesforce/wikitext",
                 hub_config: str | None = "wikitext-103-raw-v1", **kwargs) -> None:
        super().__init__(data_dir=data_dir, hub_dataset=hub_dataset, hub_config=hub_config, **kwargs)
