"""Layer 3: the bundle's precomputed evaluation — λ sweeps with intervals, where the merge matters
(per-item predictions), held-out masked-LM curves.

The build (``langarith.bundle.build``, stage ``evaluate``) writes ``results/results.json``
(summaries: metrics per λ, the paired bootstrap, masked-LM curves) and
``results/sweeps/<task>/<target>.json`` (the same sweep with every eval item's predicted label at
every λ of the grid). Per-item predictions cannot be recomputed live on a CPU (about 20 s per λ for
1,000 items), so the page reads them here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .loading import InputError
from .model import LanguageStack
from . import tasks
from .tasks import decode_predictions, item_keys, load_eval

SETTINGS = ("zero_shot", "enhancement", "low_resource")


@lru_cache(maxsize=16)
def _read_json(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _read(path: Path) -> dict | None:
    """A results file (cached until it changes), None if absent; a corrupt one is refused."""
    if not path.is_file():
        return None
    try:
        return _read_json(str(path), path.stat().st_mtime)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"the bundle's {path.name} is not readable ({e}); rebuild its results "
                         "with `python -m langarith.bundle build --stages evaluate`") from None


def bundle_results(stack: LanguageStack) -> dict:
    """``results.json`` of the bundle ({} when the bundle has none)."""
    rel = stack.bundle.manifest.get("results")
    return (_read(stack.bundle.path(rel)) if rel else None) or {}


def sweep_summary(stack: LanguageStack, target: str, source: str | None = None) -> dict | None:
    """The precomputed sweep of a target (for ``source`` if given), or None."""
    results = bundle_results(stack)
    for setting in SETTINGS:
        curve = results.get(setting, {}).get(target)
        if curve and (source is None or curve.get("b") == source):
            return {**curve, "setting": setting}
    return None


def shipped_sweep(stack: LanguageStack, target: str, source: str, task: str) -> dict | None:
    """The precomputed sweep of this pair on this task (whatever its λ grid), or None."""
    pre = sweep_summary(stack, target, source)
    return pre if pre and pre.get("task") == task else None


def sweep_items(stack: LanguageStack, target: str, source: str | None = None) -> dict | None:
    """The precomputed sweep with per-item predictions (``predictions[split][i]`` at
    ``points[i]["lam"]``), or None."""
    summary = sweep_summary(stack, target, source)
    if summary is None:
        return None
    return _read(stack.bundle.path("results") / "sweeps" / summary["task"] / f"{target}.json")


def precomputed_or_sweep(stack: LanguageStack, target: str, a: str, b: str, lambdas, task: str) -> dict:
    """The λ sweep with per-item predictions: the bundle's precomputed one when it is for this
    pair, task, grid and eval set (the build's own predictions, marked ``from``), else computed."""
    pre = sweep_items(stack, target, b)
    if (pre and pre.get("a") == a and pre.get("task") == task
            and [round(p["lam"], 6) for p in pre["points"]] == [round(x, 6) for x in lambdas]
            and pre.get("keys") == {s: item_keys(load_eval(stack, target, task, s), s)
                                    for s in ("dev", "test")}):
        return {**pre, "from": "precomputed"}
    return tasks.sweep(stack, target, b, lambdas, task)


def measured(stack: LanguageStack, name: str) -> dict | None:
    """A measurement the bundle ships beside its sweeps (``results/<name>.json``: ``lowres``,
    ``beyond``, ``typology``), or None."""
    return _read(stack.bundle.path("results") / f"{name}.json")


def mlm_summary(stack: LanguageStack, target: str, source: str | None = None) -> dict | None:
    """The precomputed held-out masked-LM curve of a target (for ``source`` if given), or None."""
    curve = bundle_results(stack).get("mlm", {}).get(target)
    if curve and (source is None or curve["b"] == source):
        return curve
    return None


def evaluate_target(stack: LanguageStack, target: str, source: str, lambdas, mlm_lambdas,
                    heldout: list[str], task: str | None = None, batch_size: int = 32) -> dict:
    """What the build precomputes for one target: the λ sweep with per-item predictions (and its
    bootstrap) and the masked-LM curve on held-out text of the target language."""
    sweep = tasks.sweep(stack, target, source, lambdas, task, batch_size=batch_size)
    mlm = tasks.mlm_curve(stack, heldout, sweep["a"], sweep["b"], mlm_lambdas)
    return {"sweep": sweep, "mlm": mlm}


def write_target(root: Path, results: dict, setting: str, target: str, computed: dict) -> None:
    """File one target's precomputed evaluation into a bundle's ``results`` (the caller writes
    ``results.json``): the summary in ``results[setting]``, the per-item predictions in
    ``results/sweeps/<task>/<target>.json``, the held-out masked-LM curve in ``results["mlm"]``."""
    sweep = computed["sweep"]
    folder = Path(root) / "results" / "sweeps" / sweep["task"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{target}.json").write_text(json.dumps(sweep), encoding="utf-8")
    results.setdefault(setting, {})[target] = summary(sweep)
    results.setdefault("mlm", {})[target] = tasks.heldout_mlm_summary(computed["mlm"])


def summary(sweep: dict) -> dict:
    """A sweep without its per-item predictions and keys (those live in results/sweeps/)."""
    return {k: v for k, v in sweep.items() if k not in ("predictions", "keys")}


def heldout_texts(stack: LanguageStack, target: str) -> list[str]:
    """The bundle's held-out text of a language for the masked-LM curve (``eval/mlm/<code>.txt``:
    never trained on), or [] when it has none."""
    path = stack.bundle.path("eval") / "mlm" / f"{stack.bundle.text_of(target)}.txt"
    if not path.is_file():
        return []
    return [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]


def nearest_lam(points: list[dict], lam: float) -> float:
    return min((p["lam"] for p in points), key=lambda x: (abs(x - lam), x))


def flips(stack: LanguageStack, target: str, source: str | None, lam: float, split: str = "dev",
          limit: int = 50, cut: int = 140) -> dict:
    """Where the merge matters, at the grid λ nearest to ``lam``, on the target's ``split`` items:
    how many the merge gets right that A (or B) gets wrong ("fixed") and the reverse ("broken"),
    and up to ``limit`` items whose predicted label differs between A, the merge and B."""
    sw = sweep_items(stack, target, source)
    if sw is None:
        raise InputError(f"no precomputed predictions for {target}"
                         + (f" with source {source}" if source else "") + ": run the λ sweep")
    rows = load_eval(stack, target, sw["task"], split)
    keys = sw["keys"][split]
    if item_keys(rows, split) != keys:
        raise InputError(f"the {target} eval set does not match its precomputed predictions")
    lams = [p["lam"] for p in sw["points"]]
    at = nearest_lam(sw["points"], lam)
    pred = {name: decode_predictions(sw["predictions"][split][lams.index(x)])
            for name, x in (("A", 1.0), ("merged", at), ("B", 0.0))}
    labels = stack.bundle.task(sw["task"]).labels
    gold = [labels.index(r["label"]) for r in rows]
    ok = {k: [p == g for p, g in zip(v, gold)] for k, v in pred.items()}
    counts = {f"{what}_vs_{k.lower()}": sum(m != o and (m if what == "fixed" else o)
                                           for m, o in zip(ok["merged"], ok[k]))
              for k in ("A", "B") for what in ("fixed", "broken")}
    differ = [i for i in range(len(rows)) if len({pred["A"][i], pred["merged"][i], pred["B"][i]}) > 1]
    # The merge's wins first, then its losses, then the rest: the table reads as the lesson.
    differ.sort(key=lambda i: (not (ok["merged"][i] and not (ok["A"][i] and ok["B"][i])),
                               not (ok["A"][i] or ok["B"][i]) and not ok["merged"][i], i))
    # Counted, never listed: a dev item whose text is also a test item's (under another key).
    hide = tasks.test_texts(stack, target) if split != "test" else frozenset()
    listed = [i for i in differ if " ".join(rows[i]["text"].split()) not in hide][:limit]
    table = [{"key": keys[i], "text": _cut(rows[i]["text"], cut), "gold": rows[i]["label"],
              **{k: labels[pred[k][i]] for k in ("A", "merged", "B")}} for i in listed]
    return {"target": target, "a": sw["a"], "b": sw["b"], "lam": at, "split": split,
            "n": len(rows), "n_differ": len(differ), **counts, "rows": table,
            "texts": {keys[i]: rows[i]["text"] for i in listed}}


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1].rstrip() + "…"


def first_example(stack: LanguageStack, target: str, lam: float = 0.5) -> str | None:
    """A dev item on which A, the merge at ``lam`` and B do not all agree (never a test item):
    of moderate length, preferring one the merge gets right. None without precomputed data."""
    try:
        f = flips(stack, target, None, lam, "dev", limit=10_000)
    except InputError:
        return None
    texts = [f["texts"][r["key"]] for r in f["rows"]]
    moderate = [t for t in texts if 40 <= len(t) <= 240]
    return (moderate or texts or [None])[0]
