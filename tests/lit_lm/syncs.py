"""Count the calls that make the host wait for the device, and say whose code made them.

On a GPU these calls copy a value to the host (``.item()``, ``bool()/int()/float()`` of a tensor, ``.tolist()``),
or size an output by data (``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``): each waits for every
queued kernel, so the host stops feeding the GPU. A TorchFunctionMode sees every tensor call on the CPU too, so the
count is taken here, without a GPU, and attributed to the first caller outside torch.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OURS = tuple(os.path.join(REPO, d) + os.sep for d in ("lit_lm", "data_modules"))
TORCH = os.path.dirname(torch.__file__) + os.sep

_ALWAYS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "argwhere", "masked_select",
           "unique", "unique_consecutive", "nonzero_static"}


def _is_sync(name: str, args: tuple) -> bool:
    if name in _ALWAYS:
        return True
    if name in ("__getitem__", "__setitem__", "index_put_", "index_put"):  # a bool tensor as index: data-sized
        index = args[1] if len(args) > 1 else None
        parts = index if isinstance(index, (tuple, list)) else (index,)
        return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)
    return False


def _caller() -> str:
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith(TORCH) or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.relpath(frame.f_code.co_filename, REPO)}:{frame.f_lineno}"


def _on_stack(filename: str) -> bool:
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename != filename:
        frame = frame.f_back
    return frame is not None


class SyncCounter(TorchFunctionMode):
    """``with SyncCounter() as c: ...`` then ``c.calls``: Counter of (op, 'file:line') for every synchronising call.

    ``within``: count only calls made while that file is on the stack (its own reads and what it asks a library to
    read); ``when``: also record ``when()`` at each counted call in ``c.moments`` (e.g. the trainer's step)."""

    def __init__(self, within: str | None = None, when: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.calls: Counter = Counter()
        self.within, self.when = within, when
        self.moments: list = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if _is_sync(name, args) and (self.within is None or _on_stack(self.within)):
            self.calls[(name, _caller())] += 1
            if self.when is not None:
                self.moments.append(self.when())
        return func(*args, **(kwargs or {}))

    def ours(self) -> Counter:
        return Counter({k: v for k, v in self.calls.items() if k[1].startswith(("lit_lm" + os.sep, "data_modules" + os.sep))})
