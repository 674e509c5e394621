"""Layer 3: how the weights moved — per-layer statistics of a merge, computed functionally.

These never read the live slot (another request may be rewriting it); they rebuild the merge from
the two adapters with the pure arithmetic layer.
"""

from __future__ import annotations

import torch

from . import tasks
from .arithmetic import (language_vector, linear_merge_geometry, merge_geometry, merge_method, pair_statistics,
                         parameter_group)
from .model import LanguageStack

ROW_ORDER_LAST = "inv"


def weight_geometry(stack: LanguageStack, a: str, b: str, lam: float, merge=None) -> list[dict]:
    """Rows (layer L0..Ln and the invertible adapter) × parts (down, up, F, G):
    relative distance of the merge to A and to B, and cos(A, B). The merge is λ·A + (1−λ)·B,
    or the given ``Merge`` recipe (computed by the arithmetic layer, not read from the slot)."""
    if merge is None or (merge_method(merge.method).weighted_sum and set(dict(merge.weights)) == {a, b}):
        lam = lam if merge is None else dict(merge.weights)[a]
        return sorted(linear_merge_geometry(_pair_statistics(stack, a, b), lam), key=_row_key)
    sa, sb = stack.language_state_dict(a), stack.language_state_dict(b)
    merged = stack.compute(merge)
    rows = merge_geometry(sa, sb, merged)
    return sorted(rows, key=_row_key)


def _pair_statistics(stack: LanguageStack, a: str, b: str) -> dict:
    """Adapters never change after loading, so a pair's statistics are computed once (in the
    stack's memo)."""
    return stack.memo.get("pair_statistics", (a, b), lambda: pair_statistics(
        stack.language_state_dict(a), stack.language_state_dict(b)))


def _row_key(r: dict):
    row = r["row"]
    return (1, 0, r["part"]) if row == ROW_ORDER_LAST else (0, int(row[1:]) if row[1:].isdigit() else 99, r["part"])


# --- language similarity ----------------------------------------------------------------------

def language_vectors(stack: LanguageStack) -> dict[str, dict[str, torch.Tensor]]:
    """τ = θ − init for every adapter language (θ itself when the bundle records no init)."""
    out = {}
    # A lazy (hub) profile compares the adapters loaded so far rather than downloading them all.
    codes = list(stack.flat) if getattr(stack, "lazy", False) else stack.bundle.adapter_languages()
    ref = stack.adapter_config.get(stack.bundle.task_language)
    for code in codes:
        sd = stack.language_state_dict(code)
        if ref is not None and stack.adapter_config.get(code, ref) != ref:
            continue  # another adapter config (e.g. size): not comparable, as check_mergeable says
        out[code] = language_vector(sd, stack.init) if stack.init is not None else dict(sd)
    return out


def similarity(stack: LanguageStack) -> dict:
    """Cosine similarity between every pair of language vectors, overall and per row (layer L0..,
    inv). Returns {"languages", "overall": [[...]], "per_row": {row: [[...]]}}."""
    vecs = language_vectors(stack)
    codes = list(vecs)
    keys = sorted(next(iter(vecs.values())))
    rows: dict[str, list[str]] = {}
    for k in keys:
        rows.setdefault(parameter_group(k)[0], []).append(k)

    def cos_matrix(ks: list[str]) -> list[list[float]]:
        m = torch.stack([torch.cat([vecs[c][k].flatten().double() for k in ks]) for c in codes])
        m = torch.nn.functional.normalize(m, dim=1)
        return (m @ m.T).tolist()

    per_row = {r: cos_matrix(ks) for r, ks in sorted(rows.items(), key=lambda kv: _row_key({"row": kv[0], "part": ""}))}
    return {"languages": codes, "overall": cos_matrix(keys), "per_row": per_row,
            "relative_to_init": stack.init is not None}


def rank_sources(stack: LanguageStack, target: str, sim: dict | None = None,
                 progress=None) -> list[dict]:
    """Source languages for a target, most similar first.

    With an adapter of its own, the target is compared by cosine of language vectors. Without one
    (zero-shot) there is no vector to compare; each adapter is scored instead by its masked-LM loss
    on the target's example texts (lower: the adapter models the language better), one
    ``progress(done, total, code)`` per adapter. Either way the candidates are the bundle's
    ``source_languages``: never a low-resource variant."""
    lang = stack.bundle.language(target)
    a = tasks.baseline_language(stack, target)
    sources = [c for c in stack.bundle.source_languages(target) if c != a]
    if lang.has_adapter:
        sim = sim or similarity(stack)
        if target not in sim["languages"]:
            raise tasks.InputError(f"the {target} adapter has another config than "
                                   f"{stack.bundle.task_language}'s and cannot be compared")
        i = sim["languages"].index(target)
        scored = [{"language": c, "score": sim["overall"][i][j], "measure": "cosine"}
                  for j, c in enumerate(sim["languages"]) if c in sources]
    else:
        scored = _mlm_scores(stack, target, sources, progress)
    return sorted(scored, key=lambda d: -d["score"])


def _mlm_scores(stack: LanguageStack, target: str, sources: list[str], progress=None) -> list[dict]:
    texts = list(stack.bundle.language(target).examples)
    if not texts:
        raise tasks.InputError(f"{target} has no example texts to rank sources by")
    out = []
    for i, c in enumerate(sources):
        out.append({"language": c, "score": -tasks.mlm_loss(stack, texts, c), "measure": "-MLM loss"})
        if progress:
            progress(i + 1, len(sources), c)
    return out


def similarity_vs_gain(stack: LanguageStack, sweeps: dict[str, dict], sim: dict | None = None) -> list[dict]:
    """For each swept target: cos(τ_A, τ_B) of the merged pair against the gain of arithmetic at
    the dev-chosen λ over the better single adapter (test accuracy)."""
    sim = sim or similarity(stack)
    idx = {c: i for i, c in enumerate(sim["languages"])}
    out = []
    for target, s in sweeps.items():
        a, b = s["a"], s.get("b") or s.get("source")
        best_single = max(s["a_alone"]["accuracy"], s["b_alone"]["accuracy"])
        out.append({"target": target, "a": a, "b": b, "cos": sim["overall"][idx[a]][idx[b]],
                    "gain": s["test_at_best"]["accuracy"] - best_single})
    return out
