"""Layer 3: keep and share a merge — a JSON recipe, an exported adapter folder + zip, URL links.

A recipe says everything needed to rebuild a view: profile, target, the languages and weights,
the merge method and its parameters. It is validated field by field, so a malformed file or URL
gets a clear message instead of a half-restored page.
"""

from __future__ import annotations

import json
import math
import shutil
import urllib.parse
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import tasks
from .arithmetic import (METHODS, PARAMS, check_lambda, check_weights, layer_lambdas,
                         merge_method, pair_weights)
from .loading import InputError
from .model import LanguageStack, Merge

MAX_LANGUAGES = 4
MAX_RECIPE_BYTES = 100_000  # a recipe is a few hundred bytes; the page refuses larger uploads too


@dataclass
class Recipe:
    target: str
    source: str | None = None
    lam: float = 0.5
    method: str = "linear"
    density: float | None = None
    seed: int = 0
    weights: dict[str, float] = field(default_factory=dict)  # N-way: overrides source/λ
    allow_extrapolation: bool = False
    profile: str = "embedded"
    lam_layers: list[float] | None = None  # layer_gradient: λ anchors from bottom to top layer
    lam_inv: float | None = None  # layer_gradient: λ of the invertible adapter (default: lam)
    k: int | None = None  # typology: how many of the most similar adapter languages
    temperature: float | None = None  # typology: wᵢ ∝ exp(simᵢ / T)
    typology: str | None = None  # typology: the URIEL feature set (default: typology's)

    def merge(self, stack: LanguageStack) -> Merge:
        """The engine's merge for this recipe (validated against the stack)."""
        stack.bundle.language(self.target)
        method = merge_method(self.method)
        if method.chooses_weights:  # weights from URIEL similarity, k and T: not from the recipe
            return self._typology_merge(stack)
        if self.weights:
            if len(self.weights) > MAX_LANGUAGES:
                raise InputError(f"at most {MAX_LANGUAGES} languages can be merged")
            w = dict(self.weights)
            check_weights(list(w.values()), allow_extrapolation=self.allow_extrapolation
                          or not method.weighted_sum)  # a weighted sum: weights sum to 1
        else:
            lam = check_lambda(self.lam, allow_extrapolation=self.allow_extrapolation)
            a = tasks.baseline_language(stack, self.target)
            b = self.source or tasks.suggested_source(stack, self.target)
            if a == b:
                raise InputError(f"source and baseline are both {a}")
            w = pair_weights(a, b, lam)
        stack.check_mergeable(list(w))
        extrapolate = self.allow_extrapolation or method.extrapolates
        if method.per_layer:
            return self._layer_merge(stack, w)
        return Merge.of(w, self.method, allow_extrapolation=extrapolate,
                        **{p: self.used(p) for p in method.params if p in PARAMS})

    def used(self, param: str):
        """What a parameter runs with: the recipe's value, else its one declared default
        (``arithmetic.PARAMS``), so a saved recipe says what was used; None where the method
        does not read it."""
        if self.method not in METHODS or param not in METHODS[self.method].settings:
            return None
        value = getattr(self, param)
        return PARAMS[param].default if value is None else value

    def resolved(self) -> "Recipe":
        """This recipe with the defaults it ran with written in (what ``recipe.json`` keeps)."""
        return replace(self, density=self.used("density")) if self.method in METHODS else self

    def _typology_merge(self, stack: LanguageStack) -> Merge:
        from . import typology

        return typology.merge(stack, self.target, self.typology or typology.DEFAULT_FEATURE_SET,
                              typology.DEFAULT_K if self.k is None else self.k,
                              typology.DEFAULT_TEMPERATURE if self.temperature is None else self.temperature)

    def _layer_merge(self, stack: LanguageStack, w: dict[str, float]) -> Merge:
        """A per-layer λ merge of A and B, its anchors checked against the stack's layer count."""
        if self.weights:
            raise InputError("a per-layer λ merges two languages (target's A and source B), not N-way weights")
        anchors = [self.lam] if self.lam_layers is None else list(self.lam_layers)
        layer_lambdas(anchors, stack.n_layers, allow_extrapolation=self.allow_extrapolation)
        lam_inv = check_lambda(self.lam if self.lam_inv is None else self.lam_inv,
                               allow_extrapolation=self.allow_extrapolation)
        return Merge.of(w, self.method, lam_layers=tuple(float(t) for t in anchors),
                        lam_inv=lam_inv, allow_extrapolation=self.allow_extrapolation)

    def to_json(self) -> str:
        return json.dumps({"langarith_recipe": 1, **asdict(self)}, indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Recipe":
        if len(text) > MAX_RECIPE_BYTES:
            raise InputError(f"the recipe is too large ({len(text):,} characters; a recipe is "
                             f"under {MAX_RECIPE_BYTES:,})")
        try:
            data = json.loads(text)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
            raise InputError(f"the recipe is not valid JSON: {e}") from None
        except RecursionError:  # "[[[[..." : the decoder gives up on deep nesting
            raise InputError("the recipe is not valid JSON: nested too deeply") from None
        if not isinstance(data, dict) or data.get("langarith_recipe") != 1:
            raise InputError("not a langarith recipe (missing \"langarith_recipe\": 1)")
        return cls.from_dict({k: v for k, v in data.items() if k != "langarith_recipe"})

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown recipe field(s): {', '.join(unknown)}")
        if not isinstance(data.get("target"), str):
            raise InputError("the recipe needs a \"target\" language code")
        r = cls(**data)
        for name, typ in (("source", (str, type(None))), ("method", str), ("profile", str),
                          ("weights", dict), ("allow_extrapolation", bool)):
            if not isinstance(getattr(r, name), typ):
                raise InputError(f"recipe field {name!r} has the wrong type")
        for name in ("lam", "seed"):
            v = getattr(r, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
                raise InputError(f"recipe field {name!r} must be a finite number")
        if not float(r.seed).is_integer() or not 0 <= r.seed < 2**63:
            raise InputError("recipe field 'seed' must be a whole number in [0, 2^63)")
        r.seed = int(r.seed)
        if r.density is not None and (isinstance(r.density, bool) or not isinstance(r.density, (int, float))
                                      or not 0 < r.density <= 1):
            raise InputError("recipe field 'density' must lie in (0, 1]")
        for c, w in r.weights.items():
            if not isinstance(c, str) or isinstance(w, bool) or not isinstance(w, (int, float)):
                raise InputError("recipe weights must map language codes to numbers")
        if r.lam_layers is not None and (not isinstance(r.lam_layers, list) or not all(
                _is_number(t) for t in r.lam_layers)):
            raise InputError("recipe field 'lam_layers' must be a list of numbers (λ per layer anchors)")
        if r.lam_inv is not None and not _is_number(r.lam_inv):
            raise InputError("recipe field 'lam_inv' must be a number")
        if r.k is not None and (isinstance(r.k, bool) or not isinstance(r.k, int) or not 1 <= r.k <= MAX_LANGUAGES):
            raise InputError(f"recipe field 'k' must be a whole number from 1 to {MAX_LANGUAGES}")
        if r.temperature is not None and (not _is_number(r.temperature) or r.temperature <= 0):
            raise InputError("recipe field 'temperature' must be a positive number")
        if r.typology is not None and not isinstance(r.typology, str):
            raise InputError("recipe field 'typology' must name a feature set")
        return r


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_anchors(text: str | None) -> list[float] | None:
    """``"0.2, 0.5, 0.8"`` -> [0.2, 0.5, 0.8]; empty -> None; a clear error for anything else
    (range and count are checked against the stack by ``Recipe.merge``)."""
    parts = [p.strip() for p in (text or "").replace(";", ",").split(",")]
    if not any(parts):
        return None
    out = []
    for p in parts:
        if not p:
            raise InputError(f"per-layer λ anchors: an empty value in {text!r}; write e.g. 0.2, 0.5, 0.8")
        try:
            out.append(float(p))
        except ValueError:
            raise InputError(f"per-layer λ anchor {p!r} is not a number; write e.g. 0.2, 0.5, 0.8") from None
    return out


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an int with hundreds of digits
        return False


def from_query(params: dict[str, str]) -> Recipe:
    """A recipe from URL query parameters ``target``, ``source``, ``lam`` (others ignored)."""
    if "target" not in params:
        raise InputError("the link has no target language")
    lam = params.get("lam", "0.5")
    try:
        lam_f = float(lam)
    except ValueError:
        raise InputError(f"λ in the link is not a number: {lam!r}") from None
    r = Recipe(target=params["target"], source=params.get("source") or None, lam=check_lambda(lam_f))
    if params.get("lam_layers"):  # ?lam_layers=0.2,0.5,0.8&lam_inv=0.5: a per-layer λ view
        r.method, r.lam_layers = "layer_gradient", parse_anchors(params["lam_layers"])
        if params.get("lam_inv"):
            try:
                lam_inv = float(params["lam_inv"])
            except ValueError:
                raise InputError(f"λ_inv in the link is not a number: {params['lam_inv']!r}") from None
            r.lam_inv = check_lambda(lam_inv)
    return r


MAX_LINK_TEXT = 1_000  # characters of free text a class link carries (longer: an example's index)


@dataclass
class Lesson:
    """What a class link adds to a recipe: the task, the text (an example's index into the
    target's examples, or the text itself) and the tour step (1-based) the class is at. The page
    checks the task, index and step against its bundle and tour."""
    task: str | None = None
    example: int | None = None
    text: str | None = None
    step: int | None = None


def _whole(params: dict[str, str], name: str) -> int | None:
    v = params.get(name)
    if v in (None, ""):
        return None
    if not v.strip().isdigit():
        raise InputError(f"{name} in the link must be a whole number ≥ 0, got {v!r}")
    return int(v)


def lesson_from_query(params: dict[str, str]) -> Lesson:
    """``task``, ``example`` or ``text``, and ``step`` of a class link (each optional)."""
    text = params.get("text") or None
    if text is not None and len(text) > MAX_LINK_TEXT:
        raise InputError(f"the link's text is {len(text):,} characters; a link carries at most {MAX_LINK_TEXT:,}")
    if text is not None and params.get("example"):
        raise InputError("the link names both an example and a text; keep one")
    return Lesson(task=params.get("task") or None, example=_whole(params, "example"), text=text,
                  step=_whole(params, "step"))


def to_query(recipe: Recipe, lesson: Lesson | None = None) -> str:
    """The link's query string: the view of ``recipe`` and, for a class, the ``lesson``."""
    q = {"target": recipe.target, "lam": f"{recipe.lam:g}"}
    if recipe.source:
        q["source"] = recipe.source
    if recipe.method in METHODS and METHODS[recipe.method].per_layer and recipe.lam_layers is not None:
        q["lam_layers"] = ",".join(f"{t:g}" for t in recipe.lam_layers)
        if recipe.lam_inv is not None:
            q["lam_inv"] = f"{recipe.lam_inv:g}"
    if lesson is not None:
        if lesson.text is not None and len(lesson.text) > MAX_LINK_TEXT:
            raise InputError(f"the text is {len(lesson.text):,} characters; a link carries at most "
                             f"{MAX_LINK_TEXT:,}: shorten it or pick one of the examples")
        q.update({k: str(v) for k, v in asdict(lesson).items() if v is not None})
    return "?" + urllib.parse.urlencode(q, quote_via=urllib.parse.quote)


def export(stack: LanguageStack, recipe: Recipe, out: str | Path) -> dict:
    """Write ``out/merged_adapter/`` (loads with ``adapters``' ``load_adapter``), its zip, and
    ``out/recipe.json``."""
    out = Path(out)
    merge = recipe.merge(stack)  # validate first: a refused recipe leaves no folder behind
    out.mkdir(parents=True, exist_ok=True)
    folder = stack.save_merged(merge, out / "merged_adapter")
    (out / "recipe.json").write_text(recipe.resolved().to_json() + "\n", encoding="utf-8")
    shutil.copy(out / "recipe.json", folder / "recipe.json")
    zip_path = shutil.make_archive(str(out / "merged_adapter"), "zip", root_dir=folder)
    return {"adapter_dir": str(folder), "zip": zip_path, "recipe": str(out / "recipe.json"),
            "weights": dict(merge.weights), "method": merge.method, "formula": tasks.formula(merge)}


def export_task(stack: LanguageStack, task: str, out: str | Path) -> dict:
    """Write the task adapter and its head to ``out/task_adapter/``: with the merged language
    adapter it rebuilds ``Stack(merged, task)`` elsewhere."""
    t = stack.bundle.task(task)
    folder = Path(out) / "task_adapter"
    with stack.lock:
        stack.model.save_adapter(str(folder), t.name, with_head=True, use_safetensors=True)
    return {"task": t.name, "task_kind": t.kind, "task_adapter_dir": str(folder)}
