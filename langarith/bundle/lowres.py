"""Under-trained language adapters: the paper's low-resource setting.

For four adapter languages with a related, fully trained partner (``LOWRES``), adapters trained on
a small share of their masked-LM text (``SIZES`` tokens), from the same seeded init and with the
same recipe as the full ones (``SeqBnInvConfig(reduction_factor=2)``, MLM, AdamW at 5e-4 with
warm-up and linear decay, batches of 16 rows of 128 tokens). The share is a prefix of one seeded
shuffle of the language's training paragraphs, so the 100 k share lies inside the 500 k one, and
it never holds a held-out paragraph (every 50th) nor an eval item (the corpus stage removed those).

The whole LibreOffice help of a language is 0.3–0.7 M tokens of text (``share(..., 10**12)``
counts it), so "full" here is at most seven times the 100 k share, not the tens of times the issue
assumed. Both shares get the same compute (``STEPS`` steps of 16 × 128 tokens: 403 k tokens processed), so
the 100 k adapter sees its text four times and the 500 k one sees 80 % of its text once: the
variants differ in data, not in training time. The full adapters (≈ 5.5 M tokens) were trained
with the GPU schedule (1,000 steps of 96 rows), so they differ from the variants in both.

Stages (``python -m langarith.bundle build --stages lowres,lowres_eval``), on the packaged bundle:

    lowres       train each variant into WORK/lowres/<variant>/ (resumable: a checkpoint every 25
                 steps, a finished variant is never redone), then copy the shipped ones
                 (``SHIPPED``) into the bundle with their manifest entries
    lowres_eval  per variant: the enhancement sweep (A = the variant, B = its partner) with per-item
                 predictions, the held-out masked-LM curve and the tagging sweep, into
                 results/lowres.json (checkpointed per variant)

Only ``SHIPPED`` variants' weights go into the bundle (fp16, as the others, 3.7 MB each: all eight
would take the bundle past 64 MB); every variant's measurements do.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import train
from .constants import LAMBDAS, LANG_INFO, TASK

if TYPE_CHECKING:  # the context's type only: context never imports this module
    from .context import Build

# Variant language: its full partner. Languages with at least 600 k tokens of training text (nl
# 696 k, da 633 k, cs 647 k, it 684 k), so that 500 k stays a share of it: sv (302 k) and pl
# (508 k), the examples, have too little text for a 500 k share.
LOWRES = {"nl": "de", "da": "sv", "cs": "pl", "it": "es"}
SIZES = (100_000, 500_000)  # tokens of own text a variant's adapter saw
GRID = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # the variants' topic and tagging sweeps (see stage_eval)
STEPS = 200  # per variant on every device: equal compute for both shares (see the docstring)
SHIPPED = ("nl@100k", "nl@500k")  # variants whose weights the bundle carries
QUICK = {"es": "de"}  # --quick trains three languages: its variants (all shipped) check the path


def variant_code(code: str, size: int) -> str:
    return f"{code}@{size // 1000}k"


def pairs(build: Build) -> dict[str, str]:
    return QUICK if build.quick else LOWRES


def variants(build: Build) -> list[tuple[str, str, int]]:
    """(variant code, language, tokens), language by language (a stopped run leaves whole curves)."""
    return [(variant_code(c, n), c, n) for c in pairs(build) for n in SIZES]


def shipped(build: Build) -> list[str]:
    return [v for v, _, _ in variants(build)] if build.quick else list(SHIPPED)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] [lowres] {msg}", flush=True)


def share(tokenizer, paragraphs: list[str], n_tokens: int, seed: int = 0) -> tuple[list[str], int]:
    """The first paragraphs of one seeded shuffle holding ``n_tokens`` tokens (each paragraph
    counted with its separator, as ``pack_sequences`` packs it); nested for growing n_tokens."""
    order = list(range(len(paragraphs)))
    random.Random(seed).shuffle(order)
    ids = tokenizer([paragraphs[i] for i in order], add_special_tokens=False)["input_ids"]
    out, total = [], 0
    for i, row in zip(order, ids):
        if total >= n_tokens:
            break
        out.append(paragraphs[i])
        total += len(row) + 1
    return out, total


def training_paragraphs(build: Build, code: str) -> list[str]:
    """The language's MLM paragraphs minus the held-out ones (every 50th), as ``mlm_rows``."""
    return [p for i, p in enumerate(build.mlm_paragraphs(code)) if i % 50]


def schedule(build: Build) -> train.Schedule:
    s = build.sched("adapter")
    return s if build.smoke else train.Schedule(steps=STEPS, batch=16, lr=s.lr,
                                                 max_seconds=4 * 3600, seq_len=s.seq_len)


def manifest_entry(build: Build, code: str, size: int) -> dict:
    name, family = LANG_INFO[code]
    return {"code": variant_code(code, size), "name": f"{name}, {size // 1000} k tokens",
            "family": family, "adapter": f"adapters/{variant_code(code, size)}",
            "source": pairs(build)[code], "examples": build.examples(code), "text": code, "tokens": size}


def stage_train(build: Build, dest: Path) -> dict:
    """Train every variant (resumable), then put the shipped ones into the bundle at ``dest``."""
    tok = build.tokenizer()
    sched = schedule(build)
    work = train_dir(build)
    stats_file = work / "stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    model = None
    for v, code, size in variants(build):
        if code not in build.adapter_langs:
            continue
        out = work / v
        if (out / "adapter_config.json").exists():
            continue
        if model is None:
            model = build.model_with([])
        paras = training_paragraphs(build, code)
        if build.smoke:
            paras = paras[:200]
        chosen, n_tok = share(tok, paras, size if not build.smoke else size // 100)
        rows = train.pack_sequences(tok, chosen, sched.seq_len)
        _log(f"{v}: {len(chosen)} paragraphs, {n_tok:,} tokens, {len(rows)} rows; "
             f"{sched.steps} steps × {sched.batch} on {build.device}")
        t0 = time.time()
        s = train.train_language_adapter(model, v, tok, rows, sched, build.device,
                                         checkpoint=work / f"{v}.ckpt", seed_code=code)
        train.save_fp16_adapter(model, v, out)
        model.delete_adapter(v)
        (work / f"{v}.ckpt").unlink(missing_ok=True)
        stats[v] = {**s, "language": code, "tokens": n_tok, "paragraphs": len(chosen),
                    "rows": len(rows), "device": str(build.device), "wall_seconds": round(time.time() - t0, 1)}
        train.write_json(stats_file, stats)
        _log(f"{v}: {stats[v]}")
    install(build, dest)
    return {"variants": sorted(stats), "train_seconds": round(sum(s["train_seconds"] for s in stats.values()), 1)}


def train_dir(build: Build) -> Path:
    d = build.work / "lowres"
    d.mkdir(parents=True, exist_ok=True)
    return d


def install(build: Build, dest: Path, which=None) -> None:
    """Copy the trained variants named in ``which`` into ``dest``'s adapters (where this machine
    trained them) and list the ones ``dest`` holds in its manifest, after its full languages
    (idempotent)."""
    which = shipped(build) if which is None else which
    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    langs = [entry for entry in manifest["languages"] if "@" not in entry["code"]]
    for v, code, size in variants(build):
        src, target = train_dir(build) / v, dest / "adapters" / v
        if v not in which:
            continue
        if (src / "adapter_config.json").exists():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(src, target)
        if (target / "adapter_config.json").exists():
            langs.append(manifest_entry(build, code, size))
    manifest["languages"] = langs
    train.write_json(dest / "manifest.json", manifest)


def stash(dest: Path, work: Path) -> Path | None:
    """Keep the variants' files while ``package`` rebuilds ``dest`` (as ``tagging.stash``)."""
    keep = work / "lowres-stash"
    if keep.exists():
        shutil.rmtree(keep)
    found = False
    for p in [*(dest / "adapters").glob("*@*"), dest / "results" / "lowres.json"]:
        if p.exists():
            found = True
            rel = p.relative_to(dest)
            (keep / rel).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, keep / rel)
    return keep if found else None


def unstash(keep: Path | None, dest: Path, build: Build | None = None) -> None:
    if keep is None:
        return
    for p in keep.rglob("*"):
        if p.is_file():
            rel = p.relative_to(keep)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest / rel)
    if build is not None:
        install(build, dest, [p.name for p in (dest / "adapters").glob("*@*")])
    shutil.rmtree(keep)


# --- measurement ---------------------------------------------------------------------------------


def eval_bundle(build: Build, dest: Path) -> Path:
    """A scratch bundle that is ``dest`` (linked, never copied) plus every trained variant: the
    variants that do not ship are measured without ever entering ``dest``."""
    import os

    root = train_dir(build) / f"eval-bundle-{os.getpid()}"  # one per process: see stage_eval
    if root.exists():
        shutil.rmtree(root)
    (root / "adapters").mkdir(parents=True)
    for p in dest.iterdir():
        if p.name not in ("adapters", "manifest.json"):
            (root / p.name).symlink_to(p.resolve())
    for p in (dest / "adapters").iterdir():
        if "@" not in p.name:
            (root / "adapters" / p.name).symlink_to(p.resolve())
    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    langs = [e for e in manifest["languages"] if "@" not in e["code"]]
    for v, code, size in variants(build):
        src = train_dir(build) / v
        if (src / "adapter_config.json").exists():
            (root / "adapters" / v).symlink_to(src.resolve())
            langs.append(manifest_entry(build, code, size))
    train.write_json(root / "manifest.json", {**manifest, "languages": langs})
    return root


def tagging_curve(stack, target: str, a: str, b: str, lambdas, cache: Path) -> dict | None:
    """The span-tagging λ curve of A and B on ``target``'s sentences (None without the task)."""
    from ..ner import _curve
    from . import tagging

    if tagging.TASK not in stack.bundle.tasks:
        return None
    ev = tagging.Evaluator(stack, cache)
    runs = {lam: ev.scores(target, a, b, lam) for lam in lambdas}
    return _curve(target, a, b, list(lambdas), {x: runs[x]["dev"] for x in lambdas},
                  {x: runs[x]["test"] for x in lambdas})


def stage_eval(build: Build, dest: Path) -> dict:
    """Per variant (and per language's full adapter where the bundle has no such curve yet): the
    topic sweep with per-item predictions, the held-out masked-LM curve and the tagging curve.
    Sweeps of the variants go into ``dest``'s results as the setting ``low_resource`` (the page's
    sweep tab and flips read them there), their tagging curves into the tagging results'
    ``low_resource`` group; the gain-versus-data table into results/lowres.json.

    ``LANGARITH_LOWRES_ONLY=nl,sv`` measures only those languages and writes only the
    checkpoints: two such processes share a 2-core machine's work; a last run without it
    assembles the results from the checkpoints in seconds."""
    import os
    from .. import results as results_mod
    from ..model import LanguageStack
    from ..results import evaluate_target, write_target

    only = [c for c in os.environ.get("LANGARITH_LOWRES_ONLY", "").split(",") if c]
    scratch = eval_bundle(build, dest)
    stack = LanguageStack(scratch, device=build.device)
    # The topic and tagging sweeps on the 0.2 grid, the masked-LM curve on the 0.1 grid (the full
    # targets' are 0.1 and 0.05): CPU time, about 5 minutes a variant on one core.
    lambdas = [0.0, 0.5, 1.0] if build.quick else GRID
    mlm_grid = lambdas if build.quick else LAMBDAS
    tag_lambdas = lambdas
    ckpt = train_dir(build) / "eval"
    ckpt.mkdir(exist_ok=True)
    tag_cache = build.work / "tagging" / "preds"
    bs = 256 if build.device.type == "cuda" else 32
    res_path = dest / "results" / "results.json"
    res = json.loads(res_path.read_text(encoding="utf-8"))
    res["low_resource"] = {}
    table: dict = {}
    t0 = time.time()

    def measure(name: str, target: str, text: str, b: str) -> dict:
        held = results_mod.heldout_texts(stack, text)

        def compute():
            r = evaluate_target(stack, target, b, lambdas, mlm_grid, held, TASK, bs)
            return {**r, "tagging": tagging_curve(stack, target, r["sweep"]["a"], b, tag_lambdas, tag_cache)}

        r = train.checkpointed(ckpt, name, compute)
        g = r["sweep"]["gain_vs_better"]
        _log(f"{name}: merge − better {g['points']:+.1f} [{g['ci95'][0]:+.1f}, {g['ci95'][1]:+.1f}] "
             f"at λ = {r['sweep']['best_lam']}")
        return r

    own = res.get("own_adapter", {})
    trained = json.loads((train_dir(build) / "stats.json").read_text())
    tok = build.tokenizer()
    for code, partner in pairs(build).items():
        if only and code not in only:
            continue
        row = {}
        for v, c, size in variants(build):
            if c != code or v not in stack.bundle.languages:
                continue
            r = measure(v, v, code, partner)
            sweep = {**r["sweep"], "own": own.get(code, {}).get("accuracy"),
                     "own_label": f"full {code} adapter (test)"}
            write_target(dest, res, "low_resource", v, {**r, "sweep": sweep})
            row[size] = point(r)
        if not row:
            continue
        row["full"] = point(train.checkpointed(ckpt, f"full-{code}", lambda: full_curves(
            stack, code, partner, lambdas, mlm_grid, tag_lambdas, tag_cache, bs)))
        tokens = {str(n): trained[variant_code(code, n)]["tokens"] for n in row if n != "full"}
        tokens["full"] = share(tok, training_paragraphs(build, code), 10**12)[1]
        table[code] = {"partner": partner, "points": {str(k): v for k, v in row.items()},
                       "tokens": tokens}
    shutil.rmtree(scratch)
    if only:
        return {"measured": only, "eval_seconds": round(time.time() - t0, 1)}
    train.write_json(res_path, res)
    spans = dest / "results" / "libreoffice_spans.json"
    if spans.exists():
        tag = json.loads(spans.read_text(encoding="utf-8"))
        tag["low_resource"] = {v: json.loads((ckpt / f"{v}.json").read_text())["tagging"]
                               for v in res["low_resource"] if v in shipped(build)}
        spans.write_text(json.dumps(tag, ensure_ascii=False) + "\n", encoding="utf-8")
    train.write_json(dest / "results" / "lowres.json", {
        "languages": table, "sizes": list(SIZES), "steps": STEPS,
        "shipped": [v for v in shipped(build) if v in stack.bundle.languages],
        "training": trained,
        "eval_seconds": round(time.time() - t0, 1)})
    return {"variants": len([v for v in stack.bundle.languages if "@" in v]),
            "eval_seconds": round(time.time() - t0, 1)}


def point(r: dict) -> dict:
    """One point of the gain-versus-data plot: the topic gain, the held-out masked-LM gain (nats
    per token) and the tagging gain of the merge over the better single adapter, with intervals."""
    from .. import tasks

    sw, tag = r["sweep"], r.get("tagging")
    mlm = tasks.heldout_mlm_summary(r["mlm"])["halves"]
    boot = tasks.heldout_mlm_bootstrap(r["mlm"])
    return {"a": r["mlm"]["a"], "b": r["mlm"]["b"],
            "topic": None if sw is None else {
                "a_alone": sw["a_alone"]["accuracy"], "b_alone": sw["b_alone"]["accuracy"],
                "merged": sw["test_at_best"]["accuracy"], "best_lam": sw["best_lam"],
                "gain_vs_better": sw["gain_vs_better"], "n_test": sw["n_test"]},
            "mlm": {"a_alone": mlm["second"]["a"], "b_alone": mlm["second"]["b"],
                    "merged": mlm["second"]["merged"], "best_lam": mlm["best_lam_first"],
                    "gain_vs_better": boot["gain_vs_better"], "n_texts": len(r["mlm"]["sums"][0]) // 2,
                    "n_tokens": mlm["second"]["n_tokens"]},
            "tagging": None if tag is None else {
                "a_alone": tag["a_alone"], "b_alone": tag["b_alone"], "merged": tag["test_at_best"],
                "best_lam": tag["best_lam"], "gain_vs_better": tag["gain_vs_better"], "n_test": tag["n_test"]}}


def full_curves(stack, code: str, partner: str, lambdas, mlm_grid, tag_lambdas, tag_cache: Path,
                bs: int) -> dict:
    """The full adapter's curves with its partner: the masked-LM curve (with per-text sums: the
    bundle keeps only its summary); the topic sweep and tagging curve only where the bundle has
    them already for this pair (the enhancement targets: their per-item predictions and the
    tagging stage's cached predictions are re-scored on this grid). Measuring the others would
    take ~7 CPU minutes each: they are left out, and the table says so."""
    from .. import results, tasks

    mlm = tasks.mlm_curve(stack, results.heldout_texts(stack, code), code, partner, mlm_grid)
    sw = results.sweep_items(stack, code, partner)
    if sw is None or sw["a"] != code or not {round(x, 6) for x in lambdas} <= {
            round(p["lam"], 6) for p in sw["points"]}:
        return {"sweep": None, "mlm": mlm, "tagging": None}
    tag = tagging_curve(stack, code, code, partner, tag_lambdas, tag_cache)
    return {"sweep": results.summary(_subgrid(stack, sw, lambdas)), "mlm": mlm, "tagging": tag}


def _subgrid(stack, sw: dict, lambdas) -> dict:
    """A precomputed sweep restricted to the points of ``lambdas`` (its per-item predictions
    re-scored, bootstrap included), so the full adapter is measured on the variants' grid."""
    from .. import tasks

    lams = [round(p["lam"], 6) for p in sw["points"]]
    idx = [lams.index(round(x, 6)) for x in lambdas]
    data = {s: tasks.load_eval(stack, sw["target"], sw["task"], s) for s in ("dev", "test")}
    preds = {s: [tasks.decode_predictions(sw["predictions"][s][i]) for i in idx] for s in data}
    return tasks.sweep_from_predictions(stack, sw["target"], sw["a"], sw["b"], tuple(lambdas),
                                        sw["task"], data, preds)
