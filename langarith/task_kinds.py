"""Layer 3: the kinds of task a bundle or profile holds, one registry entry each (as the merge
methods are in ``arithmetic.METHODS``): what the page may merge for it, where its stored λ curve
is, how a λ sweep of it runs, which λ its dev set chose, and what a comparison of one text says.
The page and the CLI read an entry (``kind_of``); no other module compares a kind's name.

Adding a kind: its ``TaskKind`` below (and, to show it on the page, its predictions view in
``page/compare.py``'s ``VIEWS`` and its flips table in ``page/flips.py``'s ``TABLES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import results, tasks
from .loading import InputError
from .model import LanguageStack


@dataclass(frozen=True)
class TaskKind:
    """One kind of task. The callables take the stack first; ``None`` where a kind has no such
    thing (then the page and the CLI say so instead of looking it up)."""
    name: str  # the manifest's ``kind``
    label: str  # in words, for messages
    on_page: bool  # offered by the page's task picker (QA has a tab of its own)
    all_methods: bool  # merged by every method of the panel, else by λ·A + (1−λ)·B only
    # (stack, target, a, b, task) -> the build's λ curve of this pair, whatever its grid, or None
    shipped_sweep: Callable | None
    # (stack, target, b, lambdas, task, progress, recompute) -> a λ sweep with its intervals
    sweep: Callable | None
    # (stack, text, target, b, lam, task) -> one text under A, the merge and B, as JSON
    compare: Callable | None
    # (stack, [(text, target, source, λ)], task) -> many visitors' comparisons in one pass, or None
    comparisons: Callable | None
    # (stack, target, source, lam, task) -> the texts whose prediction the merge at λ changes,
    # the merge's wins first (the flips table's rows, in its order)
    changed_texts: Callable | None

    def dev_lambda(self, stack: LanguageStack, target: str, a: str, b: str, task: str) -> float | None:
        """The λ the build's dev set chose for this pair, or None when nothing is stored."""
        curve = self.shipped_sweep(stack, target, a, b, task) if self.shipped_sweep else None
        return curve["best_lam"] if curve else None

    def run_sweep(self, stack, target, b, lambdas, task, progress=None, recompute=False) -> dict:
        if self.sweep is None:
            raise InputError(f"a λ sweep of a {self.label} task is not available here")
        return self.sweep(stack, target, b, lambdas, task, progress, recompute)


def _topic_shipped(stack, target, a, b, task):
    curve = results.shipped_sweep(stack, target, b, task)
    return curve if curve and curve.get("a", a) == a else None


def _topic_sweep(stack, target, b, lambdas, task, progress, recompute):
    return tasks.sweep(stack, target, b, lambdas, task=task, progress=progress)


def _topic_compare(stack, text, target, b, lam, task):
    out = tasks.compare(stack, text, target, b, lam, task=task).to_json()
    out.pop("hidden_shift")  # the page's plot, not a prediction
    return out


def _topic_changed(stack, target, source, lam, task):
    f = results.flips(stack, target, source, lam, "dev")
    return [f["texts"][r["key"]] for r in f["rows"]]


def _tagging_shipped(stack, target, a, b, task):
    from . import ner

    return ner.shipped_sweep(stack, target, a, b, task)


def _tagging_sweep(stack, target, b, lambdas, task, progress, recompute):
    from . import ner

    return ner.tagging_sweep(stack, target, b, lambdas, task, use_precomputed=not recompute,
                             progress=progress)


def _tagging_compare(stack, text, target, b, lam, task):
    from . import ner

    return {**ner.compare_ner(stack, text, target, b, lam, task=task).to_json(), "task": task}


def _tagging_changed(stack, target, source, lam, task):
    from . import ner

    return [" ".join(r["words"]) for r in ner.flips(stack, target, lam, task, limit=50, split="dev")]


KINDS: dict[str, TaskKind] = {k.name: k for k in (
    TaskKind("classification", "text classification", on_page=True, all_methods=True,
             shipped_sweep=_topic_shipped, sweep=_topic_sweep, compare=_topic_compare,
             comparisons=tasks.comparisons, changed_texts=_topic_changed),
    TaskKind("tagging", "span tagging", on_page=True, all_methods=False,
             shipped_sweep=_tagging_shipped, sweep=_tagging_sweep, compare=_tagging_compare,
             comparisons=None, changed_texts=_tagging_changed),
    # M2QA's reading comprehension (the xlmr profile): its own tab and ``qa.answer``; no stored
    # curve or sweep here (``reproduce`` measures it)
    TaskKind("extractive_qa", "extractive question answering", on_page=False, all_methods=False,
             shipped_sweep=None, sweep=None, compare=None, comparisons=None, changed_texts=None),
)}


def kind_of(stack: LanguageStack, task: str | None = None) -> TaskKind:
    """The kind of a bundle's task (its default task when ``task`` is None)."""
    t = stack.bundle.task(task)
    if t.kind not in KINDS:
        raise InputError(f"task {t.name!r} is of kind {t.kind!r}, which this version does not know")
    return KINDS[t.kind]
