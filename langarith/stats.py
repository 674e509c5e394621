"""Layer 1: statistics on arrays — metric sums per item, the dev-chosen λ, the paired bootstrap.

No model, no UI: numpy only. Every metric here is a ratio of sums over items, so a resample is a
weighted sum of per-item *counts*:

- accuracy: per item ``[correct, 1]`` → ``Σcorrect / Σ1``;
- entity-level micro F1 (seqeval's definition): per sentence ``[tp, fp, fn]`` →
  ``2Σtp / (2Σtp + Σfp + Σfn)``.

Written by hand because no library of the stack bootstraps a *procedure* (choose λ on dev, report
on test) with paired resamples; scipy's ``bootstrap`` resamples one statistic of given samples.
"""

from __future__ import annotations

import numpy as np

N_RESAMPLES = 2000
SEED = 0


def accuracy_counts(correct) -> np.ndarray:
    """Per-item counts ``[..., n, 2]`` (correct, 1) from a boolean array ``[..., n]``."""
    c = np.asarray(correct, dtype=np.float64)
    return np.stack([c, np.ones_like(c)], axis=-1)


def f1_counts(tp, fp, fn) -> np.ndarray:
    """Per-sentence counts ``[..., n, 3]`` (tp, fp, fn) for entity-level micro F1."""
    return np.stack([np.asarray(x, dtype=np.float64) for x in (tp, fp, fn)], axis=-1)


def loss_counts(loss_sums, n_tokens) -> np.ndarray:
    """Per-text counts ``[..., n, 2]`` (−summed loss, tokens): ``metric`` of them is minus the mean
    loss per token, so the bootstraps (which maximise) pick the lowest loss, and with ``scale=1``
    a gain is in nats per token (positive: lower loss)."""
    return np.stack([-np.asarray(loss_sums, np.float64), np.asarray(n_tokens, np.float64)], axis=-1)


def entropy(probs) -> np.ndarray:
    """Shannon entropy in nats of each distribution along the last axis (0 · log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0).sum(-1)


def metric(sums) -> np.ndarray:
    """The metric from summed counts ``[..., k]``: accuracy for k = 2, micro F1 for k = 3."""
    s = np.asarray(sums, dtype=np.float64)
    if s.shape[-1] == 2:
        num, den = s[..., 0], s[..., 1]
    elif s.shape[-1] == 3:
        num, den = 2 * s[..., 0], 2 * s[..., 0] + s[..., 1] + s[..., 2]
    else:
        raise ValueError(f"counts need 2 (accuracy) or 3 (tp, fp, fn) columns, not {s.shape[-1]}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def choose_lambda(scores, lambdas) -> int:
    """Index of the best λ by score; ties go to the λ closer to 0.5 (the sweep's rule)."""
    scores, lambdas = np.asarray(scores, float), np.asarray(lambdas, float)
    best = scores.max()
    tied = np.flatnonzero(np.isclose(scores, best, rtol=0, atol=1e-12))
    return int(tied[np.argmin(np.abs(lambdas[tied] - 0.5))])


def choose_lambda_batch(scores, lambdas) -> np.ndarray:
    """``choose_lambda`` for each row of ``scores [R, L]`` at once."""
    scores, lambdas = np.asarray(scores, float), np.asarray(lambdas, float)
    best = scores.max(axis=1, keepdims=True)
    tied = np.isclose(scores, best, rtol=0, atol=1e-12)
    dist = np.where(tied, np.abs(lambdas - 0.5)[None, :], np.inf)
    return dist.argmin(axis=1)


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` items is drawn in each resample: ``[R, n]`` (rows sum to n)."""
    idx = rng.integers(0, n, size=(n_resamples, n))
    out = np.zeros((n_resamples, n), dtype=np.float64)
    np.add.at(out, (np.arange(n_resamples)[:, None], idx), 1.0)
    return out


def percentile_interval(x: np.ndarray) -> list[float]:
    """The 95 % percentile interval of resampled values: ``[2.5th, 97.5th percentile]``."""
    lo, hi = np.percentile(x, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_gain(points: float, resampled: np.ndarray) -> dict:
    """A gain as every result writes it: ``points`` (on the full sample), its 95 % percentile
    interval ``ci95`` and ``p_positive`` (the share of resamples with a gain above zero)."""
    return {"points": float(points), "ci95": percentile_interval(resampled),
            "p_positive": float(np.mean(resampled > 0))}


def format_gain(g: dict, unit: str = "", digits: int = 1) -> str:
    """A gain with its 95 % interval, as every table and log writes it: ``+0.4 [-1.1, +1.9]``
    (``unit="points"``: ``+0.4 points [-1.1, +1.9]``). ``g`` holds ``points`` and ``ci95``."""
    lo, hi = g["ci95"]
    unit = f" {unit}" if unit else ""
    return f"{g['points']:+.{digits}f}{unit} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def bootstrap_sweep(lambdas, dev_counts, test_counts, *, n_resamples: int = N_RESAMPLES,
                    seed: int = SEED, scale: float = 100.0) -> dict:
    """Paired bootstrap of the whole procedure "choose λ on dev, report on test".

    ``dev_counts [L, n_dev, k]`` and ``test_counts [L, n_test, k]`` hold per-item counts at each
    λ of ``lambdas`` (which must include 1.0 = A alone and 0.0 = B alone). Each resample draws dev
    items and test items with replacement (the same items for every λ: paired), chooses λ on the
    resampled dev set and measures the gain on the resampled test set against A, B and the better
    of the two on that resample. Gains and intervals are in points (``scale`` = 100).

    Returns ``best_lam``, ``gain_vs_a``/``gain_vs_b``/``gain_vs_better`` (each ``points``,
    ``ci95``, ``p_positive``), ``lam_chosen`` (how often each λ was chosen) and per-λ test
    intervals ``test_ci95``.
    """
    lam = np.asarray(lambdas, dtype=np.float64)
    dev, test = np.asarray(dev_counts, np.float64), np.asarray(test_counts, np.float64)
    if dev.ndim != 3 or test.ndim != 3 or dev.shape[0] != len(lam) or test.shape[0] != len(lam):
        raise ValueError("counts must be [λ, items, k] with one row per λ")
    if dev.shape[1] == 0 or test.shape[1] == 0:
        raise ValueError("the bootstrap needs dev and test items")
    ia, ib = _index_of(lam, 1.0), _index_of(lam, 0.0)
    rng = np.random.default_rng(seed)
    wd = resample_counts(dev.shape[1], n_resamples, rng)
    wt = resample_counts(test.shape[1], n_resamples, rng)
    dev_m = metric(np.einsum("rn,lnk->rlk", wd, dev))  # [R, L]
    test_m = metric(np.einsum("rn,lnk->rlk", wt, test)) * scale  # [R, L]
    chosen = choose_lambda_batch(dev_m, lam)
    merged = test_m[np.arange(n_resamples), chosen]
    a, b = test_m[:, ia], test_m[:, ib]

    full_dev, full_test = metric(dev.sum(1)), metric(test.sum(1)) * scale
    best = choose_lambda(full_dev, lam)
    pa, pb, pm = full_test[ia], full_test[ib], full_test[best]
    return {
        "best_lam": float(lam[best]),
        "test_at_best": float(pm), "a": float(pa), "b": float(pb),
        "gain_vs_a": bootstrap_gain(pm - pa, merged - a),
        "gain_vs_b": bootstrap_gain(pm - pb, merged - b),
        "gain_vs_better": bootstrap_gain(pm - max(pa, pb), merged - np.maximum(a, b)),
        "lam_chosen": {f"{x:g}": float(np.mean(chosen == i)) for i, x in enumerate(lam)},
        "test_ci95": [percentile_interval(test_m[:, i]) for i in range(len(lam))],
        "n_dev": int(dev.shape[1]), "n_test": int(test.shape[1]), "n_resamples": int(n_resamples),
        "seed": int(seed),
    }


def bootstrap_difference(counts_x, counts_y, *, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                         scale: float = 100.0) -> dict:
    """Paired bootstrap of metric(x) − metric(y) on the same items (``[n, k]`` each)."""
    x, y = np.asarray(counts_x, np.float64), np.asarray(counts_y, np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("paired counts must have the same shape [items, k] and at least one item")
    w = resample_counts(x.shape[0], n_resamples, np.random.default_rng(seed))
    d = (metric(w @ x) - metric(w @ y)) * scale
    return bootstrap_gain((metric(x.sum(0)) - metric(y.sum(0))) * scale, d)


def _index_of(lam: np.ndarray, value: float) -> int:
    hit = np.flatnonzero(np.isclose(lam, value, atol=1e-9))
    if not len(hit):
        raise ValueError(f"the λ grid needs {value:g} (a single adapter) for the baselines")
    return int(hit[0])


def split_halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two interleaved halves of ``n`` items (even, odd): choose on one, report on the
    other."""
    idx = np.arange(n)
    return idx[0::2], idx[1::2]


def bootstrap_halves(lambdas, loss_sums, n_tokens, *, n_resamples: int = N_RESAMPLES,
                     seed: int = SEED) -> dict:
    """The masked-LM table's procedure with its interval: per-paragraph loss sums ``[L, n]`` and
    token counts ``[n]`` at each λ; λ chosen on the first of ``split_halves``, the loss reported on
    the second, both halves' paragraphs redrawn (paired over λ) and λ re-chosen on every resample.
    ``bootstrap_sweep``'s result in nats per token (positive gain: the merge's loss is lower)."""
    sums = np.asarray(loss_sums, np.float64)
    counts = loss_counts(sums, np.broadcast_to(np.asarray(n_tokens, np.float64), sums.shape))
    first, second = split_halves(sums.shape[1])
    return bootstrap_sweep(lambdas, counts[:, first], counts[:, second], n_resamples=n_resamples,
                           seed=seed, scale=1.0)


def bootstrap_metric(counts, *, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                     scale: float = 100.0) -> dict:
    """One system's metric on its items (``[n, k]`` counts) with a 95 % percentile interval."""
    x = np.asarray(counts, np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("counts must be [items, k] with at least one item")
    w = resample_counts(x.shape[0], n_resamples, np.random.default_rng(seed))
    return {"points": float(metric(x.sum(0)) * scale),
            "ci95": percentile_interval(metric(w @ x) * scale)}


# --- similarity of feature vectors and agreement of rankings (typology, layer 3) ----------------


def cosine_matrix(vectors) -> np.ndarray:
    """Cosine between every pair of rows of ``[n, d]``; a zero row is similar to nothing but
    itself (0 off the diagonal, 1 on it) rather than NaN."""
    v = np.asarray(vectors, np.float64)
    norm = np.linalg.norm(v, axis=1)
    safe = np.where(norm > 0, norm, 1.0)
    out = (v / safe[:, None]) @ (v / safe[:, None]).T
    np.fill_diagonal(out, 1.0)
    return out


def mean_abs_similarity_matrix(vectors) -> np.ndarray:
    """1 − mean |aᵢ − bᵢ| between every pair of rows of ``[n, d]`` with entries in [0, 1]."""
    v = np.asarray(vectors, np.float64)
    return 1.0 - np.abs(v[:, None, :] - v[None, :, :]).mean(axis=-1)


def average_ranks(scores) -> np.ndarray:
    """Ranks 1..n of ``scores`` (highest = 1), ties sharing their average rank."""
    s = -np.asarray(scores, np.float64)
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    for value in np.unique(s):  # average over ties
        tied = s == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x, y) -> float:
    """Spearman's ρ: Pearson correlation of the average ranks (NaN when a ranking is constant or
    has fewer than 2 items). Written here, ten lines of numpy, so that the page needs no scipy."""
    rx, ry = average_ranks(x), average_ranks(y)
    if len(rx) < 2 or len(rx) != len(ry):
        return float("nan")
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def choose_batch(scores, prefer) -> np.ndarray:
    """Per row of ``scores [R, C]``: the best candidate; ties go to the lowest ``prefer [C]``."""
    scores, prefer = np.asarray(scores, float), np.asarray(prefer, float)
    best = scores.max(axis=1, keepdims=True)
    tied = np.isclose(scores, best, rtol=0, atol=1e-12)
    return np.where(tied, prefer[None, :], np.inf).argmin(axis=1)


def bootstrap_choice_difference(dev_x, test_x, prefer_x, dev_y, test_y, prefer_y, *,
                                n_resamples: int = N_RESAMPLES, seed: int = SEED,
                                scale: float = 100.0) -> dict:
    """Paired bootstrap of two procedures "choose a candidate on dev, report on test" on the same
    items: X (e.g. per-layer gradients) minus Y (e.g. single λ values). ``dev_* [C, n_dev, k]``,
    ``test_* [C, n_test, k]``; each resample draws the items once for both (paired), chooses each
    family's best candidate on the resampled dev set and differences the test metrics."""
    dx, tx, dy, ty = (np.asarray(v, np.float64) for v in (dev_x, test_x, dev_y, test_y))
    if dx.shape[1:] != dy.shape[1:] or tx.shape[1:] != ty.shape[1:] or dx.shape[1] == 0 \
            or tx.shape[1] == 0:
        raise ValueError("both procedures need counts on the same dev and test items")
    rng = np.random.default_rng(seed)
    wd = resample_counts(dx.shape[1], n_resamples, rng)
    wt = resample_counts(tx.shape[1], n_resamples, rng)
    rows = np.arange(n_resamples)

    def resampled(dev, test, prefer):
        chosen = choose_batch(metric(np.einsum("rn,cnk->rck", wd, dev)), prefer)
        return metric(np.einsum("rn,cnk->rck", wt, test))[rows, chosen] * scale

    def full(dev, test, prefer):
        i = int(choose_batch(metric(dev.sum(1))[None, :], prefer)[0])
        return i, float(metric(test.sum(1))[i] * scale)

    (ix, px), (iy, py) = full(dx, tx, prefer_x), full(dy, ty, prefer_y)
    diff = resampled(dx, tx, prefer_x) - resampled(dy, ty, prefer_y)
    return {"x_chosen": ix, "y_chosen": iy, "x_test": px, "y_test": py,
            "gain": bootstrap_gain(px - py, diff), "n_dev": int(dx.shape[1]),
            "n_test": int(tx.shape[1]), "n_resamples": int(n_resamples), "seed": int(seed)}
