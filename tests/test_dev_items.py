"""No test-set item reaches the page: the flips table ("Where the merge matters"), the tour's
changed-item step and a target's opening text show dev items only, on the shipped bundle, for
every target and both tasks (topic and span tagging). The test items are read from the bundle's
eval files, and the page's own functions are asked what they show."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from langarith import ner, results, tasks
from langarith.loading import InputError
from langarith.task_kinds import kind_of

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "assets" / "bundle"
GRID = [round(i / 10, 1) for i in range(11)]


@pytest.fixture(scope="module")
def shipped():
    from langarith.model import LanguageStack

    return LanguageStack(BUNDLE, device="cpu")


def _norm(text: str) -> str:
    return " ".join(text.split())


def _eval_texts(stack, task, split: str) -> set[str]:
    """Every ``split`` text of a task's eval files, whitespace-normalised (a tagging item's text
    and its words joined: the page shows the latter)."""
    folder = stack.bundle.path(stack.bundle.task(task).eval)
    out = set()
    for path in folder.glob("*.jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for row in map(json.loads, filter(str.strip, f)):
                if row["split"] == split:
                    out.add(_norm(row["text"]))
                    if "words" in row:
                        out.add(_norm(" ".join(row["words"])))
    out.discard("")
    return out


@pytest.fixture(scope="module")
def sets(shipped):
    """The test and dev texts of both tasks, pooled (a test text of either task must not show,
    whichever task the page is on)."""
    tasks_ = [t for t in shipped.bundle.tasks.values() if t.eval and t.kind in ("classification", "tagging")]
    assert {t.kind for t in tasks_} == {"classification", "tagging"}
    test = set().union(*(_eval_texts(shipped, t.name, "test") for t in tasks_))
    dev = set().union(*(_eval_texts(shipped, t.name, "dev") for t in tasks_))
    assert len(test) > 1000 and len(dev) > 1000
    return {"test": test, "dev": dev, "tasks": [t.name for t in tasks_]}


def _leaks(shown: list[str], test: set[str]) -> list[str]:
    """The shown texts (whole, or cut short with "…" as the table cuts them) that are, or begin,
    a test text."""
    out = []
    for t in shown:
        t = _norm(t)
        assert t, "an empty text on the page"
        cut = t.endswith("…") or len(t) >= 140  # the table cuts texts to 140 characters
        t = t.rstrip("…").rstrip()
        if t in test or (cut and any(x.startswith(t) for x in test)):
            out.append(t)
    return out


def _table_texts(out) -> list[str]:
    """The text column of the rows a task's flips table is drawn from (``flips.TABLES``: the rows,
    or an update holding them)."""
    rows = out[1]
    rows = rows.get("value", rows) if isinstance(rows, dict) else rows
    assert isinstance(rows, list) and all(isinstance(r, (list, tuple)) for r in rows), type(rows)
    return [r[-1] for r in rows]


def test_the_check_sees_test_items(shipped, sets):
    """Not vacuous: the stored test-set taggings (what the page used to show) are flagged."""
    task = next(t for t in sets["tasks"] if shipped.bundle.task(t).kind == "tagging")
    rows = ner.flips(shipped, "pt", 0.5, task, limit=50, split="test")
    assert rows and _leaks([" ".join(r["words"]) for r in rows], sets["test"]) != []


def test_no_test_item_reaches_the_page(shipped, sets):
    from langarith.page import flips as flips_page
    from langarith.page import header, tour

    checked = {"table": 0, "tour": 0, "opening": 0}
    leaks = []
    for target in shipped.bundle.languages:
        # the opening text and the examples offered beside it (the page opens on the topic task)
        out = header.on_target(shipped, target)
        opening = [out[2], *(c if isinstance(c, str) else c[0] for c in out[1].get("choices", []))]
        leaks += [("opening", target, t) for t in _leaks(opening, sets["test"])]
        checked["opening"] += 1
        source = tasks.suggested_source(shipped, target)
        for task in sets["tasks"]:
            kind = kind_of(shipped, task)
            for lam in GRID:
                shown = _table_texts(flips_page.TABLES[kind.name](shipped, target, source, lam, task))
                try:  # the texts a picked row puts in the box
                    shown += kind.changed_texts(shipped, target, source, lam, task)
                except InputError:  # a target without stored predictions: the table says so
                    pass
                leaks += [("table", target, task, lam, t) for t in _leaks(shown, sets["test"])]
                checked["table"] += bool(shown)
            step4 = next(i for i, s in enumerate(tour.STEPS) if s.changed_item)
            text = tour.on_step(shipped, step4, target, source, task)[1]
            if isinstance(text, str):
                leaks += [("tour", target, task, t) for t in _leaks([text], sets["test"])]
                assert _norm(text) in sets["dev"], (target, task, text)
                checked["tour"] += 1
    assert not leaks, leaks[:5]
    # the loop saw items: the 10 tagging targets and the topic targets, at (nearly) every λ
    assert checked["tour"] >= 2 * 10 and checked["table"] >= 2 * 10 * len(GRID) - 10, checked
    assert checked["opening"] == len(shipped.bundle.languages)
    assert all(results.first_example(shipped, t) for t in ("pt", "gl", "ca", "sl"))


def test_stored_dev_taggings_are_the_dev_items_of_the_curves(shipped, sets):
    """The page's file holds dev items of every tagging curve, on its λ grid, and its taggings
    give the same per-sentence counts as the build's dev curve (so they are that run's taggings)."""
    import numpy as np

    task = next(t for t in sets["tasks"] if shipped.bundle.task(t).kind == "tagging")
    pre = ner.precomputed(shipped, task)
    for group in ("zero_shot", "enhancement"):
        for target, c in pre[group].items():
            stored = ner._stored(shipped, target, task, "dev")
            assert (stored["a"], stored["b"], stored["split"]) == (c["a"], c["b"], "dev")
            dev = ner.load_tagging_eval(shipped, target, task, "dev")
            n = len(stored["items"])
            assert 0 < n <= len(dev) and [r["key"] for r in stored["items"]] == [r["key"] for r in dev[:n]]
            assert not {_norm(" ".join(r["words"])) for r in stored["items"]} <= sets["test"]
            lams = pre["lambdas"]
            assert sorted(stored["merged"], key=float) == [f"{x:g}" for x in lams]
            for i, lam in enumerate(lams):
                # the merge is stored only where it differs from A or B: elsewhere A = merge = B
                tags = [stored["merged"][f"{lam:g}"].get(str(j), stored["A"][j]) for j in range(n)]
                got = [list(ner.sentence_counts(r["tags"], t)) for r, t in zip(stored["items"], tags)]
                assert got == np.array(c["counts"]["dev"][i][:n]).tolist(), (target, lam)
