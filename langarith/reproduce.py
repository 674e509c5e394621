"""Layer 3: the paper's experiment in one command — a λ sweep on a labelled set, per target.

    python -m langarith reproduce --profile mbert-ner [--targets ar,bg] [--source-map JSON]
                                  [--lambdas 0:1:0.1] [--limit N] [--out DIR]

For each target: A (the task language, en) and B (the catalogue's related language, or
``--source-map``) are merged as λ·A + (1−λ)·B at every λ of the grid; the merged stack is
scored on a dev set (λ is chosen there) and a test set (the report):

- ``mbert-ner``: WikiANN validation and test (``catalogue.json`` names the data set and its
  files), entity-level micro F1 with ``seqeval``;
- ``xlmr``: XQuAD through the M2QA stack, the first half of each language for λ and the second
  half for the report (as the authors' code splits it), SQuAD F1 and exact match.

Per-item counts at every λ go through ``stats.bootstrap_sweep`` (the paired bootstrap of the whole
"choose λ on dev, report on test" procedure). A target's own adapter, where it has one, is scored
as a reference line. Data files come through ``huggingface_hub`` into the HF cache and are read
with pandas (pyarrow).

Output, in ``--out`` (default: ``$LANGARITH_CACHE/reproduce/<profile>``): one file per finished
target in ``targets/`` (a rerun skips those: resumable), ``results.json`` in the format of the
bundle's ``results/results.json`` (``full.<setting>.<target>``) and ``results.md``. Every file is
written to a temporary name and renamed, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import collections
import json
import os
import re
import string
import sys
from pathlib import Path

import numpy as np

from . import paths, stats
from .arithmetic import pair_weights
from .loading import BundleError, InputError

FORMAT = 1
SETTINGS = ("zero_shot", "enhancement")


class ReproduceError(ValueError):
    """Bad arguments or data the run cannot use; the message says what and how to fix it."""


# --- arguments -----------------------------------------------------------------------------------


def parse_lambdas(spec: str) -> list[float]:
    """``"0:1:0.1"`` (start:stop:step, both ends included) or ``"0,0.5,1"``; must hold 0 and 1
    (B alone and A alone are the baselines)."""
    try:
        if ":" in spec:
            lo, hi, step = (float(x) for x in spec.split(":"))
            if step <= 0 or hi < lo:
                raise ValueError
            n = int(round((hi - lo) / step))
            grid = [round(lo + i * step, 6) for i in range(n + 1)]
        else:
            grid = sorted({float(x) for x in spec.split(",") if x.strip()})
    except ValueError:
        raise ReproduceError(f"--lambdas {spec!r}: give start:stop:step (0:1:0.1) or a list (0,0.5,1)") from None
    if not grid or min(grid) < 0 or max(grid) > 1:
        raise ReproduceError(f"--lambdas {spec!r}: every λ must lie in [0, 1]")
    if 0.0 not in grid or 1.0 not in grid:
        raise ReproduceError(f"--lambdas {spec!r}: the grid needs 0 and 1 (B alone and A alone)")
    return grid


def parse_source_map(text: str | None) -> dict[str, str]:
    """``--source-map``: a JSON object ``{"target": "related language"}``, inline or a file."""
    if not text:
        return {}
    raw = Path(text).read_text(encoding="utf-8") if Path(text).is_file() else text
    try:
        m = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ReproduceError(f"--source-map is not valid JSON ({e}): give e.g. '{{\"de\": \"nl\"}}'") from None
    if not isinstance(m, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in m.items()):
        raise ReproduceError("--source-map must map target codes to language codes, e.g. {\"de\": \"nl\"}")
    return m


def spec_of(profile: str, cat: dict | None = None) -> dict:
    from .profiles import profile_entry

    spec = profile_entry(profile, cat).get("reproduce")
    if not spec:
        raise ReproduceError(f"profile {profile!r} has no labelled data set to reproduce the paper on; "
                             f"use --profile mbert-ner (WikiANN) or --profile xlmr (XQuAD)")
    return spec


def default_dir(profile: str) -> Path:
    return paths.cache_dir() / "reproduce" / profile


# --- data ----------------------------------------------------------------------------------------


def dataset_file(repo: str, filename: str, cache_dir=None) -> Path:
    """A data set file from the HF cache (downloaded there unless offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from .profiles import hub_cache_dir, hub_offline

    try:
        return Path(hf_hub_download(repo, filename, repo_type="dataset",
                                    cache_dir=hub_cache_dir(cache_dir),
                                    local_files_only=hub_offline(), library_name="langarith"))
    except LocalEntryNotFoundError:
        raise ReproduceError(
            f"{repo}/{filename} is not in the Hugging Face cache "
            f"({hub_cache_dir(cache_dir) or 'default cache'}) and "
            f"{'HF_HUB_OFFLINE is set' if hub_offline() else 'the Hub could not be reached'}: either "
            f"the data set has no such language, or get the file with network access: "
            f"huggingface-cli download --repo-type dataset {repo} {filename}") from None
    except EntryNotFoundError:  # after LocalEntryNotFoundError, its subclass
        raise ReproduceError(f"{repo} has no {filename}: no data for this language there") from None
    except Exception as e:  # noqa: BLE001 - HTTP errors, gated data: say which file
        raise ReproduceError(f"cannot get {repo}/{filename}: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None


def read_table(path: Path, columns: list[str]):
    """The parquet file's columns as a DataFrame; a corrupt file or a missing column is named."""
    import pandas as pd
    import pyarrow as pa

    try:
        import pyarrow.parquet as pq

        have = pq.read_schema(path).names
        missing = [c for c in columns if c not in have]
        if missing:
            raise ReproduceError(f"{path} lacks the column(s) {', '.join(missing)} (has {', '.join(have)})")
        return pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise ReproduceError(f"{path} is corrupt or not a parquet file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else 'unreadable'}); delete it "
                             f"from the cache and rerun to fetch it again") from None


def ner_split(spec: dict, lang: str, split: str, cache_dir=None, limit: int | None = None) -> list[dict]:
    """WikiANN rows ``{"tokens", "tags"}`` (tag ids) of one split."""
    name = spec["files"].format(lang=lang, split=spec["splits"][split])
    df = read_table(dataset_file(spec["dataset"], name, cache_dir), ["tokens", "ner_tags"])
    rows = [{"tokens": [str(t) for t in tok], "tags": [int(x) for x in tags]}
            for tok, tags in zip(df["tokens"], df["ner_tags"])][:limit]
    if not rows:
        raise ReproduceError(f"{spec['dataset']}/{name} has no rows")
    return rows


def qa_splits(spec: dict, lang: str, cache_dir=None, limit: int | None = None) -> dict[str, list[dict]]:
    """XQuAD rows ``{"id", "context", "question", "answers"}``: first half dev, second half test."""
    name = spec["files"].format(lang=lang)
    df = read_table(dataset_file(spec["dataset"], name, cache_dir), ["id", "context", "question", "answers"])
    rows = [{"id": str(i), "context": c, "question": q, "answers": [str(x) for x in a["text"]]}
            for i, c, q, a in zip(df["id"], df["context"], df["question"], df["answers"])]
    if len(rows) < 2:
        raise ReproduceError(f"{spec['dataset']}/{name} has {len(rows)} rows: two halves need at least 2")
    half = len(rows) // 2
    return {"dev": rows[:half][:limit], "test": rows[half:][:limit]}


def unlabelled_texts(spec: dict, rows: list[dict]) -> list[str]:
    """The data set's own inputs as unlabelled target text for the ``mlm`` λ rule, never its
    labels: WikiANN sentences (their tokens joined by spaces), XQuAD contexts (each once, in
    order; the questions are left out, they are not running text)."""
    if spec["task"] == "qa":
        return list(dict.fromkeys(r["context"] for r in rows))
    return [" ".join(r["tokens"]) for r in rows]


def load_data(spec: dict, lang: str, cache_dir=None, limit=None) -> dict[str, list[dict]]:
    if spec["task"] == "qa":
        return qa_splits(spec, lang, cache_dir, limit)
    return {s: ner_split(spec, lang, s, cache_dir, limit) for s in ("dev", "test")}


# --- metrics -------------------------------------------------------------------------------------


def ner_counts(gold: list[list[str]], pred: list[list[str]]) -> np.ndarray:
    """Per sentence ``[tp, fp, fn]`` of entities as seqeval extracts them (``ner.sentence_counts``)."""
    from .ner import sentence_counts

    rows = [sentence_counts(g, p) for g, p in zip(gold, pred)]
    return stats.f1_counts(*np.asarray(rows, dtype=np.float64).reshape(-1, 3).T)


def ner_scores(counts: np.ndarray) -> dict:
    tp, fp, fn = counts.sum(0)
    return {"f1": float(stats.metric(counts.sum(0))),
            "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
            "recall": float(tp / (tp + fn)) if tp + fn else 0.0, "n": int(len(counts))}


def normalize_answer(s: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, articles or extra spaces."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def qa_item(pred: str, golds: list[str]) -> tuple[float, float]:
    """``(f1, exact match)`` of one answer against its gold answers (max over them, as SQuAD)."""
    golds = golds or [""]
    return (max(squad_f1(pred, g) for g in golds),
            max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds))


def qa_scores(f1: np.ndarray, em: np.ndarray) -> dict:
    return {"f1": float(f1.mean()) if len(f1) else 0.0, "exact_match": float(em.mean()) if len(em) else 0.0,
            "n": int(len(f1))}


# --- predictions ---------------------------------------------------------------------------------


def predict_ner(stack, rows: list[dict], adapter, task: str, batch_size: int = 32) -> tuple[list, int]:
    """Word labels (first sub-token's) for pre-split sentences, and how many sentences were cut
    (words past the encoder's length are labelled O): ``ner.tag_words_counted`` at the model's
    own length limit."""
    from .ner import tag_words_counted

    limit = min(512, getattr(stack.model.config, "max_position_embeddings", 512))
    return tag_words_counted(stack, [r["tokens"] for r in rows], adapter, task, batch_size, limit)


def predict_qa(stack, rows: list[dict], adapter, task: str) -> tuple[list, int]:
    """Answer texts ("" = no answer) and how many contexts were cut at the adapter's length."""
    from .qa import answer_span

    out, cut = [], 0
    for r in rows:
        a = answer_span(stack, r["question"], r["context"], adapter, task)
        out.append(a["text"])
        cut += a["cut_chars"] > 0
    return out, cut


def score(spec: dict, stack, rows: list[dict], adapter, task: str, labels: list[str]):
    """``(metrics, per-item counts [n, k], predictions, cut)`` of one adapter or merge on rows."""
    if spec["task"] == "qa":
        preds, cut = predict_qa(stack, rows, adapter, task)
        f1, em = (np.asarray(x, dtype=np.float64).reshape(-1) for x in
                  zip(*[qa_item(p, r["answers"]) for p, r in zip(preds, rows)]))
        return qa_scores(f1, em), stats.accuracy_counts(f1), preds, cut
    preds, cut = predict_ner(stack, rows, adapter, task)
    counts = ner_counts([[labels[t] for t in r["tags"]] for r in rows], preds)
    return ner_scores(counts), counts, preds, cut


# --- one target ----------------------------------------------------------------------------------


def pair_for(stack, spec: dict, target: str, source_map: dict, setting: str) -> tuple[str, str, str]:
    """``(a, b, why)`` for a target, checked: B exists in the profile and merges with A."""
    from .arithmetic import MergeError

    bundle = stack.bundle
    entry = spec.get("targets", {}).get(target, {})
    b = source_map.get(target) or entry.get("b") or (bundle.languages[target].source
                                                     if target in bundle.languages else None)
    if not b:
        raise ReproduceError(f"no related language is recorded; give one with "
                             f"--source-map '{{\"{target}\": \"<code>\"}}'")
    why = "--source-map" if target in source_map else entry.get("why", "the catalogue's related language")
    if setting == "enhancement":
        if target not in bundle.languages or not bundle.languages[target].has_adapter:
            raise ReproduceError(f"{target} has no adapter of its own: the enhancement setting needs one")
        a = target
    else:
        a = spec.get("a", bundle.task_language)
    if b not in bundle.languages or not bundle.languages[b].has_adapter:
        have = ", ".join(bundle.adapter_languages())
        raise ReproduceError(f"the related adapter {b!r} does not exist in this profile "
                             f"(adapters: {have}); choose another with --source-map")
    if a == b:
        raise ReproduceError(f"A and B are both {a}; choose another B with --source-map")
    try:
        stack.check_mergeable([a, b])
    except (MergeError, InputError, BundleError) as e:
        raise ReproduceError(f"cannot merge {a} and {b}: {e}") from None
    return a, b, why


def run_target(stack, spec: dict, target: str, a: str, b: str, lambdas: list[float],
               data: dict[str, list[dict]], progress=None, rule: str = "dev",
               fixed_lam: float = 0.5) -> dict:
    """The sweep, both single adapters, the dev-chosen λ and its bootstrap, for one target; with
    ``rule`` mlm or fixed also the three λ rules side by side (``rules``)."""
    task = spec["task"]
    labels = list(stack.bundle.task(task).labels)
    counts = {"dev": [], "test": []}
    metrics = {"dev": [], "test": []}
    preds, cut = [], 0
    for lam in lambdas:
        w = pair_weights(a, b, lam)
        for split in ("dev", "test"):
            m, c, p, n_cut = score(spec, stack, data[split], w, task, labels)
            metrics[split].append(m)
            counts[split].append(c)
            cut = max(cut, n_cut)
            if split == "test":
                preds.append(p)
            if progress:
                progress.update(1)
    metric = spec["metric"]
    best = stats.choose_lambda([m[metric] for m in metrics["dev"]], lambdas)
    ia, ib = lambdas.index(1.0), lambdas.index(0.0)
    boot = stats.bootstrap_sweep(lambdas, np.stack(counts["dev"]), np.stack(counts["test"]))
    rules = (three_rules(stack, spec, a, b, lambdas, data["dev"], counts, fixed_lam,
                         entropy=rule == "entropy") if rule != "dev" else None)
    return {
        "target": target, "a": a, "b": b,
        "points": [{"lam": lam, "dev": metrics["dev"][i], "test": metrics["test"][i]}
                   for i, lam in enumerate(lambdas)],
        "best_lam": lambdas[best], "test_at_best": metrics["test"][best],
        "a_alone": metrics["test"][ia], "b_alone": metrics["test"][ib],
        "n_dev": len(data["dev"]), "n_test": len(data["test"]), "bootstrap": boot,
        "cut_items": cut, "changed": changed_items(spec, data["test"], preds[ia], preds[best], preds[ib]),
        **({"rules": {**rules, "rule": rule}} if rules else {}),
    }


def three_rules(stack, spec: dict, a: str, b: str, lambdas: list[float], dev_rows: list[dict],
                counts: dict, fixed_lam: float, entropy: bool = False) -> dict:
    """The dev, mlm and fixed λ rules with the paired bootstrap (``lambda_rules.bootstrap_rules``):
    the mlm rule's masked-LM curve is scored on the dev split's inputs (``unlabelled_texts``; all
    of them: the report is on the test split's labels), on the task's own λ grid. With
    ``entropy``, also the entropy rule: the NER head's tag entropy on the dev sentences' words
    (their tokens only, never their tags)."""
    from . import lambda_rules, tasks

    texts = unlabelled_texts(spec, dev_rows)
    curve = tasks.mlm_curve(stack, texts, a, b, lambdas)
    ent = entropy_counts(stack, spec, a, b, lambdas, dev_rows) if entropy else None
    out = lambda_rules.bootstrap_rules(lambdas, np.stack(counts["dev"]), np.stack(counts["test"]),
                                       lambdas, stats.loss_counts(curve["sums"], curve["counts"]),
                                       entropy_counts=ent, fixed_lam=fixed_lam)
    return {**out, "mlm_curve": {"points": curve["points"], "n_texts": len(texts),
                                 "n_tokens": curve["n_tokens"]}}


def entropy_counts(stack, spec: dict, a: str, b: str, lambdas: list[float], dev_rows: list[dict]):
    """The entropy rule's input ``[L, n_dev, 2]``: per dev sentence, the summed tag entropy of its
    words under each λ's merge and the word count (``ner.word_entropies``)."""
    from .ner import word_entropies

    if spec["task"] == "qa":
        raise ReproduceError("the entropy rule is measured for NER only: a QA head's answer-span "
                             "entropy is not defined here yet; use --rule mlm")
    limit = min(512, getattr(stack.model.config, "max_position_embeddings", 512))
    sums, n = [], None
    for lam in lambdas:
        got = word_entropies(stack, [r["tokens"] for r in dev_rows], pair_weights(a, b, lam), spec["task"],
                             max_tokens=limit)
        sums.append([h for h, _ in got])
        n = [c for _, c in got]
    sums = np.asarray(sums, np.float64)
    return stats.loss_counts(sums, np.broadcast_to(np.asarray(n, np.float64), sums.shape))


def changed_items(spec: dict, rows: list[dict], pa: list, pm: list, pb: list, keep: int = 200) -> list:
    """Test items whose prediction at the chosen λ differs from A's (the first ``keep``)."""
    out = []
    for i, (r, x, m, y) in enumerate(zip(rows, pa, pm, pb)):
        if x != m and len(out) < keep:
            item = ({"id": r["id"], "question": r["question"], "gold": r["answers"]}
                    if spec["task"] == "qa" else {"tokens": r["tokens"], "gold": r["tags"]})
            out.append({"index": i, **item, "a": x, "merged": m, "b": y})
    return out


def own_adapter(stack, spec: dict, target: str, data: dict) -> dict | None:
    """The target's own adapter on the test set: the reference line beside the zero-shot merge."""
    lang = stack.bundle.languages.get(target)
    if lang is None or not lang.has_adapter:
        return None
    try:
        m, _, _, _ = score(spec, stack, data["test"], target, spec["task"],
                           list(stack.bundle.task(spec["task"]).labels))
        return m
    except (BundleError, InputError) as e:
        return {"error": str(e)}


# --- files ---------------------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it: all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"


def markdown(res: dict) -> str:
    """The results as a Markdown table (points of the metric, test set)."""
    m = res["metric"]
    lines = [f"# {res['profile']}: {res['dataset']} ({m}, test; λ chosen on dev)", "",
             "| target | A | B | A alone | B alone | best λ | merged | gain vs better [95% CI] | own adapter |",
             "|---|---|---|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        for t, e in res["full"].get(setting, {}).items():
            g = e["bootstrap"]["gain_vs_better"]
            own = res["full"]["own_adapter"].get(t) or {}
            lines.append(f"| {t} | {e['a']} | {e['b']} | {100 * e['a_alone'][m]:.1f} | "
                         f"{100 * e['b_alone'][m]:.1f} | {e['best_lam']:g} | {100 * e['test_at_best'][m]:.1f} | "
                         f"{stats.format_gain(g)} | "
                         f"{f'{100 * own[m]:.1f}' if m in own else '—'} |")
    ruled = {t: e["rules"] for setting in SETTINGS for t, e in res["full"].get(setting, {}).items()
             if e.get("rules")}
    if ruled:
        lines += ["", f"## λ rules ({m}, test): dev labels, the masked-LM minimum on the dev inputs, the "
                  "lowest tag entropy on them (both without labels), a fixed λ; paired bootstrap 95 % CI, "
                  "λ re-chosen on every resample", "",
                  "| target | dev (λ) | mlm (λ) | entropy (λ) | fixed (λ) | mlm − dev [95% CI] | mlm − fixed [95% CI] "
                  "| entropy − dev [95% CI] | n dev / test / texts |", "|---|---|---|---|---|---|---|---|---|"]
        for t, r in ruled.items():
            cell = {k: f"{v['test']:.1f} ({v['lam']:g})" for k, v in r["rules"].items()}
            gap = {k: f"{r[k]['points']:+.1f} [{r[k]['ci95'][0]:+.1f}, {r[k]['ci95'][1]:+.1f}]" if k in r else "–"
                   for k in ("mlm_minus_dev", "mlm_minus_fixed", "entropy_minus_dev")}
            lines.append(f"| {t} | {cell['dev']} | {cell['mlm']} | {cell.get('entropy', '–')} | {cell['fixed']} | "
                         f"{gap['mlm_minus_dev']} | {gap['mlm_minus_fixed']} | {gap['entropy_minus_dev']} | "
                         f"{r['n_dev']} / {r['n_test']} / {r['n_texts']} |")
    for t, msg in res.get("failed", {}).items():
        lines.append(f"\n- **{t}** not run: {' '.join(msg.split())}")
    return "\n".join(lines) + "\n"


def _assemble(profile: str, spec: dict, setting: str, lambdas, done: dict, failed: dict) -> dict:
    return {"format": FORMAT, "kind": "reproduce", "profile": profile, "task": spec["task"],
            "dataset": spec["dataset"], "metric": spec["metric"], "setting": setting,
            "lambdas": list(lambdas),
            "full": {"zero_shot": {}, "enhancement": {}, **{setting: {t: d["entry"] for t, d in done.items()}},
                     "own_adapter": {t: d["own"] for t, d in done.items() if d.get("own")}},
            "failed": failed}


def _key(profile, setting, a, b, lambdas, limit, rule="dev", fixed_lam=0.5) -> dict:
    key = {"profile": profile, "setting": setting, "a": a, "b": b, "lambdas": list(lambdas), "limit": limit}
    return key if rule == "dev" else {**key, "rule": rule, "fixed_lam": fixed_lam}  # old files stay valid


def _finished(path: Path, key: dict) -> dict | None:
    """A finished target's file if it was made with the same settings (else it is redone)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return d if d.get("key") == key else None


# --- the run -------------------------------------------------------------------------------------


def run(profile: str, targets: list[str] | None = None, source_map: dict | None = None,
        lambdas: list[float] | None = None, limit: int | None = None, out: str | Path | None = None,
        cache_dir=None, stack=None, setting: str = "zero_shot", log=print, rule: str = "dev",
        fixed_lam: float = 0.5) -> dict:
    """Run (or resume) the sweep for each target; returns the assembled results. ``rule`` mlm or
    fixed also scores the masked-LM curve on the dev inputs and reports the three λ rules."""
    from .lambda_rules import RULES
    from tqdm.auto import tqdm

    spec = spec_of(profile)
    if setting not in SETTINGS:
        raise ReproduceError(f"--setting must be one of {', '.join(SETTINGS)}")
    if limit is not None and limit < 1:
        raise ReproduceError("--limit must be at least 1")
    if rule not in RULES:
        raise ReproduceError(f"--rule must be one of {', '.join(RULES)}")
    if not 0.0 <= fixed_lam <= 1.0:
        raise ReproduceError(f"--fixed-lam {fixed_lam} must lie in [0, 1]")
    lambdas = lambdas or parse_lambdas("0:1:0.1")
    targets = targets or sorted(spec["targets"])
    source_map = source_map or {}
    out = Path(out) if out else default_dir(profile)
    if stack is None:
        from .model import LanguageStack
        from .profiles import load_profile

        stack = LanguageStack(load_profile(profile, cache_dir=cache_dir))
    done, failed = {}, {}
    for target in targets:
        try:
            a, b, why = pair_for(stack, spec, target, source_map, setting)
            key = _key(profile, setting, a, b, lambdas, limit, rule, fixed_lam)
            path = out / "targets" / f"{target}.json"
            prev = _finished(path, key)
            if prev:
                log(f"{target}: finished before ({path}), skipped")
                done[target] = prev
                continue
            data = load_data(spec, target, cache_dir, limit)
            with tqdm(total=2 * len(lambdas), desc=f"{target} ({a}+{b})", file=sys.stderr,
                      leave=False) as bar:
                entry = run_target(stack, spec, target, a, b, lambdas, data, bar, rule, fixed_lam)
            entry["why"] = why
            own = own_adapter(stack, spec, target, data) if setting == "zero_shot" else None
            done[target] = {"key": key, "entry": entry, "own": own}
            write_atomic(path, _dump(done[target]))
        except ReproduceError as e:
            failed[target] = str(e)
            log(f"{target} not run: {e}")
            continue
        res = _assemble(profile, spec, setting, lambdas, done, failed)
        write_atomic(out / "results.json", _dump(res))
        write_atomic(out / "results.md", markdown(res))
    res = _assemble(profile, spec, setting, lambdas, done, failed)
    write_atomic(out / "results.json", _dump(res))
    write_atomic(out / "results.md", markdown(res))
    return res


def find_results(profile_name: str, results_dir: str | Path | None = None) -> dict | None:
    """The ``results.json`` that ``reproduce`` wrote for a profile, from ``results_dir`` (the
    app's ``--results DIR``) or the default cache folder; None when there is none (or it is
    another profile's). Curves: ``full.<setting>.<target>.points``; the metric's key in each
    point's dev/test dict is ``results["metric"]``. A corrupt file raises ReproduceError."""
    path = Path(results_dir) if results_dir else default_dir(profile_name)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReproduceError(f"{path} is not a readable results file ({e}); rerun reproduce") from None
    if not isinstance(res, dict) or res.get("kind") != "reproduce" or res.get("profile") != profile_name:
        return None
    return res


def main(args) -> int:
    """The ``reproduce`` subcommand (``cli.py`` parses, this runs): summary JSON on stdout."""
    try:
        res = run(args.profile, [t for t in (args.targets or "").split(",") if t] or None,
                  parse_source_map(args.source_map), parse_lambdas(args.lambdas), args.limit,
                  args.out, setting=args.setting, log=lambda m: print(m, file=sys.stderr),
                  rule=getattr(args, "rule", "dev"), fixed_lam=getattr(args, "fixed_lam", 0.5))
    except KeyboardInterrupt:
        print(f"interrupted: finished targets are saved in {args.out or default_dir(args.profile)}; "
              f"rerun the same command to resume", file=sys.stderr)
        return 130
    except (ReproduceError, BundleError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_dir(args.profile)
    summary = {"results": str(out / "results.json"), "table": str(out / "results.md"),
               "finished": sorted(res["full"][res["setting"]]), "failed": res["failed"]}
    json.dump(summary, sys.stdout, ensure_ascii=False, indent=2)
    print()
    print(markdown(res), file=sys.stderr)
    return 2 if res["failed"] else 0
