"""Layer 3: beyond one λ, measured — per-layer gradients against the single λ, and the output
ensemble against the weight merge, each chosen on dev and compared on test with a paired
bootstrap (``stats.bootstrap_choice_difference``).

The gradient grid: two anchors (bottom layer, top layer) from ``GRADIENT_VALUES`` each, linear in
between, λ_inv = the bottom anchor (the invertible adapter sits on the embeddings, below layer 0):
9 gradients, the 3 constant ones among them (equal to the single λ bit for bit, so they are taken
from the single-λ sweep; 3 values, not 5, for CPU time: 6 gradients to evaluate per target, not 22).
The single-λ sweep is the bundle's precomputed one where it ships (the same predictions the build
made), else computed. Run by ``python -m langarith beyond``.
"""

from __future__ import annotations

import numpy as np

from . import results, stats, tasks
from .arithmetic import pair_weights
from .model import LanguageStack, Merge

GRADIENT_VALUES = (0.2, 0.5, 0.8)


def gradient_grid(values=GRADIENT_VALUES) -> list[tuple[float, float]]:
    """Every (bottom, top) anchor pair from ``values``."""
    return [(lo, hi) for lo in values for hi in values]


def gradient_merge(a: str, b: str, anchors) -> Merge:
    """The per-layer merge of A and B for anchors, λ_inv = the bottom anchor."""
    anchors = tuple(float(t) for t in anchors)
    return Merge.of(pair_weights(a, b, anchors[0]), "layer_gradient", lam_layers=anchors,
                    lam_inv=anchors[0])


def _counts(preds: list[list[int]], gold: list[int]) -> np.ndarray:
    """Per-item accuracy counts [candidates, items, 2]."""
    return stats.accuracy_counts(np.asarray(preds) == np.asarray(gold)[None, :])


def gradient_predictions(stack: LanguageStack, data: dict, a: str, b: str, grid, task: str,
                         single: dict | None = None, progress=None) -> dict[str, list[list[int]]]:
    """Per split, the predicted labels under every gradient of ``grid``; a constant gradient
    whose λ is on the ``single`` sweep's grid is read from it (the same weights, bit for bit)."""
    known = {}
    if single:
        known = {round(p["lam"], 6): i for i, p in enumerate(single["points"])}
    preds = {s: [] for s in data}
    for i, anchors in enumerate(grid):
        constant = len(set(anchors)) == 1 and round(anchors[0], 6) in known
        merge = None if constant else gradient_merge(a, b, anchors)
        for s, rows in data.items():
            preds[s].append(tasks.decode_predictions(single["predictions"][s][known[round(anchors[0], 6)]])
                            if constant else tasks.predict_labels(stack, rows, merge, task))
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
    single = results.precomputed_or_sweep(stack, target, a, b, lambdas, task)
    ens = tasks.ensemble_sweep(stack, target, b, lambdas, task)
    data = {s: tasks.load_eval(stack, target, task, s) for s in ("dev", "test")}
    gold = {s: tasks.gold_labels(stack, rows, task) for s, rows in data.items()}
    grad = gradient_predictions(stack, data, a, b, grid, task, single, progress)

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
            "merge_gain_vs_better": single["gain_vs_better"],
            "single_from": single.get("from", "computed"),
            "mlm": mlm_beyond(stack, target, a, b, grid)}


def mlm_beyond(stack: LanguageStack, target: str, a: str, b: str, grid) -> dict | None:
    """The held-out masked-LM view of the same comparisons, as ``tasks.heldout_mlm_summary``
    scores a curve: each family's λ (or gradient) chosen on the first half of the texts, losses
    reported on the second, with paired bootstrap intervals over texts (``stats.loss_counts``:
    gains in nats per token, positive where the first-named has the lower loss). None without
    held-out text."""
    texts = results.heldout_texts(stack, target)
    if not texts:
        return None
    lambdas = tasks.MLM_LIVE_LAMBDAS
    merge = tasks.mlm_curve(stack, texts, a, b, lambdas)
    ens = tasks.ensemble_mlm_curve(stack, texts, a, b, lambdas)
    per = [tasks.mlm_token_losses(stack, [(texts, gradient_merge(a, b, g))])[0] for g in grid]  # one merged adapter held at a time
    grad = {"sums": [list(map(float, s)) for s, _ in per], "counts": [list(map(float, c)) for _, c in per]}
    first, second = stats.split_halves(len(texts))

    def halves(curve):
        sums, counts = np.asarray(curve["sums"]), np.asarray(curve["counts"])
        return (stats.loss_counts(sums[:, first], counts[:, first]),
                stats.loss_counts(sums[:, second], counts[:, second]))

    (md, mt), (ed, et), (gd, gt) = halves(merge), halves(ens), halves(grad)
    lam_prefer = np.abs(np.asarray(lambdas) - 0.5)
    grad_prefer = np.asarray([sum(abs(t - 0.5) for t in g) for g in grid])
    g_vs_s = stats.bootstrap_choice_difference(gd, gt, grad_prefer, md, mt, lam_prefer, scale=1.0)
    e_vs_m = stats.bootstrap_choice_difference(ed, et, lam_prefer, md, mt, lam_prefer, scale=1.0)
    return {"lambdas": list(lambdas), "n_texts": len(texts), "n_tokens_second": int(mt[0, :, 1].sum()),
            "merge": tasks.heldout_mlm_summary(merge), "ensemble": tasks.heldout_mlm_summary(ens),
            "gradients": [list(g) for g in grid],
            "best_gradient": list(grid[g_vs_s["x_chosen"]]), "best_lam": lambdas[g_vs_s["y_chosen"]],
            "best_ensemble_lam": lambdas[e_vs_m["x_chosen"]],
            "second_half": {"gradient": -g_vs_s["x_test"], "single_lam": -g_vs_s["y_test"],
                            "ensemble": -e_vs_m["x_test"], "merge": -e_vs_m["y_test"]},
            "gradient_vs_single": g_vs_s["gain"], "ensemble_vs_merge": e_vs_m["gain"]}


def refresh_mlm(stack: LanguageStack, path) -> dict:
    """Recompute only the masked-LM view of every target in a ``beyond`` results file (seconds
    per target, against minutes for the task's), in place."""
    import json
    import os

    out = json.loads(path.read_text(encoding="utf-8"))
    for t, r in out.items():
        r["mlm"] = mlm_beyond(stack, t, r["a"], r["b"], [tuple(g) for g in r["gradients"]])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return out


def targets_with_eval(stack: LanguageStack, task: str | None = None) -> list[str]:
    """The bundle's targets that have a labelled eval set for the task."""
    return [c for c in stack.bundle.languages if tasks.eval_path(stack, c, task) is not None]


def compare_all(stack: LanguageStack, task: str | None = None, targets=None, grid=None,
                progress=None, checkpoint=None) -> dict:
    """``compare_beyond`` for every target with an eval set (source: the suggested one). With a
    ``checkpoint`` file, each finished target is written to it at once (atomically) and targets
    already in it for the same grid are not run again: a stopped run resumes."""
    import json
    import os

    grid = list(grid or gradient_grid())
    out = {}
    if checkpoint and checkpoint.is_file():
        out = {t: r for t, r in json.loads(checkpoint.read_text(encoding="utf-8")).items()
               if r.get("gradients") == [list(g) for g in grid]}
    for t in targets or targets_with_eval(stack, task):
        if t in out:
            continue
        if progress:
            progress(0, 1, f"target {t}")
        out[t] = compare_beyond(stack, t, None, task, grid=grid, progress=progress)
        if checkpoint:
            tmp = checkpoint.with_suffix(".tmp")
            tmp.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, checkpoint)
    return out
