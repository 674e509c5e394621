"""Layer 1: one small bounded memo, thread-safe, keyed by value.

A ``LanguageStack``'s weights never change after loading, so what it computed for a given input
(a merged state dict, an unmerged adapter's prediction, a λ sweep, a masked-LM loss, the
similarity matrix) can be reused — by that stack only. ``Memo`` keeps one least-recently-used map
per kind of result, each with its own bound (a sweep is large, a single prediction small). Each
stack owns one (``stack.memo``, made when it loads), so a result never outlives its stack or
reaches another one, whatever ``id()`` a later stack gets. It is the only cache of computed
results in the package.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, Mapping, TypeVar

T = TypeVar("T")

# Every kind of result a stack keeps, and how many of each (the module that fills it).
MEMO_LIMITS = {
    "merge": 8,  # model.LanguageStack.compute: a recipe's merged state dict, one adapter's size
    "single": 256,  # tasks: one adapter's (unmerged) predictions of a text
    "merged": 4096,  # tasks: a merge's predictions and hidden-state shift of a text (small)
    "fill_mask": 512,  # tasks: the MLM head's top tokens
    "sweep": 64, "ensemble_sweep": 64,  # tasks: λ sweeps over an eval set
    "mlm_loss": 2048,  # tasks: masked-LM losses of texts under one adapter
    "eval": 64,  # tasks: a language's labelled eval items, read from the bundle once
    "pair_statistics": 64,  # analysis: per-layer statistics of a pair
    "similarity": 2,  # analysis: the language-vector similarity matrix
    "flips": 512,  # page.flips: a pair's flips table at one λ (read from the stored predictions)
}


class LRU:
    """A map of at most ``maxsize`` entries; the least recently used one goes first."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The stored value of ``key``, else ``compute()`` stored. ``compute`` runs outside the
        lock (it may take the stack's own lock); when two threads compute the same key at once,
        both return the value stored first."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        with self._lock:
            if key in self._data:  # another thread stored it meanwhile: one value per key
                self._data.move_to_end(key)
                return self._data[key]
            self._data[key] = value
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class Memo:
    """One ``LRU`` per kind of result, each bounded by ``limits[kind]``."""

    def __init__(self, limits: Mapping[str, int]):
        self.limits = dict(limits)
        self._maps = {kind: LRU(n) for kind, n in self.limits.items()}

    def get(self, kind: str, key: Hashable, compute: Callable[[], T]) -> T:
        return self._maps[kind].get(key, compute)

    def has(self, kind: str, key: Hashable) -> bool:
        return key in self._maps[kind]

    def size(self, kind: str) -> int:
        return len(self._maps[kind])

    def clear(self, kind: str | None = None) -> None:
        for k, m in self._maps.items():
            if kind is None or k == kind:
                m.clear()
