"""Layer 1: language arithmetic on plain tensors.

State dicts in, state dicts out: no model, no adapters library, no UI. Each function is one idea
from the paper (Klimaszewski et al., COLING 2025):

    merged_adapter = λ·A + (1−λ)·B                      (interpolate)
    merged_adapter = Σ wᵢ·θᵢ                             (weighted_sum, the N-way form)
    merged_adapter = init + Σ wᵢ·(θᵢ − init)             (add_language_vectors, task-vector form)

Keys are the adapter-name-free parameter names produced by ``langarith.model`` (for example
``bert.encoder.layer.3.output.adapters.adapter_up.weight``), so adapters of different languages
line up key by key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

StateDict = Mapping[str, torch.Tensor]


class MergeError(ValueError):
    """Adapters that cannot be merged, or merge weights that make no sense. The message says why."""


def check_lambda(lam: float, *, allow_extrapolation: bool = False) -> float:
    """λ as a float, or a clear error: NaN, ±inf and (unless extrapolating) values outside [0, 1]."""
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise MergeError(f"λ must be a number, got {lam!r}") from None
    if not math.isfinite(lam):
        raise MergeError(f"λ must be a finite number, got {lam}")
    if not allow_extrapolation and not 0.0 <= lam <= 1.0:
        raise MergeError(f"λ must lie in [0, 1], got {lam} (extrapolation is off)")
    if allow_extrapolation and abs(lam) > 10:
        raise MergeError(f"λ = {lam} is far outside any sensible range (|λ| ≤ 10)")
    return lam


def check_weights(weights: Sequence[float], *, allow_extrapolation: bool = False) -> list[float]:
    """Finite merge weights; without extrapolation each in [0, 1] and summing to 1."""
    ws = [check_lambda(w, allow_extrapolation=True) for w in weights]
    if not ws:
        raise MergeError("at least one merge weight is needed")
    if not allow_extrapolation:
        if any(w < 0 or w > 1 for w in ws):
            raise MergeError(f"merge weights must lie in [0, 1], got {ws} (extrapolation is off)")
        if abs(sum(ws) - 1.0) > 1e-6:
            raise MergeError(f"merge weights must sum to 1, got {sum(ws):.6g}")
    return ws


def pair_weights(a: str, b: str, lam: float) -> dict[str, float]:
    """The pair merge λ·A + (1−λ)·B as weights per language: the one place where 1 − λ is formed.
    Rounded so that λ = 0.3 gives 0.7, not 0.7000000000000001: the memo keys a merge by its value,
    so every caller must spell the same pair the same way."""
    if a == b:
        raise MergeError(f"a pair merge needs two languages, got {a} twice")
    return {a: lam, b: round(1.0 - lam, 10)}


def check_compatible(*state_dicts: StateDict, names: Sequence[str] | None = None) -> None:
    """Raise MergeError naming the first tensor whose key set or shape differs between adapters."""
    names = list(names or [f"adapter {i}" for i in range(len(state_dicts))])
    first, first_name = state_dicts[0], names[0]
    for sd, name in zip(state_dicts[1:], names[1:]):
        missing = sorted(set(first) - set(sd))
        extra = sorted(set(sd) - set(first))
        if missing or extra:
            key = (missing or extra)[0]
            where = name if missing else first_name
            raise MergeError(
                f"cannot merge {first_name} with {name}: tensor {key!r} is missing from {where}"
                f" ({len(missing) + len(extra)} keys differ)"
            )
        for key, t in first.items():
            if sd[key].shape != t.shape:
                raise MergeError(
                    f"cannot merge {first_name} with {name}: tensor {key!r} has shape "
                    f"{tuple(t.shape)} vs {tuple(sd[key].shape)}"
                )


def interpolate(a: StateDict, b: StateDict, lam: float) -> dict[str, torch.Tensor]:
    """The paper's merge: λ·A + (1−λ)·B, parameter by parameter."""
    lam = check_lambda(lam)
    check_compatible(a, b, names=["A", "B"])
    # torch.lerp(b, a, λ) = b + λ·(a − b) = λ·a + (1−λ)·b, in one pass.
    return {k: torch.lerp(b[k], a[k], lam) for k in a}


def weighted_sum(state_dicts: Sequence[StateDict], weights: Sequence[float],
                 *, allow_extrapolation: bool = False) -> dict[str, torch.Tensor]:
    """N-way merge Σ wᵢ·θᵢ (the reference code also sums three languages)."""
    ws = check_weights(weights, allow_extrapolation=allow_extrapolation)
    if len(ws) != len(state_dicts):
        raise MergeError(f"{len(state_dicts)} adapters but {len(ws)} weights")
    check_compatible(*state_dicts)
    return {k: sum(w * sd[k] for w, sd in zip(ws, state_dicts)) for k in state_dicts[0]}


def row_mix(outputs: Sequence[torch.Tensor], row_weights: torch.Tensor) -> torch.Tensor:
    """``out[r] = Σ_l row_weights[r, l] · outputs[l][r]``: each row of a batch mixes the sources'
    outputs with its own weights. For a linear map this equals running row r through the merged
    map ``Σ_l w[r, l]·W_l`` (bias likewise), so visitors with their own λ share one forward pass
    without a merged weight matrix per row."""
    if row_weights.ndim != 2 or row_weights.shape[1] != len(outputs):
        raise MergeError(f"{len(outputs)} outputs but row weights of shape {tuple(row_weights.shape)}")
    shape = (-1, *[1] * (outputs[0].ndim - 1))
    w = row_weights.to(outputs[0].dtype)
    out = outputs[0] * w[:, 0].reshape(shape)
    for l in range(1, len(outputs)):
        out = out + outputs[l] * w[:, l].reshape(shape)
    return out


def language_vector(adapter: StateDict, init: StateDict) -> dict[str, torch.Tensor]:
    """τ = θ − init: what training on one language added to the shared initialisation."""
    check_compatible(adapter, init, names=["adapter", "init"])
    return {k: adapter[k] - init[k] for k in adapter}


def add_language_vectors(init: StateDict, adapters: Sequence[StateDict], weights: Sequence[float],
                         *, allow_extrapolation: bool = False) -> dict[str, torch.Tensor]:
    """Task-vector form init + Σ wᵢ·(θᵢ − init); equals weighted_sum when Σ wᵢ = 1."""
    ws = check_weights(weights, allow_extrapolation=allow_extrapolation)
    if len(ws) != len(adapters):
        raise MergeError(f"{len(adapters)} adapters but {len(ws)} weights")
    check_compatible(init, *adapters)
    return {k: init[k] + sum(w * (sd[k] - init[k]) for w, sd in zip(ws, adapters)) for k in init}


# One default for TIES and DARE, wherever a merge is asked for (page, CLI, recipe): what a
# recipe without a density ran with must not depend on where it was made.
DEFAULT_DENSITY = 0.5


def ties_merge(init: StateDict, adapters: Sequence[StateDict], weights: Sequence[float],
               density: float = DEFAULT_DENSITY) -> dict[str, torch.Tensor]:
    """TIES (Yadav et al., 2023) on language vectors: trim each τᵢ to its top ``density`` by
    magnitude, elect the sign per parameter, average the agreeing weighted entries; init + result.
    Uses ``peft.utils.merge_utils.ties`` per tensor (trimming is per tensor, as in PEFT)."""
    from peft.utils.merge_utils import ties

    ws = check_weights(weights, allow_extrapolation=True)
    _check_density(density)
    check_compatible(init, *adapters)
    w = torch.tensor(ws)
    return {k: init[k] + ties([sd[k] - init[k] for sd in adapters], w.to(init[k]), density)
            for k in init}


def dare_merge(init: StateDict, adapters: Sequence[StateDict], weights: Sequence[float],
               density: float = DEFAULT_DENSITY, seed: int = 0) -> dict[str, torch.Tensor]:
    """DARE (Yu et al., 2024): drop each entry of τᵢ with probability 1 − density, rescale the
    survivors by 1/density, then sum the weighted vectors; init + result. Seeded.

    Written here rather than with ``peft.utils.merge_utils.dare_linear``: in peft 0.17.1 its
    rescale step discards the result of ``torch.div`` (no 1/density scaling), and it draws from the
    global RNG, which a seeded, concurrent web app must not touch."""
    ws = check_weights(weights, allow_extrapolation=True)
    _check_density(density)
    check_compatible(init, *adapters)
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for k in sorted(init):
        acc = init[k].clone()
        for w, sd in zip(ws, adapters):
            keep = torch.rand(init[k].shape, generator=gen) < density
            acc += w * (sd[k] - init[k]) * keep.to(acc.dtype).to(acc.device) / density
        out[k] = acc
    return out


def _check_density(density: float) -> None:
    if not (isinstance(density, (int, float)) and math.isfinite(density) and 0 < density <= 1):
        raise MergeError(f"density must lie in (0, 1], got {density!r}")


# --- per-layer λ: a gradient over depth (mergekit's ``t: [0, 0.5, 1]``) ------------------------


def layer_index(key: str) -> int | None:
    """Encoder layer of a language-adapter tensor; None for the invertible adapter."""
    if "invertible_adapters" in key:
        return None
    m = _LAYER.search(key)
    if m is None:
        raise MergeError(f"tensor {key!r} belongs to no encoder layer and is not the invertible adapter")
    return int(m.group(1))


def count_layers(keys) -> int:
    """Layers an adapter spans: the highest layer index + 1 (a left-out layer still counts)."""
    idx = [i for i in map(layer_index, keys) if i is not None]
    if not idx:
        raise MergeError("the adapter has no per-layer tensors to give a per-layer λ")
    return max(idx) + 1


def layer_lambdas(anchors, n_layers: int, *, allow_extrapolation: bool = False) -> list[float]:
    """λ of each of ``n_layers`` layers: the anchors spread evenly from the first layer to the
    last, linear in between (one anchor: constant; [0.2, 0.8]: 0.2 at the bottom, 0.8 on top)."""
    if isinstance(anchors, (str, bytes)) or not hasattr(anchors, "__len__"):
        raise MergeError(f"per-layer λ anchors must be a list of numbers, got {anchors!r}")
    if len(anchors) == 0:
        raise MergeError("per-layer λ needs at least one anchor value, e.g. 0.2, 0.5, 0.8")
    if len(anchors) > n_layers:
        raise MergeError(f"{len(anchors)} λ anchors for {n_layers} layers: give at most one per layer")
    ts = []
    for i, t in enumerate(anchors):
        try:
            ts.append(check_lambda(t, allow_extrapolation=allow_extrapolation))
        except MergeError as e:
            raise MergeError(f"per-layer λ anchor {i + 1} of {len(anchors)}: {e}") from None
    if len(ts) == 1 or n_layers == 1:
        return [ts[0]] * n_layers
    out = []
    for layer in range(n_layers):
        x = layer * (len(ts) - 1) / (n_layers - 1)  # position on the anchor axis
        lo = min(int(x), len(ts) - 2)
        frac = x - lo
        # frac == 0 at an anchor: its value exactly (a constant gradient stays bit-exact).
        out.append(ts[lo] if frac == 0 else ts[lo] + frac * (ts[lo + 1] - ts[lo]))
    return out


def layer_gradient(a: StateDict, b: StateDict, anchors, lam_inv: float,
                   *, allow_extrapolation: bool = False) -> dict[str, torch.Tensor]:
    """λ_l·A + (1−λ_l)·B with λ_l from ``layer_lambdas`` per encoder layer, and
    λ_inv·A + (1−λ_inv)·B for the invertible adapter (it sits on the embeddings, below layer 0)."""
    check_compatible(a, b, names=["A", "B"])
    lam_inv = check_lambda(lam_inv, allow_extrapolation=allow_extrapolation)
    lams = layer_lambdas(anchors, count_layers(a), allow_extrapolation=allow_extrapolation)
    out = {}
    for k in a:
        i = layer_index(k)
        out[k] = torch.lerp(b[k], a[k], lam_inv if i is None else lams[i])
    return out


def layer_gradient_merge(init, adapters: Sequence[StateDict], weights: Sequence[float],
                         lam_layers=None, lam_inv: float | None = None,
                         allow_extrapolation: bool = False) -> dict[str, torch.Tensor]:
    """The registry's form of ``layer_gradient``: two adapters [A, B]; without anchors
    (``lam_layers``) λ = the first weight everywhere, and λ_inv defaults to it too."""
    if len(adapters) != 2:
        raise MergeError(f"a per-layer λ merges exactly two adapters (A and B), got {len(adapters)}")
    lam = check_lambda(weights[0], allow_extrapolation=True)
    return layer_gradient(adapters[0], adapters[1], [lam] if lam_layers is None else lam_layers,
                          lam if lam_inv is None else lam_inv, allow_extrapolation=allow_extrapolation)


def typology_weights(similarities: Mapping[str, float], k: int, temperature: float) -> dict[str, float]:
    """TIPA-style weights (Accou & Poelman, 2026): the ``k`` languages most similar to the target,
    wᵢ ∝ exp(simᵢ / T), summing to 1; ties in similarity keep the given order."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(4, len(similarities)):
        raise MergeError(f"k must be a whole number from 1 to {min(4, len(similarities))}, got {k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise MergeError(f"the temperature must be a positive number, got {temperature!r}")
    top = sorted(similarities.items(), key=lambda kv: -kv[1])[:k]
    best = top[0][1]  # subtracting the maximum keeps exp() finite at small T
    e = [math.exp((s - best) / temperature) for _, s in top]
    return {c: x / sum(e) for (c, _), x in zip(top, e)}


# --- the merge-method registry (as mergekit's merge_methods/registry.py) -------------------------


@dataclass(frozen=True)
class MethodParam:
    """One parameter of the merge methods, declared once: its name is the field of the recipe
    (``share.Recipe``, ``recipe.json``), of the engine's ``model.Merge`` and of the page's method
    panel (``page.common.Method``), and the CLI's option; ``methods``: the methods that read it;
    ``to_function``: passed to the method's function (else the recipe uses it to choose the
    weights, as the typology merge does)."""

    name: str
    type: type
    default: object
    help: str
    methods: tuple[str, ...]
    to_function: bool = True


PARAMS: dict[str, MethodParam] = {p.name: p for p in [
    MethodParam("density", float, DEFAULT_DENSITY, "the share of each language vector kept, in (0, 1]",
                ("ties", "dare")),
    MethodParam("seed", int, 0, "the seed of DARE's random drop", ("dare",)),
    MethodParam("lam_layers", tuple, None, "per-layer λ: anchors from the bottom layer to the top, "
                "interpolated linearly", ("layer_gradient",)),
    MethodParam("lam_inv", float, None, "per-layer λ: the invertible adapter's λ (default: λ)",
                ("layer_gradient",)),
    MethodParam("typology", str, None, "the URIEL feature set of the similarity", ("typology",),
                to_function=False),
    MethodParam("k", int, None, "merge the k adapter languages most similar to the target",
                ("typology",), to_function=False),
    MethodParam("temperature", float, None, "weights wᵢ ∝ exp(simᵢ / T)", ("typology",),
                to_function=False),
]}


@dataclass(frozen=True)
class MergeMethod:
    """One merge method as data: what the model, the recipe, the page and the CLI read.

    ``function(init, adapters, weights, **params)`` returns the merged state dict; ``params``:
    the ``PARAMS`` it reads, as ``model.Merge`` holds them; ``needs_init``: it works on language
    vectors θ − init; ``in_place``: the live slot writes it as a weighted sum over flat buffers
    (``per_layer``: one λ per encoder layer) instead of computing and copying a state dict;
    ``extrapolates``: its weights need not sum to 1; ``chooses_weights``: the languages and
    weights come from the typology layer, not from the recipe; ``weighted_sum``: the merge is
    Σ wᵢ·θᵢ over its weights; ``formula``: how the page and the CLI write it (``{body}``: the
    weighted languages, ``{extra}``: its density, if any; None for a per-layer merge, which has
    its own)."""

    name: str
    label: str
    function: Callable[..., dict[str, torch.Tensor]]
    needs_init: bool = False
    in_place: bool = False
    per_layer: bool = False
    extrapolates: bool = False
    chooses_weights: bool = False
    weighted_sum: bool = False
    formula: str | None = "merged = {body}"

    @property
    def params(self) -> tuple[str, ...]:
        """The keyword arguments of ``function``: its declared parameters, and for a per-layer
        merge the recipe's extrapolation switch (its anchors are λ values too)."""
        own = tuple(n for n, p in PARAMS.items() if self.name in p.methods and p.to_function)
        return own + (("allow_extrapolation",) if self.per_layer else ())

    @property
    def settings(self) -> tuple[str, ...]:
        """Every parameter a recipe of this method sets (the page shows these controls)."""
        return tuple(n for n, p in PARAMS.items() if self.name in p.methods)


def _linear(init, adapters, weights):
    return weighted_sum(adapters, weights)


def _task_arithmetic(init, adapters, weights):
    return add_language_vectors(init, adapters, weights, allow_extrapolation=True)


METHODS: dict[str, MergeMethod] = {m.name: m for m in [
    MergeMethod("linear", "linear: λ·A + (1−λ)·B", _linear, in_place=True, weighted_sum=True),
    MergeMethod("task_arithmetic", "task arithmetic (may extrapolate)", _task_arithmetic,
                needs_init=True, in_place=True, extrapolates=True,
                formula="merged = init + Σ wᵢ·(θᵢ − init), {body}"),
    MergeMethod("ties", "TIES", ties_merge, needs_init=True, formula="merged = TIES({body}{extra})"),
    MergeMethod("dare", "DARE (seeded)", dare_merge, needs_init=True, formula="merged = DARE({body}{extra})"),
    MergeMethod("layer_gradient", "per-layer λ (gradient over depth)", layer_gradient_merge,
                in_place=True, per_layer=True, formula=None),
    # weights from ``typology_weights`` (chosen by the typology layer), then a weighted sum
    MergeMethod("typology", "typology-weighted (URIEL, top k)", _linear, in_place=True,
                chooses_weights=True, weighted_sum=True, formula="merged = TYPOLOGY({body}{extra})"),
]}


def merge_method(name: str) -> MergeMethod:
    """The registry entry of ``name``, or a MergeError listing the known ones."""
    if name not in METHODS:
        raise MergeError(f"unknown merge method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def method_choices() -> list[tuple[str, str]]:
    """(label, name) of every merge method, in registry order: a radio's or a CLI's choices."""
    return [(m.label, m.name) for m in METHODS.values()]


# --- statistics of a merge (pure, used by the analysis layer) -------------------------------

_LAYER = re.compile(r"\.layer\.(\d+)\.")


def parameter_group(key: str) -> tuple[str, str]:
    """(row, column) of a parameter in the per-layer plots: ("L3", "down"), ("inv", "F"), ..."""
    if "invertible_adapters" in key:
        return "inv", "F" if ".F." in key else "G"
    m = _LAYER.search(key)
    row = f"L{m.group(1)}" if m else "other"
    return row, "down" if "adapter_down" in key else "up" if "adapter_up" in key else "other"


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    denom = a.norm() * b.norm()
    return float(a @ b / denom) if denom > 0 else float("nan")


def merge_geometry(a: StateDict, b: StateDict, merged: StateDict) -> list[dict]:
    """Per (row, part) group: ‖M−A‖/‖A‖, ‖M−B‖/‖B‖ and cos(A, B) — the rows of the per-layer plot."""
    check_compatible(a, b, merged, names=["A", "B", "merged"])
    sums: dict[tuple[str, str], list[float]] = {}
    for key in a:
        A, B, M = (t[key].flatten().double() for t in (a, b, merged))
        s = sums.setdefault(parameter_group(key), [0.0] * 5)
        for i, v in enumerate(((M - A).square().sum(), A.square().sum(), (M - B).square().sum(),
                               B.square().sum(), A @ B)):
            s[i] += float(v)
    nan = float("nan")
    return [{
        "row": row, "part": part,
        "dist_to_A": (dma / aa) ** 0.5 if aa else nan,
        "dist_to_B": (dmb / bb) ** 0.5 if bb else nan,
        "cos_AB": ab / (aa * bb) ** 0.5 if aa and bb else nan,
    } for (row, part), (dma, aa, dmb, bb, ab) in sums.items()]


def pair_statistics(a: StateDict, b: StateDict) -> dict[tuple[str, str], tuple[float, float, float, float]]:
    """Per (row, part) group: ‖A‖², ‖B‖², ‖A − B‖², A·B — everything the geometry of a linear
    merge needs, at any λ (see ``linear_merge_geometry``)."""
    check_compatible(a, b, names=["A", "B"])
    sums: dict[tuple[str, str], list[float]] = {}
    for key in a:
        A, B = a[key].flatten().double(), b[key].flatten().double()
        s = sums.setdefault(parameter_group(key), [0.0] * 4)
        for i, v in enumerate((A.square().sum(), B.square().sum(), (A - B).square().sum(), A @ B)):
            s[i] += float(v)
    return {g: tuple(v) for g, v in sums.items()}


def linear_merge_geometry(stats: dict, lam: float) -> list[dict]:
    """``merge_geometry`` of λ·A + (1−λ)·B from ``pair_statistics``, without touching a tensor:
    M − A = (1−λ)(B − A) and M − B = λ(A − B), so both distances are linear in λ."""
    lam = check_lambda(lam, allow_extrapolation=True)
    nan = float("nan")
    return [{
        "row": row, "part": part,
        "dist_to_A": abs(1 - lam) * (dab / aa) ** 0.5 if aa else nan,
        "dist_to_B": abs(lam) * (dab / bb) ** 0.5 if bb else nan,
        "cos_AB": ab / (aa * bb) ** 0.5 if aa and bb else nan,
    } for (row, part), (aa, bb, dab, ab) in stats.items()]
