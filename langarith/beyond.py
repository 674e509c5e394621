"""Layer 3: beyond one λ, measured — per-layer gradients against the single λ, and the output
ensemble against the weight merge, each chosen on dev and compared on test with a paired
bootstrap (``stats.bootstrap_choice_difference``).

The gradient grid: two anchors (bottom layer, top layer) from ``GRADIENT_VALUES`` each, linear in
between, λ_inv = the bottom anchor (the invertible adapter sits on the embeddings, below layer 0):
25 gradients, the 5 constant ones among them. Run by ``python -m langarith beyond``.
"""

from __future__ import annotations

import numpy as np

from . import stats, tasks
from .model import LanguageStack, Merge

GRADIENT_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)


def gradient_grid(values=GRADIENT_VALUES) -> list[tuple[float, float]]:
    """Every (bottom, top) anchor pair from ``values``."""
    return [(lo, hi) for lo in values for hi in values]


def gradient_merge(a: str, b: str, anchors) -> Merge:
    """The per-layer merge of A and B for anchors, λ_inv = the bottom anchor."""
    anchors = tuple(float(t) for t in anchors)
    return Merge.of({a: anchors[0], b: 1.0 - anchors[0]}, "layer_gradient", anchors=anchors,
                    lam_inv=anchors[0])


def _counts(preds: list[list[int]], gold: list[int]) -> np.ndarray:
    """Per-item accuracy counts [candidates, items, 2]."""
    return stats.accuracy_counts(np.asarray(preds) == np.asarray(gold)[None, :])


def gradient_predictions(stack: LanguageStack, data: dict, a: str, b: str, grid, task: str,
                         progress=None) -> dict[str, list[list[int]]]:
    """Per split, the predicted labels under every gradient of ``grid``."""
    preds = {s: [] for s in data}
    for i, anchors in enumerate(grid):
        merge = gradient_merge(a, b, anchors)
        for s, rows in data.items():
            preds[s].append(tasks.predict_labels(stack, rows, merge, task))
        if progress:
            progress(i + 1, len(grid), f"gradient {anchors[0]:g} → {anchors[-1]:g}")
    return preds


def compare_beyond(stack: LanguageStack, target: str, source: str | None = None,
                   task: str | None = None, lambdas=tasks.DEFAULT_LAMBDAS, grid=None,
                   progress=None) -> dict:
    """For one target: the dev-chosen gradient vs the dev-chosen single λ, and the dev-chosen
    output ensemble vs the dev-chosen weight merge, on test, with 95 % paired-bootstrap intervals."""
    a, b = tasks.merge_pair(stack, target, source)
    task = stack.bundle.task(task).name
    grid = list(grid or gradient_grid())
    lambdas = tasks.check_grid(lambdas)
    single = tasks.sweep(stack, target, b, lambdas, task)
    ens = tasks.ensemble_sweep(stack, target, b, lambdas, task)
    data = {s: tasks.load_eval(stack, target, task, s) for s in ("dev", "test")}
    gold = {s: tasks.gold_labels(stack, rows, task) for s, rows in data.items()}
    grad = gradient_predictions(stack, data, a, b, grid, task, progress)

    def counts_of(preds):
        return {s: _counts(preds[s], gold[s]) for s in data}

    lam_prefer = np.abs(np.asarray(lambdas) - 0.5)
    grad_prefer = np.asarray([sum(abs(t - 0.5) for t in g) for g in grid])
    sc = counts_of({s: [tasks.decode_predictions(p) for p in single["predictions"][s]] for s in data})
    ec = counts_of({s: [tasks.decode_predictions(p) for p in ens["predictions"][s]] for s in data})
    gc = counts_of(grad)
    g_vs_s = stats.bootstrap_choice_difference(gc["dev"], gc["test"], grad_prefer,
                                               sc["dev"], sc["test"], lam_prefer)
    e_vs_m = stats.bootstrap_choice_difference(ec["dev"], ec["test"], lam_prefer,
                                               sc["dev"], sc["test"], lam_prefer)
    return {"target": target, "a": a, "b": b, "task": task, "n_dev": len(data["dev"]),
            "n_test": len(data["test"]), "lambdas": list(lambdas),
            "gradients": [list(g) for g in grid],
            "best_gradient": list(grid[g_vs_s["x_chosen"]]), "best_lam": lambdas[g_vs_s["y_chosen"]],
            "best_ensemble_lam": lambdas[e_vs_m["x_chosen"]],
            "test": {"gradient": g_vs_s["x_test"], "single_lam": g_vs_s["y_test"],
                     "ensemble": e_vs_m["x_test"], "merge": e_vs_m["y_test"],
                     "a_alone": single["a_alone"]["accuracy"] * 100,
                     "b_alone": single["b_alone"]["accuracy"] * 100},
            "gradient_vs_single": g_vs_s["gain"], "ensemble_vs_merge": e_vs_m["gain"],
            "ensemble_gain_vs_better": ens["gain_vs_better"],
            "merge_gain_vs_better": single["gain_vs_better"]}


def targets_with_eval(stack: LanguageStack, task: str | None = None) -> list[str]:
    """The bundle's targets that have a labelled eval set for the task."""
    return [c for c in stack.bundle.languages if tasks.eval_path(stack, c, task) is not None]


def compare_all(stack: LanguageStack, task: str | None = None, targets=None, grid=None,
                progress=None) -> dict:
    """``compare_beyond`` for every target with an eval set (source: the suggested one)."""
    out = {}
    for t in targets or targets_with_eval(stack, task):
        if progress:
            progress(0, 1, f"target {t}")
        out[t] = compare_beyond(stack, t, None, task, grid=grid, progress=progress)
    return out
