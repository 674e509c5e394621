"""Layer 3: which languages to merge — URIEL typology (lang2vec) beside the adapters' own similarity,
and the typology-weighted merge (TIPA, Accou & Poelman, Findings of EACL 2026).

Vectors: lang2vec 1.1.2 ships URIEL in its wheel (no network). Syntax, phonology and inventory use
the kNN-imputed vectors (``syntax_knn`` ...), which are complete: the raw WALS/SSWL/PHOIBLE sets
have gaps ("--") for most languages. Family is ``fam`` (one bit per Glottolog ancestor node),
geography ``geo`` (closeness to 299 fixed points on the globe, in [0, 1]).

Measure: cosine for syntax, phonology, inventory and family — URIEL's own distances between
feature vectors are cosine distances (Littell et al., 2017), so this is 1 − that distance; for the
binary ``fam`` vectors it is shared ancestors / √(depth_a · depth_b). Geography uses 1 − mean |Δ|:
all its entries are positive, so cosines saturate (0.99+ for any two European languages).

    python -m langarith.typology evaluate [--bundle B] [--feature-set syntax] [--out FILE]
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from . import results, stats, tasks
from .arithmetic import METHODS, MergeError, pair_weights, typology_weights
from .loading import InputError
from .model import LanguageStack, Merge

FEATURE_SETS = {  # our name -> (lang2vec feature set, measure)
    "syntax": ("syntax_knn", "cosine"),
    "phonology": ("phonology_knn", "cosine"),
    "inventory": ("inventory_knn", "cosine"),
    "family": ("fam", "cosine"),
    "geography": ("geo", "1 − mean |Δ|"),
}
DEFAULT_FEATURE_SET = "family"  # genetic relatedness: what the paper means by a "related language"
DEFAULT_K, DEFAULT_TEMPERATURE = 3, 0.1

# Our codes (bundle, catalogue: Wikipedia / ISO 639-1 style) -> URIEL's ISO 639-3, where lang2vec's
# own two-letter table gives none or a macrolanguage URIEL has no entry for.
ISO3 = {"pt-br": "por", "nb": "nob", "nn": "nor", "zh": "cmn", "zh_yue": "yue", "ar": "arb",
        "fa": "pes", "gn": "gug", "kv": "kpv", "qu": "quy", "sw": "swh", "bh": "bho"}
NOTES = {"pt-br": "URIEL has one Portuguese (por) for pt and pt-br",
         "nn": "URIEL has no Nynorsk (nno): the Norwegian macrolanguage (nor) stands in",
         "zh": "Mandarin (cmn) for the Chinese macrolanguage", "ar": "Standard Arabic (arb)",
         "fa": "Western Persian (pes)", "gn": "Paraguayan Guaraní (gug)",
         "kv": "Komi-Zyrian (kpv)", "qu": "Ayacucho Quechua (quy)", "sw": "Swahili (swh)",
         "bh": "Bhojpuri (bho), the language of the bh Wikipedia"}


@functools.lru_cache(maxsize=1)
def _lang2vec():
    """lang2vec itself (the tests' independent reference): importing it takes seconds (it
    imports ``pkg_resources``, which warns, and reads its family file feature by feature)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lang2vec.lang2vec as l2v
    return l2v


# lang2vec's files and sources of our feature sets (its FEATURE_SETS_DICT entries).
URIEL_FILES = {"syntax_knn": ("feature_predictions.npz", "predicted", "S_"),
               "phonology_knn": ("feature_predictions.npz", "predicted", "P_"),
               "inventory_knn": ("feature_predictions.npz", "predicted", "INV_"),
               "fam": ("family_features.npz", "FAM", ""),
               "geo": ("geocoord_features.npz", "GEOCOORDS", "")}


def _uriel_data_dir():
    """lang2vec's data folder, found without importing lang2vec."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("lang2vec")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("lang2vec is not installed: the typology view needs lang2vec==1.1.2")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@functools.lru_cache(maxsize=None)
def _uriel_index(filename: str) -> dict:
    """One of lang2vec's URIEL files' row and column indexes, read once. (lang2vec's
    ``get_features`` re-reads the file's feature names for every feature it picks: ~5 s for
    ``fam``; this lookup takes milliseconds.) The values (``fam``: 118 MB) are not kept."""
    with np.load(_uriel_data_dir() / filename) as db:
        langs, feats, sources = db["langs"], db["feats"], db["sources"]
    first: dict[str, int] = {}
    for i, f in enumerate(feats):
        first.setdefault(str(f), i)
    return {"langs": langs, "feats": feats, "sources": sources,
            "lang_index": {str(code): i for i, code in enumerate(langs)}, "feat_index": first}


def _uriel_data(filename: str) -> np.ndarray:
    with np.load(_uriel_data_dir() / filename) as db:
        return db["data"]


@functools.lru_cache(maxsize=1)
def letter_codes() -> dict[str, str]:
    """lang2vec's two-letter -> ISO 639-3 table (its ``LETTER_CODES``)."""
    import json

    return json.loads((_uriel_data_dir() / "letter_codes.json").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def uriel_languages() -> frozenset[str]:
    """The codes lang2vec calls ``URIEL_LANGUAGES``, by its own rule, vectorised: for each
    column ``i`` of the family file where some source has a value for every language, the
    ``i``-th language (tests/test_typology.py checks the set against lang2vec's)."""
    langs = _uriel_index("family_features.npz")["langs"]
    mask = np.all(_uriel_data("family_features.npz") != -1.0, axis=0)
    return frozenset(str(langs[i]) for i in np.flatnonzero(mask.sum(axis=1) > 0))


def uriel_code(code: str) -> str:
    """URIEL's ISO 639-3 code for one of ours, or InputError saying that URIEL lacks it."""
    iso = ISO3.get(code) or letter_codes().get(code) or code
    if iso not in uriel_languages():
        raise InputError(f"URIEL (lang2vec 1.1.2) has no entry for {code!r} (ISO 639-3 {iso!r}): "
                         "its typology cannot be compared")
    return iso


def feature_set_choices() -> list[tuple[str, str]]:
    """(label, name) of every feature set, e.g. ("syntax (syntax_knn, cosine)", "syntax"): a
    dropdown's choices."""
    return [(f"{name} ({vec}, {measure})", name) for name, (vec, measure) in FEATURE_SETS.items()]


def check_feature_set(name: str) -> str:
    if name not in FEATURE_SETS:
        raise InputError(f"unknown typology feature set {name!r}; known: {', '.join(FEATURE_SETS)}")
    return name


@functools.lru_cache(maxsize=64)
def uriel_vectors(isos: tuple[str, ...], feature_set: str) -> np.ndarray:
    """``[n, d]`` URIEL vectors of distinct ISO 639-3 codes; a value URIEL lacks is NaN. The
    same rows, columns and source as ``lang2vec.get_features`` (tests/test_typology.py checks)."""
    name = FEATURE_SETS[check_feature_set(feature_set)][0]
    filename, source, prefix = URIEL_FILES[name]
    t = _uriel_index(filename)
    rows = []
    for c in isos:
        iso = letter_codes().get(c, c)
        if iso not in t["lang_index"]:
            raise InputError(f"URIEL (lang2vec 1.1.2) has no {name} vector for {c!r}")
        rows.append(t["lang_index"][iso])
    cols = [t["feat_index"][str(f)] for f in t["feats"] if str(f).startswith(prefix)]
    src = np.where(t["sources"] == source)[0]
    values = _uriel_data(filename)[rows][:, cols][:, :, src].squeeze(axis=2).astype(np.float64)
    values[values == -1] = np.nan  # lang2vec's "--": no value
    return values


def _measure(vectors: np.ndarray, feature_set: str) -> np.ndarray:
    if FEATURE_SETS[feature_set][1] == "cosine":
        return stats.cosine_matrix(vectors)
    return stats.mean_abs_similarity_matrix(vectors)


@functools.lru_cache(maxsize=32)
def similarity(codes: tuple[str, ...], feature_set: str = DEFAULT_FEATURE_SET) -> dict:
    """Typological similarity of every pair of ``codes`` that URIEL has, computed once per
    language set and feature set. Returns {"languages", "matrix", "missing": {code: why},
    "notes": {code: mapping note}, "iso": {code: iso3}, "feature_set", "vectors", "measure"}."""
    check_feature_set(feature_set)
    iso, missing = {}, {}
    for c in codes:
        try:
            iso[c] = uriel_code(c)
        except InputError as e:
            missing[c] = str(e)
    distinct = tuple(dict.fromkeys(iso.values()))  # pt and pt-br share "por"
    vecs = uriel_vectors(distinct, feature_set) if distinct else np.zeros((0, 0))
    for c in list(iso):  # e.g. nob has an all-zero "fam" vector: no data, not "related to nothing"
        v = vecs[distinct.index(iso[c])]
        if np.isnan(v).any() or not v.any():
            missing[c] = (f"URIEL (lang2vec 1.1.2) has no {FEATURE_SETS[feature_set][0]} data for "
                          f"{c!r} ({iso.pop(c)!r})")
    kept = list(iso)
    rows = [distinct.index(iso[c]) for c in kept]
    matrix = _measure(vecs, feature_set)[np.ix_(rows, rows)] if rows else np.zeros((0, 0))
    return {"languages": kept, "matrix": matrix.tolist(), "missing": missing,
            "notes": {c: NOTES[c] for c in kept if c in NOTES}, "iso": iso,
            "feature_set": feature_set, "vectors": FEATURE_SETS[feature_set][0],
            "measure": FEATURE_SETS[feature_set][1]}


def for_stack(stack: LanguageStack, feature_set: str = DEFAULT_FEATURE_SET) -> dict:
    """``similarity`` over every language of a bundle or profile (no adapter is downloaded); a
    low-resource variant is its language, typologically, so variants are left out."""
    return similarity(tuple(c for c, lang in stack.bundle.languages.items() if not lang.is_variant),
                      feature_set)


def target_row(stack: LanguageStack, target: str, feature_set: str = DEFAULT_FEATURE_SET) -> dict[str, float]:
    """The target's similarity to every other language URIEL has; a clear error when it lacks
    the target."""
    stack.bundle.language(target)
    text = stack.bundle.text_of(target)
    sim = for_stack(stack, feature_set)
    if text in sim["missing"]:
        raise InputError(sim["missing"][text])
    i = sim["languages"].index(text)
    return {c: sim["matrix"][i][j] for j, c in enumerate(sim["languages"]) if c != text}


def source_candidates(stack: LanguageStack, target: str) -> list[str]:
    """The sources ``analysis.rank_sources`` ranks: adapter languages except the target (with an
    adapter of its own) or except baseline A (zero-shot)."""
    a = tasks.baseline_language(stack, target)
    return [c for c in stack.bundle.source_languages(target) if c != a]


def rank_sources(stack: LanguageStack, target: str, feature_set: str = DEFAULT_FEATURE_SET) -> list[dict]:
    """The target's sources by typological similarity, most similar first."""
    row = target_row(stack, target, feature_set)
    scored = [{"language": c, "score": row[c], "measure": f"{feature_set} ({FEATURE_SETS[feature_set][1]})"}
              for c in source_candidates(stack, target) if c in row]
    return sorted(scored, key=lambda d: -d["score"])


def agreement(rankings: dict[str, list[dict]]) -> list[dict]:
    """Spearman's ρ between every two rankings (``{"language", "score"}`` lists), over the
    languages both rank."""
    names, out = list(rankings), []
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            sx = {r["language"]: r["score"] for r in rankings[x]}
            sy = {r["language"]: r["score"] for r in rankings[y]}
            common = [c for c in sx if c in sy]
            out.append({"a": x, "b": y, "n": len(common),
                        "spearman": stats.spearman([sx[c] for c in common], [sy[c] for c in common])})
    return out


def all_rankings(stack: LanguageStack, target: str, adapter_ranking: list[dict] | None = None,
                 feature_sets=tuple(FEATURE_SETS)) -> dict[str, list[dict]]:
    """The target's sources ranked by each typology feature set, plus the adapters' own signal
    (``analysis.rank_sources``: language-vector cosine, or masked-LM loss for zero-shot targets)
    when given."""
    out = {f"typology: {fs}": rank_sources(stack, target, fs) for fs in feature_sets}
    if adapter_ranking:
        out[adapter_ranking[0]["measure"]] = adapter_ranking
    return out


# --- the typology-weighted merge ------------------------------------------------------------


def merge_weights(stack: LanguageStack, target: str, feature_set: str = DEFAULT_FEATURE_SET,
                  k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE) -> dict[str, float]:
    """wᵢ ∝ exp(simᵢ / T) over the k adapter languages most similar to the target (its own
    adapter included, similarity 1, when it has one; English is not forced in)."""
    row = {**target_row(stack, target, feature_set), target: 1.0}
    ref = stack.bundle.task_language
    own = [target] if stack.bundle.language(target).has_adapter else []
    cands = {c: row[c] for c in own + stack.bundle.source_languages(target) if c in row
             and stack.adapter_config.get(c, stack.adapter_config.get(ref)) == stack.adapter_config.get(ref)}
    return typology_weights(cands, int(k), float(temperature))


def merge(stack: LanguageStack, target: str, feature_set: str = DEFAULT_FEATURE_SET,
          k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE) -> Merge:
    assert "typology" in METHODS
    w = merge_weights(stack, target, feature_set, k, temperature)
    stack.check_mergeable(list(w))
    return Merge.of(w, "typology")


def weights_text(weights: dict[str, float]) -> str:
    """The N-way panel's text for these weights (rounded to 3 places, the last takes the rest
    so that they still sum to 1)."""
    items = list(weights.items())
    rounded = [round(w, 3) for _, w in items[:-1]]
    rounded.append(round(1.0 - sum(rounded), 3))
    return ", ".join(f"{c}: {w:g}" for (c, _), w in zip(items, rounded))


# --- the command line's view ------------------------------------------------------------------


def cli_summary(stack: LanguageStack, target: str | None = None,
                adapter_ranking: list[dict] | None = None) -> dict:
    """``similarity --json``'s ``typology`` key: per feature set the matrix (no target) or the
    target's row and ranking; with a target, also the rankings' agreement (Spearman)."""
    out: dict = {}
    for fs in FEATURE_SETS:
        sim = for_stack(stack, fs)
        entry = {"vectors": sim["vectors"], "measure": sim["measure"], "languages": sim["languages"],
                 "missing": sim["missing"]}
        if target is None:
            entry["matrix"] = sim["matrix"]
        else:
            entry["row"] = target_row(stack, target, fs)
            entry["ranking"] = rank_sources(stack, target, fs)
        out[fs] = entry
    if target is not None:
        out["agreement"] = agreement(all_rankings(stack, target, adapter_ranking))
    return out


# --- measured: single adapters, the two-way merge and the typology merge, on test ----------------

# The dev grid for k and T: 10 distinct merges per target (k = 1 is one whatever T), about two
# minutes a target on one CPU core. T spans sharp (0.02: nearly the top language alone, as the
# similarities differ by ~0.05) to flat (0.5: nearly uniform over the k).
KS = (1, 2, 3, 4)
TEMPERATURES = (0.02, 0.1, 0.5)


def _correct(stack, rows, adapter, task) -> np.ndarray:
    gold = np.asarray(tasks.gold_labels(stack, rows, task))
    return np.asarray(tasks.predict_labels(stack, rows, adapter, task)) == gold


def choose_typology(stack: LanguageStack, target: str, dev: list[dict], task: str,
                    feature_set: str, ks=KS, temperatures=TEMPERATURES) -> dict:
    """(k, T) with the best dev accuracy (ties: smaller k, then higher T — the flatter mix);
    settings whose weights coincide are evaluated once."""
    seen: dict[tuple, float] = {}
    best = None
    for k in ks:
        for t in sorted(temperatures, reverse=True):
            try:
                w = merge_weights(stack, target, feature_set, k, t)
            except MergeError:  # k beyond the candidates: skip that setting
                continue
            key = tuple((c, round(x, 4)) for c, x in w.items())
            if key not in seen:
                seen[key] = float(_correct(stack, dev, w, task).mean())
            if best is None or seen[key] > best["dev_accuracy"] + 1e-12:
                best = {"k": k, "temperature": t, "weights": w, "dev_accuracy": seen[key]}
    if best is None:
        raise InputError(f"no typology merge for {target}")
    return best


def evaluate_target(stack: LanguageStack, target: str, feature_set: str = DEFAULT_FEATURE_SET,
                    task: str | None = None, ks=KS, temperatures=TEMPERATURES) -> dict:
    """For one target, on its test set with 95 % bootstrap intervals: A alone, B alone, the
    two-way merge at the dev-chosen λ (``tasks.sweep``) and the typology merge with k and T chosen
    on dev; the typology merge's paired difference to the two-way merge and to the better single
    adapter. k, T and λ are fixed at their dev choice (not re-chosen per resample)."""
    task = stack.bundle.task(task).name
    a, b = tasks.merge_pair(stack, target, None)
    sweep = results.precomputed_or_sweep(stack, target, a, b, tasks.DEFAULT_LAMBDAS, task)
    lam = sweep["best_lam"]
    dev, test = (tasks.load_eval(stack, target, task, s) for s in ("dev", "test"))
    choice = choose_typology(stack, target, dev, task, feature_set, ks, temperatures)
    systems = {"A": a, "B": b, "two_way": pair_weights(a, b, lam),
               "typology": Merge.of(choice["weights"], "typology")}
    gold = np.asarray(tasks.gold_labels(stack, test, task))
    lams = [p["lam"] for p in sweep["points"]]

    def correct(name, w):  # the sweep's own test predictions where it has them
        at = {"A": 1.0, "B": 0.0, "two_way": lam}.get(name)
        if at is None:
            return _correct(stack, test, w, task)
        return np.asarray(tasks.decode_predictions(sweep["predictions"]["test"][lams.index(at)])) == gold

    counts = {n: stats.accuracy_counts(correct(n, w)) for n, w in systems.items()}
    better = "A" if counts["A"][:, 0].sum() >= counts["B"][:, 0].sum() else "B"
    return {"target": target, "a": a, "b": b, "lam": lam, "feature_set": feature_set,
            "k": choice["k"], "temperature": choice["temperature"], "weights": choice["weights"],
            "formula": tasks.formula(systems["typology"]), "n_test": len(test),
            "test": {n: stats.bootstrap_metric(c) for n, c in counts.items()},
            "typology_minus_two_way": stats.bootstrap_difference(counts["typology"], counts["two_way"]),
            "typology_minus_better_single": stats.bootstrap_difference(counts["typology"], counts[better])}


def evaluate(stack: LanguageStack, targets=None, feature_set: str = DEFAULT_FEATURE_SET,
             task: str | None = None, progress=None) -> dict:
    """``evaluate_target`` for every target with an eval set (default: all of the bundle's)."""
    targets = list(targets or stack.bundle.languages)
    out = {}
    for i, t in enumerate(targets):
        if tasks.eval_path(stack, t, task) is None:
            continue
        out[t] = evaluate_target(stack, t, feature_set, task)
        if progress:
            progress(i + 1, len(targets), t)
    return {"feature_set": feature_set, "targets": out}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys
    from pathlib import Path

    import os

    p = argparse.ArgumentParser(prog="python -m langarith.typology")
    p.add_argument("command", choices=["evaluate"])
    p.add_argument("--bundle")
    p.add_argument("--feature-set", default=DEFAULT_FEATURE_SET, choices=list(FEATURE_SETS))
    p.add_argument("--targets", help="comma-separated codes (default: every target with an eval set)")
    p.add_argument("--task")
    p.add_argument("--out", help="write the JSON here too")
    args = p.parse_args(argv)
    default = Path(__file__).resolve().parent.parent / "assets" / "bundle"  # as the CLI's default
    stack = LanguageStack(Path(args.bundle or os.environ.get("LANGARITH_BUNDLE") or default))
    res = evaluate(stack, args.targets.split(",") if args.targets else None, args.feature_set,
                   args.task, progress=lambda i, n, t: print(f"  {i}/{n} {t}", file=sys.stderr))
    text = json.dumps(res, indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
