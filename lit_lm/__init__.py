"""lit-lm: BERT pretraining (MLM + NSP) and GLUE fine-tuning in PyTorch Lightning.

``lit_lm.load(path)`` opens a checkpoint for use from Python (see lit_lm.api). The names are resolved lazily,
so ``import lit_lm`` stays cheap and the CLI's ``--help`` does not pay for torch.
"""

__all__ = ["load", "Pretrained", "Classifier"]


def __getattr__(name: str):
    if name in __all__:
        from lit_lm import api

        return getattr(api, name)
    raise AttributeError(f"module 'lit_lm' has no attribute {name!r}")
