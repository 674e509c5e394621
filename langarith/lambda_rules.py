"""Layer 3: how λ is chosen — the λ rules, in one place, and their paired bootstrap.

A truly zero-shot language has no labelled dev set, yet the paper chooses λ on one. Four rules:

- ``dev``: the λ of the task grid with the best labelled dev metric (ties: closer to 0.5), as
  the sweep has always done (``stats.choose_lambda``);
- ``mlm``: the λ with the lowest masked-LM loss on *unlabelled* target text — the first half of
  the held-out paragraphs (even indices, ``stats.split_halves``), as the held-out view chooses it
  — then moved to the nearest λ of the task grid (the masked-LM grid is finer: 0.05 against
  0.1). Ties, of the loss and of the rounding (0.25 lies halfway between 0.2 and 0.3), go to the
  λ closer to 0.5, the sweep's own tie rule. It never reads a label;
- ``entropy``: the λ of the task grid whose merged stack is least uncertain on the target's
  unlabelled dev texts: the lowest mean prediction entropy of the task head (the label
  distribution of a topic item; for tagging, pooled over every word's tag distribution), as EMEA
  (Wang et al., 2021) and AdaMerging (Yang et al., 2024) choose merge weights. Ties closer to 0.5.
  It never reads a label (``results/head_entropy.json``, ``python -m langarith.head_entropy``);
- ``fixed``: λ = 0.5 (``FIXED_LAM``; TIPA's rerun of the paper, "NTG", fixes it there), or any
  other value, moved to the nearest grid λ the same way.

``bootstrap_rules`` measures the rules against each other with the paired bootstrap of the whole
procedure: each resample redraws the dev items (for ``dev``, and their texts for ``entropy``: the
same draw), the unlabelled paragraphs (for ``mlm``) and the test items (shared by all rules:
paired), re-chooses λ by each rule and
scores each choice on the resampled test set. Its first two draws are ``stats.bootstrap_sweep``'s,
so the ``dev`` rule's resampled test scores are the sweep's own.

The bundle's inputs: the per-item predictions of every λ (``results/sweeps/``, and the tagging
task's per-sentence counts in ``results/libreoffice_spans.json``), and the held-out masked-LM
curves with their per-paragraph sums (``results/mlm_texts.json``, written by
``python -m langarith.mlm_texts``). ``label_free_lambda`` is the page's one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import results, stats
from .arithmetic import MergeError, check_lambda
from .cache import MEMO_LIMITS, Memo
from .loading import Bundle, InputError
from .model import LanguageStack

RULES = ("dev", "mlm", "entropy", "fixed")
LABEL_FREE = ("mlm", "entropy")  # the rules that read no label: the page offers both
FIXED_LAM = 0.5
DIFFERENCES = (("mlm", "dev"), ("mlm", "fixed"), ("dev", "fixed"),
               ("entropy", "dev"), ("entropy", "mlm"), ("entropy", "fixed"))


# --- the rules: pure choices on arrays -----------------------------------------------------------


def nearest_on_grid(lam: float, grid) -> int:
    """Index of the grid λ nearest to ``lam``; a tie goes to the λ closer to 0.5 (then the
    smaller one)."""
    grid = np.asarray(grid, float)
    d = np.abs(grid - lam)
    tied = np.flatnonzero(np.isclose(d, d.min(), rtol=0, atol=1e-9))
    return int(tied[np.argmin(np.abs(grid[tied] - 0.5) + 1e-12 * grid[tied])])


def choose_dev(dev_scores, grid) -> int:
    """``dev``: the best labelled dev score (higher is better); ties closer to 0.5."""
    return stats.choose_lambda(dev_scores, grid)


def choose_mlm(unlabelled_losses, mlm_grid, grid) -> int:
    """``mlm``: the lowest masked-LM loss over ``mlm_grid`` (ties closer to 0.5), moved to the
    nearest λ of the task ``grid``. Returns an index into ``grid``."""
    j = stats.choose_lambda(-np.asarray(unlabelled_losses, float), mlm_grid)
    return nearest_on_grid(float(np.asarray(mlm_grid, float)[j]), grid)


def choose_entropy(entropy_counts, grid) -> int:
    """``entropy``: the lowest mean prediction entropy over the task ``grid``, from per-item
    ``stats.loss_counts(entropy sums, predictions) [L, n, 2]`` (ties closer to 0.5)."""
    return stats.choose_lambda(stats.metric(np.asarray(entropy_counts, float).sum(1)), grid)


def choose_fixed(grid, lam: float = FIXED_LAM) -> int:
    """``fixed``: the grid λ nearest to ``lam`` (0.5 by default)."""
    return nearest_on_grid(lam, grid)


def grid_map(mlm_grid, grid) -> np.ndarray:
    """For each λ of the masked-LM grid, the index of its nearest task-grid λ."""
    return np.asarray([nearest_on_grid(x, grid) for x in mlm_grid], dtype=int)


# --- the paired bootstrap of the three rules -----------------------------------------------------


def bootstrap_rules(grid, dev_counts, test_counts, mlm_grid=None, mlm_counts=None, *,
                    mlm_lam: float | None = None, entropy_counts=None, fixed_lam: float = FIXED_LAM,
                    n_resamples: int = stats.N_RESAMPLES, seed: int = stats.SEED,
                    scale: float = 100.0) -> dict:
    """The test metric at each rule's λ and the differences between rules, with 95 % intervals.

    ``dev_counts [L, n_dev, k]``, ``test_counts [L, n_test, k]``: per-item counts at each λ of
    ``grid`` (``stats.accuracy_counts`` / ``f1_counts``). ``mlm_counts [M, n_texts, 2]``: the
    unlabelled paragraphs' ``stats.loss_counts`` at each λ of ``mlm_grid`` (the half the rule
    chooses on). Without them, pass ``mlm_lam`` (the rule's λ, chosen elsewhere): it is then held
    fixed in every resample (``texts_redrawn`` False) and the interval is narrower than the
    procedure's. ``entropy_counts [L, n_dev, 2]``: the dev items' prediction entropies at each λ
    of ``grid`` (``choose_entropy``), redrawn with the dev items; without them the ``entropy``
    rule is left out. Draw order: dev items, test items, then paragraphs, all from one seeded
    generator."""
    lam = np.asarray(grid, np.float64)
    dev, test = np.asarray(dev_counts, np.float64), np.asarray(test_counts, np.float64)
    if dev.ndim != 3 or test.ndim != 3 or dev.shape[0] != len(lam) or test.shape[0] != len(lam):
        raise ValueError("counts must be [λ, items, k] with one row per λ")
    if dev.shape[1] == 0 or test.shape[1] == 0:
        raise ValueError("the bootstrap needs dev and test items")
    rng = np.random.default_rng(seed)
    wd = stats.resample_counts(dev.shape[1], n_resamples, rng)
    wt = stats.resample_counts(test.shape[1], n_resamples, rng)
    test_m = stats.metric(np.einsum("rn,lnk->rlk", wt, test)) * scale  # [R, L]
    full_test = stats.metric(test.sum(1)) * scale

    i_dev = choose_dev(stats.metric(dev.sum(1)), lam)
    r_dev = stats.choose_lambda_batch(stats.metric(np.einsum("rn,lnk->rlk", wd, dev)), lam)
    i_fixed = choose_fixed(lam, fixed_lam)
    r_fixed = np.full(n_resamples, i_fixed)
    if mlm_counts is not None:
        mg, mc = np.asarray(mlm_grid, np.float64), np.asarray(mlm_counts, np.float64)
        if mc.ndim != 3 or mc.shape[0] != len(mg) or mc.shape[1] == 0:
            raise ValueError("masked-LM counts must be [λ, texts, 2] with one row per λ of mlm_grid")
        wm = stats.resample_counts(mc.shape[1], n_resamples, rng)
        to_grid = grid_map(mg, lam)
        i_mlm = int(to_grid[stats.choose_lambda(stats.metric(mc.sum(1)), mg)])
        r_mlm = to_grid[stats.choose_lambda_batch(stats.metric(np.einsum("rn,lnk->rlk", wm, mc)), mg)]
        n_texts = int(mc.shape[1])
    elif mlm_lam is not None:
        i_mlm = nearest_on_grid(mlm_lam, lam)
        r_mlm, n_texts = np.full(n_resamples, i_mlm), None
    else:
        raise ValueError("the mlm rule needs the paragraphs' counts or a λ chosen on them")

    chosen = {"dev": (i_dev, r_dev), "mlm": (i_mlm, r_mlm)}
    if entropy_counts is not None:
        ec = np.asarray(entropy_counts, np.float64)
        if ec.shape != (len(lam), dev.shape[1], 2):
            raise ValueError("entropy counts must be [λ, dev items, 2], the dev items of dev_counts")
        chosen["entropy"] = (choose_entropy(ec, lam),
                             stats.choose_lambda_batch(stats.metric(np.einsum("rn,lnk->rlk", wd, ec)), lam))
    chosen["fixed"] = (i_fixed, r_fixed)
    rows = np.arange(n_resamples)
    resampled = {r: test_m[rows, c] for r, (_, c) in chosen.items()}
    out = {"rules": {r: {"lam": float(lam[i]), "test": float(full_test[i]),
                         "ci95": stats.percentile_interval(resampled[r]),
                         "lam_chosen": {f"{x:g}": float(np.mean(c == j)) for j, x in enumerate(lam)}}
                     for r, (i, c) in chosen.items()}}
    for x, y in DIFFERENCES:
        if x in chosen and y in chosen:
            out[f"{x}_minus_{y}"] = stats.bootstrap_gain(
                full_test[chosen[x][0]] - full_test[chosen[y][0]], resampled[x] - resampled[y])
    return {**out, "fixed_lam": float(fixed_lam), "texts_redrawn": mlm_counts is not None,
            "n_dev": int(dev.shape[1]), "n_test": int(test.shape[1]), "n_texts": n_texts,
            "n_resamples": int(n_resamples), "seed": int(seed)}


# --- the bundle's inputs for one target and task -------------------------------------------------


@dataclass
class Shipped:
    """The bundle's files without a model: what these functions read of a ``LanguageStack`` is
    only its ``bundle`` (and its memo, where eval sets are kept once read), so the report runs
    in seconds without building the encoder."""

    bundle: Bundle
    memo: Memo = field(default_factory=lambda: Memo(MEMO_LIMITS))



@dataclass
class RuleData:
    """What the rules need for one target and task, read from the bundle's shipped files."""

    target: str
    a: str
    b: str
    task: str
    kind: str  # "classification" or "tagging"
    metric: str  # "accuracy" or "f1"
    setting: str
    grid: list[float]
    dev_scores: list[float]  # per λ, in points
    test_scores: list[float]
    dev_counts: np.ndarray | None  # [L, n_dev, k]: None where the bundle ships no per-item counts
    test_counts: np.ndarray | None
    mlm_grid: list[float]
    mlm_lam_first: float  # the masked-LM minimum on the first half of the paragraphs
    mlm_counts: np.ndarray | None  # [M, n_texts/2, 2] of the first half: None without per-text sums
    entropy_counts: np.ndarray | None  # [L, n_dev, 2]: the dev texts' entropies; None if not shipped
    n_dev: int
    n_test: int


def _task_sweep(stack: LanguageStack, target: str, source: str | None, task) -> dict:
    """The shipped sweep of a target for a task (with its setting and per-item counts when the
    bundle has them); an InputError naming what is missing otherwise."""
    want = f" with source {source}" if source else ""
    if task.kind == "tagging":
        from . import ner

        pre = ner.precomputed(stack, task.name) or {}
        for setting in results.SETTINGS:
            c = pre.get(setting, {}).get(target)
            if c and (source is None or c["b"] == source):
                counts = c.get("counts")
                return {**c, "setting": setting, "kind": "tagging", "metric": "f1",
                        "dev_scores": [p["dev"]["f1"] for p in c["points"]],
                        "test_scores": [p["test"]["f1"] for p in c["points"]],
                        "dev_counts": np.asarray(counts["dev"], float) if counts else None,
                        "test_counts": np.asarray(counts["test"], float) if counts else None}
        raise InputError(f"no precomputed {task.name} sweep for {target}{want} in this bundle")
    summary = results.sweep_summary(stack, target, source)
    if summary is None or summary.get("task") != task.name:
        raise InputError(f"no precomputed {task.name} sweep for {target}{want} in this bundle")
    sw = results.sweep_items(stack, target, summary["b"])
    dev_counts = test_counts = None
    if sw is not None:
        from . import tasks

        counts = {}
        for split in ("dev", "test"):
            rows = tasks.load_eval(stack, target, task.name, split)
            if tasks.item_keys(rows, split) != sw["keys"][split]:
                raise InputError(f"the {target} eval set does not match its precomputed predictions")
            gold = np.asarray(tasks.gold_labels(stack, rows, task.name))
            pred = np.asarray([tasks.decode_predictions(p) for p in sw["predictions"][split]])
            counts[split] = stats.accuracy_counts(pred == gold[None, :])
        dev_counts, test_counts = counts["dev"], counts["test"]
    return {**summary, "kind": "classification", "metric": "accuracy",
            "dev_scores": [100 * p["dev"]["accuracy"] for p in summary["points"]],
            "test_scores": [100 * p["test"]["accuracy"] for p in summary["points"]],
            "dev_counts": dev_counts, "test_counts": test_counts}


def unlabelled_half(stack: LanguageStack, target: str, a: str, b: str) -> tuple[list[float], float, np.ndarray | None]:
    """The masked-LM side of a target: the curve's λ grid, its minimum on the first half of the
    paragraphs, and that half's per-paragraph ``loss_counts [M, n, 2]`` (None where the bundle
    has no per-text sums; the λ then comes from the shipped summary, which chose it the same
    way). An InputError where the target has no masked-LM curve for this pair."""
    curve = results.mlm_summary(stack, target, b)
    if curve is None or curve["a"] != a:
        raise InputError(f"no held-out masked-LM curve for {target} ({a} + {b}) in this bundle: "
                         "the label-free λ needs one")
    grid = [p["lam"] for p in curve["points"]]
    texts = (results.measured(stack, "mlm_texts") or {}).get(target)
    if texts and texts["a"] == a and texts["b"] == b and texts["lambdas"] == grid:
        sums = np.asarray(texts["sums"], float)
        counts = np.broadcast_to(np.asarray(texts["counts"], float), sums.shape)
        first, _ = stats.split_halves(sums.shape[1])
        mc = stats.loss_counts(sums[:, first], counts[:, first])
        return grid, float(grid[stats.choose_lambda(stats.metric(mc.sum(1)), grid)]), mc
    return grid, float(curve["halves"]["best_lam_first"]), None


def unlabelled_entropy(stack: LanguageStack, target: str, a: str, b: str, grid, task,
                       n_dev: int) -> np.ndarray | None:
    """The dev texts' prediction entropies ``[L, n_dev, 2]`` on the sweep's grid
    (``stats.loss_counts``: the bootstraps maximise), or None where the bundle has none for this
    pair and grid (run ``python -m langarith.head_entropy``)."""
    e = (results.measured(stack, "head_entropy") or {}).get(task.name, {}).get(target)
    if not e or (e["a"], e["b"]) != (a, b) or e["lambdas"] != list(grid) or len(e["counts"]) != n_dev:
        return None
    sums = np.asarray(e["sums"], float)
    return stats.loss_counts(sums, np.broadcast_to(np.asarray(e["counts"], float), sums.shape))


def rule_data(stack: LanguageStack, target: str, source: str | None = None,
              task_name: str | None = None) -> RuleData:
    """Everything the rules need for one target and task, from the shipped files."""
    task = stack.bundle.task(task_name)
    sw = _task_sweep(stack, target, source, task)
    mlm_grid, mlm_lam, mlm_counts = unlabelled_half(stack, target, sw["a"], sw["b"])
    grid = [p["lam"] for p in sw["points"]]
    return RuleData(target=target, a=sw["a"], b=sw["b"], task=task.name, kind=sw["kind"],
                    metric=sw["metric"], setting=sw["setting"],
                    grid=grid, dev_scores=sw["dev_scores"],
                    test_scores=sw["test_scores"], dev_counts=sw["dev_counts"],
                    test_counts=sw["test_counts"], mlm_grid=mlm_grid, mlm_lam_first=mlm_lam,
                    mlm_counts=mlm_counts,
                    entropy_counts=unlabelled_entropy(stack, target, sw["a"], sw["b"], grid, task,
                                                      int(sw["n_dev"])),
                    n_dev=int(sw["n_dev"]), n_test=int(sw["n_test"]))


def choose(rule: str, d: RuleData, fixed_lam: float = FIXED_LAM) -> int:
    """The index into ``d.grid`` that ``rule`` picks for one target (no resampling)."""
    if rule == "dev":
        return choose_dev(d.dev_scores, d.grid)
    if rule == "mlm":
        if d.mlm_counts is not None:
            return choose_mlm(-stats.metric(d.mlm_counts.sum(1)), d.mlm_grid, d.grid)
        return nearest_on_grid(d.mlm_lam_first, d.grid)
    if rule == "entropy":
        if d.entropy_counts is None:
            raise InputError(f"no prediction entropies for {d.target} ({d.task}) in this bundle: "
                             "run `python -m langarith.head_entropy`")
        return choose_entropy(d.entropy_counts, d.grid)
    if rule == "fixed":
        return choose_fixed(d.grid, fixed_lam)
    raise InputError(f"unknown λ rule {rule!r}: choose one of {', '.join(RULES)}")


def compare(d: RuleData, fixed_lam: float = FIXED_LAM, **kw) -> dict:
    """The three rules on one target and task: ``bootstrap_rules`` where the bundle ships per-item
    counts, else the point scores at each rule's λ with ``ci95`` None and a ``note``."""
    fixed_lam = check_lambda(fixed_lam)
    if d.dev_counts is not None and d.test_counts is not None:
        out = bootstrap_rules(d.grid, d.dev_counts, d.test_counts, d.mlm_grid, d.mlm_counts,
                              mlm_lam=d.mlm_lam_first, entropy_counts=d.entropy_counts,
                              fixed_lam=fixed_lam, **kw)
        out["note"] = None if out["texts_redrawn"] else (
            "no per-paragraph masked-LM sums in this bundle: the mlm λ is held at its choice in "
            "every resample (run `python -m langarith.mlm_texts`), so its intervals are too narrow")
    else:
        idx = {r: choose(r, d, fixed_lam) for r in RULES if r != "entropy" or d.entropy_counts is not None}
        out = {"rules": {r: {"lam": d.grid[i], "test": d.test_scores[i], "ci95": None}
                         for r, i in idx.items()},
               **{f"{x}_minus_{y}": {"points": d.test_scores[idx[x]] - d.test_scores[idx[y]],
                                     "ci95": None, "p_positive": None} for x, y in DIFFERENCES
                  if x in idx and y in idx},
               "fixed_lam": float(fixed_lam), "texts_redrawn": False, "n_dev": d.n_dev,
               "n_test": d.n_test, "n_texts": None,
               "note": "the bundle ships no per-item counts for this sweep: scores without intervals"}
    return {"target": d.target, "a": d.a, "b": d.b, "task": d.task, "metric": d.metric,
            "setting": d.setting, "mlm_lam_unrounded": d.mlm_lam_first, **out}


# --- what the page, the CLI and the report call --------------------------------------------------


def _fmt_gain(g: dict) -> str:
    if g.get("ci95") is None:
        return f"{g['points']:+.1f} points (no interval: no per-item counts shipped)"
    lo, hi = g["ci95"]
    verdict = ("no clear difference" if lo <= 0 <= hi
               else "clearly better" if lo > 0 else "clearly worse")
    return f"{g['points']:+.1f} [{lo:+.1f}, {hi:+.1f}] points, {verdict}"


RULE_WORDS = {"mlm": "masked-LM minimum on unlabelled {lang} text",
              "entropy": "lowest task-head entropy on unlabelled {lang} dev texts"}


def label_free_lambda(stack: LanguageStack, target: str, source: str | None = None,
                      task_name: str | None = None, fixed_lam: float = FIXED_LAM,
                      rule: str = "mlm") -> dict:
    """The page's "use the label-free λ": a label-free rule's λ for a target (``mlm`` or
    ``entropy``, on the task grid), beside the dev-chosen λ, with the test scores at both and
    their difference (95 % interval of the paired bootstrap that re-chooses both λ on every
    resample), and one sentence that names the rule.

    Never raises for a target the bundle lacks data for: then ``ok`` is False, ``lam`` None and
    ``message`` says what is missing. Keys: ``ok``, ``message``, ``rule``, ``target``, ``a``,
    ``b``, ``task``, ``metric``, ``lam`` (the rule's, task grid), ``mlm_lam_unrounded``
    (masked-LM grid), ``dev_lam``, ``fixed_lam``, ``test`` (points per rule), ``<rule>_minus_dev``
    and ``<rule>_minus_fixed`` ({"points", "ci95" ([lo, hi] or None), "p_positive"}), ``n_dev``,
    ``n_test``, ``n_texts``, ``texts_redrawn``, ``note``."""
    if rule not in LABEL_FREE:
        raise InputError(f"unknown label-free rule {rule!r}: choose one of {', '.join(LABEL_FREE)}")
    try:
        c = compare(rule_data(stack, target, source, task_name), fixed_lam)
        if rule not in c["rules"]:
            raise InputError(f"no prediction entropies for {target} in this bundle")
    except (InputError, MergeError) as e:
        return {"ok": False, "message": f"no label-free λ ({rule}) for {target}: {e}", "target": target,
                "rule": rule, "lam": None}
    r = c["rules"]
    name = "accuracy" if c["metric"] == "accuracy" else "span F1"
    how = RULE_WORDS[rule].format(lang=stack.bundle.text_of(target))
    msg = (f"Label-free λ = {r[rule]['lam']:g} ({rule} rule: {how}; dev-chosen λ = "
           f"{r['dev']['lam']:g}): test {name} {r[rule]['test']:.1f} vs {r['dev']['test']:.1f}, "
           f"{_fmt_gain(c[f'{rule}_minus_dev'])} (n = {c['n_test']}).")
    return {"ok": True, "message": msg, "rule": rule, "target": target, "a": c["a"], "b": c["b"],
            "task": c["task"], "metric": c["metric"], "lam": r[rule]["lam"],
            "mlm_lam_unrounded": c["mlm_lam_unrounded"], "dev_lam": r["dev"]["lam"],
            "fixed_lam": r["fixed"]["lam"], "test": {k: v["test"] for k, v in r.items()},
            f"{rule}_minus_dev": c[f"{rule}_minus_dev"], f"{rule}_minus_fixed": c[f"{rule}_minus_fixed"],
            "n_dev": c["n_dev"], "n_test": c["n_test"], "n_texts": c["n_texts"],
            "texts_redrawn": c["texts_redrawn"], "note": c["note"]}


def sweep_rule(stack: LanguageStack, target: str, source: str | None, task_name: str | None,
               rule: str, fixed_lam: float = FIXED_LAM) -> dict:
    """``sweep --rule``: the λ the rule picks on the bundle's precomputed sweep (its grid) and its
    test score, and the three rules side by side (``compare``); ``{"rule": {..., "error"}}`` when
    the bundle lacks the data (the sweep itself is still printed)."""
    if rule not in RULES:
        raise InputError(f"unknown λ rule {rule!r}: choose one of {', '.join(RULES)}")
    fixed_lam = check_lambda(fixed_lam)
    try:
        d = rule_data(stack, target, source, task_name)
    except InputError as e:
        return {"rule": {"name": rule, "lam": None, "error": str(e)}}
    i = choose(rule, d, fixed_lam)
    return {"rule": {"name": rule, "lam": d.grid[i], "test": d.test_scores[i], "metric": d.metric},
            "headline": headline(d, i), "rules": compare(d, fixed_lam)}


def headline(d: RuleData, i: int) -> dict:
    """The sweep's headline at the λ a rule chose (``d.grid[i]``): its test score and its gains
    over A alone, B alone and the better of the two, in points. Intervals: the paired bootstrap
    over test items with λ held at that choice (``stats.bootstrap_difference``; the rule's own
    variability is in ``compare``'s rule differences); None where the bundle ships no per-item
    counts."""
    ia, ib = d.grid.index(1.0), d.grid.index(0.0)
    test = d.test_scores
    better = ia if test[ia] >= test[ib] else ib
    out = {"best_lam": d.grid[i], "test_at_best": test[i]}
    for name, j in (("gain_vs_a", ia), ("gain_vs_b", ib), ("gain_vs_better", better)):
        if d.test_counts is None:
            out[name] = {"points": test[i] - test[j], "ci95": None, "p_positive": None}
        else:
            out[name] = stats.bootstrap_difference(d.test_counts[i], d.test_counts[j])
    return out


def rules_table(stack: LanguageStack, targets=None, task_names=None, **kw) -> dict:
    """``compare`` for every zero-shot and enhancement target with a sweep, per task:
    ``{task: {target: compare(...)}}`` (targets without the data are left out with their reason
    under ``skipped``)."""
    out: dict = {"tasks": {}, "skipped": {}}
    task_names = task_names or list(stack.bundle.tasks)
    res = results.bundle_results(stack)
    targets = targets or [t for s in ("zero_shot", "enhancement") for t in res.get(s, {})]
    for task in task_names:
        rows = out["tasks"].setdefault(task, {})
        for t in targets:
            try:
                rows[t] = compare(rule_data(stack, t, None, task), **kw)
            except InputError as e:
                out["skipped"][f"{task}/{t}"] = str(e)
    return out
