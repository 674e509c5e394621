"""One bounded cache per stack (``cache.Memo`` as ``stack.memo``): bounded, thread-safe, keyed by
value, never shared between stacks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from langarith import analysis, tasks
from langarith.cache import LRU, Memo
from langarith.model import LanguageStack


def test_lru_is_bounded_and_drops_the_least_recently_used():
    c = LRU(3)
    for k in "abc":
        c.get(k, lambda k=k: k.upper())
    c.get("a", lambda: "never")  # a hit: "a" becomes the most recent
    c.get("d", lambda: "D")
    assert len(c) == 3 and "b" not in c and {"a", "c", "d"} == {k for k in "abcd" if k in c}
    for i in range(100):
        c.get(i, lambda i=i: i)
    assert len(c) == 3
    with pytest.raises(ValueError):
        LRU(0)


def test_a_hit_returns_the_same_value_without_computing_again():
    c, calls = LRU(4), []

    def compute():
        calls.append(1)
        return {"value": [1, 2]}

    first = c.get(("key", 1), compute)
    assert c.get(("key", 1), compute) is first and len(calls) == 1
    assert c.get(("key", 2), compute) is not first and len(calls) == 2


def test_concurrent_misses_of_one_key_all_get_the_value_stored_first():
    c = LRU(8)
    barrier = threading.Barrier(8)
    got = []

    def compute():
        time.sleep(0.01)
        return object()

    def worker():
        barrier.wait()
        got.append(c.get("k", compute))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(g is got[0] for g in got) and len(c) == 1


def test_memo_bounds_each_kind_separately():
    m = Memo({"small": 2, "large": 5})
    for i in range(10):
        m.get("small", i, lambda i=i: i)
        m.get("large", i, lambda i=i: i)
    assert m.size("small") == 2 and m.size("large") == 5
    m.clear("small")
    assert m.size("small") == 0 and m.size("large") == 5
    m.clear()
    assert m.size("large") == 0


def test_the_memo_lives_on_its_stack_and_is_never_shared(stack, tiny_bundle):
    other = LanguageStack(tiny_bundle, device="cpu")
    assert stack.memo is stack.memo and other.memo is not stack.memo
    first = tasks.sweep(stack, "pt", "es", (0.0, 0.5, 1.0))
    assert tasks.sweep(stack, "pt", "es", (0.0, 0.5, 1.0)) is first  # a hit: the same object
    # the other stack computes its own (same weights, so the same numbers), never the first's
    assert other.memo.size("sweep") == 0
    again = tasks.sweep(other, "pt", "es", (0.0, 0.5, 1.0))
    assert again is not first and again["points"] == first["points"]
    text = stack.bundle.language("pt").examples[0]
    p1 = tasks.single_prediction(stack, text, "es", stack.bundle.task(None).name)
    assert tasks.single_prediction(stack, text, "es", stack.bundle.task(None).name) is p1
    assert tasks.single_prediction(other, text, "es", stack.bundle.task(None).name) is not p1
    tasks.clear_cache(stack, "sweep")
    assert stack.memo.size("sweep") == 0 and stack.memo.size("single") >= 1
    assert tasks.sweep(stack, "pt", "es", (0.0, 0.5, 1.0)) is not first


def test_a_stack_and_its_results_go_together(tiny_bundle):
    """The old caches were keyed by ``id(stack)`` (a later stack could get a dead one's id, and
    its results) or held the stack itself alive (``lru_cache``). The memo lives on the stack:
    a new stack starts empty, and nothing keeps a dropped stack or its results."""
    import gc
    import weakref

    s = LanguageStack(tiny_bundle, device="cpu")
    assert s.memo.size("sweep") == 0
    tasks.sweep(s, "pt", "es", (0.0, 1.0))
    tasks.compare(s, s.bundle.language("pt").examples[0], "pt", "es", 0.5)
    analysis.weight_geometry(s, "en", "es", 0.5)
    ref = weakref.ref(s)
    del s
    gc.collect()
    assert ref() is None


def test_every_kind_the_package_keeps_is_declared_and_bounded():
    """Each ``.memo.get("kind", ...)`` in the package names a kind of ``cache.MEMO_LIMITS``, and
    every declared kind is used: the stack's memo is the one cache, and all of it is bounded."""
    import re

    from langarith.cache import MEMO_LIMITS

    root = Path(__file__).resolve().parent.parent / "langarith"
    used = {m for f in root.rglob("*.py")
            for m in re.findall(r"\.memo\.get\(\s*\"(\w+)\"", f.read_text(encoding="utf-8"))}
    assert used == set(MEMO_LIMITS)
    assert all(0 < n <= 4096 for n in MEMO_LIMITS.values())
    no_other = re.compile(r"lru_cache|_cache: dict")
    for f in ("tasks.py", "model.py", "analysis.py", "page/similarity.py"):
        assert not no_other.search((root / f).read_text(encoding="utf-8")), f
