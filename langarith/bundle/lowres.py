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
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..stats import format_gain
from . import train
from .constants import LAMBDAS, LANG_INFO, TASK

if TYPE_CHECKING:  # types only: context never imports this module
    from ..model import LanguageStack
    from .context import Build

# Variant language: its full partner. Languages with at least 600 k tokens of training text (nl
# 696 k, da 633 k, cs 647 k, it 684 k), so that 500 k stays a share of it: sv (302 k) and pl
# (508 k), the examples, have too little text for a 500 k share.
LOWRES = {"nl": "de", "da": "sv", "cs": "pl", "it": "es"}
SIZES = (100_000, 500_000)  # tokens of own text a variant's adapter saw
GRID = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # the variants' topic and tagging sweeps (see stage_eval)
STEPS = 200  # per variant on every device: equal compute for both shares (see the docstring)
# The two arms of the low-resource lesson. "equal_compute": little training (STEPS steps, for
# either share). "converged", the paper's setting: little text, trained with the full adapters'
# recipe up to their number of steps (MAX_STEPS), repeating the share as many epochs as that
# takes, and stopped early once the masked-LM loss on a held-out share of the language's own
# text (VAL_TOKENS, never in any share) has not improved by 0.005 nats for PATIENCE checks of
# CHECK_EVERY steps; the best check's weights are kept.
ARMS = {"equal_compute": "", "converged": "-conv"}  # arm: suffix of its variant codes
PAPER_ARM = "converged"
MAX_STEPS = 1000  # the full adapters' step budget (their GPU schedule; batch 16 here, 96 there)
CHECK_EVERY = 25  # one held-out check per checkpoint
PATIENCE = 4  # checks without improvement before stopping (100 steps)
VAL_TOKENS = 6_000  # the held-out share of own text that decides when to stop
CONVERGED_SECONDS = 3 * 60 * 60  # a wall-time cap per variant (recorded when it binds): 1000 steps take
# 45-100 min on one core of a shared 2-core machine, so it binds only on a slower one
SHIPPED = ("nl@100k", "nl@500k", "nl@100k-conv", "nl@500k-conv", "da@100k-conv", "da@500k-conv",
           "cs@100k-conv", "cs@500k-conv", "it@100k-conv", "it@500k-conv")  # weights in the bundle
QUICK = {"es": "de"}  # --quick trains three languages: its variants (all shipped) check the path


def variant_code(code: str, size: int, arm: str = "equal_compute") -> str:
    return f"{code}@{size // 1000}k{ARMS[arm]}"


def arm_of(variant: str) -> str:
    return next(a for a, suffix in reversed(ARMS.items()) if variant.endswith(suffix))


def pairs(build: Build) -> dict[str, str]:
    return QUICK if build.quick else LOWRES


def variants(build: Build, arm: str = "equal_compute") -> list[tuple[str, str, int]]:
    """(variant code, language, tokens), language by language (a stopped run leaves whole curves)."""
    return [(variant_code(c, n, arm), c, n) for c in pairs(build) for n in SIZES]


def all_variants(build: Build) -> list[tuple[str, str, int, str]]:
    """Both arms' variants, (variant code, language, tokens, arm), the paper's arm first."""
    return [(v, c, n, arm) for arm in sorted(ARMS, key=lambda a: a != PAPER_ARM)
            for v, c, n in variants(build, arm)]


def shipped(build: Build) -> list[str]:
    return [v for v, *_ in all_variants(build)] if build.quick else list(SHIPPED)


def selected(variant: str, code: str) -> bool:
    """``LANGARITH_LOWRES_ONLY=nl,da@100k-conv``: only these languages or variants (empty: all),
    so that two processes can share a 2-core machine's work."""
    only = [c for c in os.environ.get("LANGARITH_LOWRES_ONLY", "").split(",") if c]
    return not only or code in only or variant in only


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] [lowres] {msg}", flush=True)


def _shuffled(paragraphs: list[str], seed: int) -> list[int]:
    order = list(range(len(paragraphs)))
    random.Random(seed).shuffle(order)
    return order


def _take(tokenizer, paragraphs: list[str], order: list[int], n_tokens: int) -> tuple[list[str], int]:
    ids = tokenizer([paragraphs[i] for i in order], add_special_tokens=False)["input_ids"]
    out, total = [], 0
    for i, row in zip(order, ids):
        if total >= n_tokens:
            break
        out.append(paragraphs[i])
        total += len(row) + 1
    return out, total


def share(tokenizer, paragraphs: list[str], n_tokens: int, seed: int = 0) -> tuple[list[str], int]:
    """The first paragraphs of one seeded shuffle holding ``n_tokens`` tokens (each paragraph
    counted with its separator, as ``pack_sequences`` packs it); nested for growing n_tokens."""
    return _take(tokenizer, paragraphs, _shuffled(paragraphs, seed), n_tokens)


def validation_share(tokenizer, paragraphs: list[str], n_tokens: int = VAL_TOKENS,
                     widest: int = max(SIZES), seed: int = 0) -> tuple[list[str], int]:
    """The held-out share that decides when a converged variant stops: the *last* paragraphs of
    the same seeded shuffle, from those outside the ``widest`` share, so it never overlaps one."""
    order = _shuffled(paragraphs, seed)
    rest = order[len(_take(tokenizer, paragraphs, order, widest)[0]):][::-1]
    if not rest:
        raise ValueError("no text is left outside the widest share for the held-out share")
    return _take(tokenizer, paragraphs, rest, n_tokens)


def training_paragraphs(build: Build, code: str) -> list[str]:
    """The language's MLM paragraphs minus the held-out ones (every 50th), as ``mlm_rows``."""
    return [p for i, p in enumerate(build.mlm_paragraphs(code)) if i % 50]


def schedule(build: Build, arm: str = "equal_compute") -> train.Schedule:
    s = build.sched("adapter")
    if build.smoke:
        return s
    if arm == "converged":
        return train.Schedule(steps=MAX_STEPS, batch=16, lr=s.lr, max_seconds=CONVERGED_SECONDS,
                              seq_len=s.seq_len)
    return train.Schedule(steps=STEPS, batch=16, lr=s.lr, max_seconds=4 * 3600, seq_len=s.seq_len)


ARM_WORDS = {"equal_compute": f"{STEPS} steps", "converged": "trained to convergence"}


def manifest_entry(build: Build, code: str, size: int, arm: str = "equal_compute") -> dict:
    name, family = LANG_INFO[code]
    v = variant_code(code, size, arm)
    label = f"{name}, {size // 1000} k tokens" + ("" if arm == "equal_compute" else f", {ARM_WORDS[arm]}")
    return {"code": v, "name": label, "family": family, "adapter": f"adapters/{v}",
            "source": pairs(build)[code], "examples": build.examples(code), "text": code,
            "tokens": size, "arm": arm}


def stage_train(build: Build, dest: Path) -> dict:
    """Train every variant (resumable), then put the shipped ones into the bundle at ``dest``."""
    tok = build.tokenizer()
    work = train_dir(build)
    seed_stats(build, dest)
    stats_file = work / "stats.json"
    model = None
    for v, code, size, arm in all_variants(build):
        if code not in build.adapter_langs or not selected(v, code):
            continue
        out = work / v
        if (out / "adapter_config.json").exists():
            continue
        if model is None:
            model = build.model_with([])
        sched = schedule(build, arm)
        paras = training_paragraphs(build, code)
        if build.smoke:
            paras = paras[:1000]  # room for the 5 k-token share and its held-out share
        n_share = size if not build.smoke else size // 100
        chosen, n_tok = share(tok, paras, n_share)
        rows = train.pack_sequences(tok, chosen, sched.seq_len)
        held, patience, every, val = None, None, CHECK_EVERY, {}
        if arm == "converged":
            val_paras, n_val = (validation_share(tok, paras) if not build.smoke else
                                validation_share(tok, paras, 60, widest=max(SIZES) // 100))
            held, patience = train.pack_sequences(tok, val_paras, sched.seq_len), PATIENCE
            every = CHECK_EVERY if not build.smoke else 1
            val = {"val_tokens": n_val, "val_rows": len(held)}
        _log(f"{v} ({arm}): {len(chosen)} paragraphs, {n_tok:,} tokens, {len(rows)} rows; "
             f"up to {sched.steps} steps × {sched.batch} on {build.device}")
        t0 = time.time()
        s = train.train_language_adapter(model, v, tok, rows, sched, build.device,
                                         checkpoint=work / f"{v}.ckpt", seed_code=code,
                                         held_out=held, patience=patience, every=every)
        train.save_fp16_adapter(model, v, out)
        model.delete_adapter(v)
        (work / f"{v}.ckpt").unlink(missing_ok=True)
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}  # other processes'
        stats[v] = {**s, **val, "arm": arm, "language": code, "tokens": n_tok,
                    "paragraphs": len(chosen), "rows": len(rows), "epochs": round(
                        s["steps"] * sched.batch / max(1, len(rows)), 2),
                    "device": str(build.device), "wall_seconds": round(time.time() - t0, 1)}
        train.write_json(stats_file, stats)
        _log(f"{v}: {stats[v]}")
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    info = {"variants": sorted(stats),
            "train_seconds": round(sum(s["train_seconds"] for s in stats.values()), 1)}
    if not selected("", ""):  # LANGARITH_LOWRES_ONLY: part of the work; a last run installs
        return {**info, "partial": True}
    install(build, dest)
    return info


def seed_stats(build: Build, dest: Path) -> None:
    """Training records of variants trained by an earlier run (``results/lowres.json`` of the
    packaged bundle) join this machine's ``stats.json``, so that re-measuring or re-packaging
    does not need their training to be redone."""
    shipped_file = dest / "results" / "lowres.json"
    stats_file = train_dir(build) / "stats.json"
    if not shipped_file.exists():
        return
    old = json.loads(shipped_file.read_text(encoding="utf-8")).get("training", {})
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    merged = {**{v: {"arm": arm_of(v), **s} for v, s in old.items()}, **stats}
    if merged != stats:
        train.write_json(stats_file, merged)


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
    for v, code, size, arm in all_variants(build):
        src, target = train_dir(build) / v, dest / "adapters" / v
        if v not in which:
            continue
        if (src / "adapter_config.json").exists():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(src, target)
        if (target / "adapter_config.json").exists():
            langs.append(manifest_entry(build, code, size, arm))
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
    for v, code, size, arm in all_variants(build):
        src = train_dir(build) / v
        if not (src / "adapter_config.json").exists():
            src = dest / "adapters" / v  # shipped by an earlier run, not trained on this machine
        if (src / "adapter_config.json").exists():
            (root / "adapters" / v).symlink_to(src.resolve())
            langs.append(manifest_entry(build, code, size, arm))
    train.write_json(root / "manifest.json", {**manifest, "languages": langs})
    return root


def tagging_curve(stack, target: str, a: str, b: str, lambdas, cache: Path) -> dict | None:
    """The span-tagging λ curve of A and B on ``target``'s sentences (None without the task)."""
    from ..ner import sweep_summary
    from . import tagging

    if tagging.TASK not in stack.bundle.tasks:
        return None
    ev = tagging.Evaluator(stack, cache)
    runs = {lam: ev.scores(target, a, b, lam) for lam in lambdas}
    return sweep_summary(target, a, b, list(lambdas), {x: runs[x]["dev"] for x in lambdas},
                         {x: runs[x]["test"] for x in lambdas})


@dataclass
class EvalRun:
    """What every measurement of one ``lowres_eval`` run shares: the scratch bundle's stack, the
    grids, the checkpoints (one per measured variant) and the packaged bundle's earlier table."""
    build: Build
    stack: LanguageStack  # over the scratch bundle
    lambdas: list  # the topic and tagging sweeps
    mlm_grid: list  # the masked-LM curve
    ckpt: Path
    tag_cache: Path
    bs: int
    previous: dict  # results/lowres.json's "languages" of the packaged bundle (or {})

    def earlier(self, code: str, arm: str, key: str):
        """The point a previous run shipped for this language, arm and share (or None)."""
        row = self.previous.get(code, {})
        return (row.get("points" if arm == "equal_compute" else "converged") or {}).get(key)

    def measured_here(self, v: str) -> bool:
        return ((self.ckpt / f"{v}.json").exists()
                or (train_dir(self.build) / v / "adapter_config.json").exists())


def eval_run(build: Build, dest: Path, scratch: Path) -> EvalRun:
    from ..model import LanguageStack

    # The topic and tagging sweeps on the 0.2 grid, the masked-LM curve on the 0.1 grid (the full
    # targets' are 0.1 and 0.05): CPU time, about 5 minutes a variant on one core.
    lambdas = [0.0, 0.5, 1.0] if build.quick else GRID
    ckpt = train_dir(build) / "eval"
    ckpt.mkdir(exist_ok=True)
    prev_file = dest / "results" / "lowres.json"
    previous = json.loads(prev_file.read_text(encoding="utf-8")).get("languages", {}) \
        if prev_file.exists() else {}
    return EvalRun(build, LanguageStack(scratch, device=build.device), lambdas,
                   lambdas if build.quick else LAMBDAS, ckpt, build.work / "tagging" / "preds",
                   256 if build.device.type == "cuda" else 32, previous)


def measure_variant(run: EvalRun, name: str, target: str, text: str, b: str) -> dict:
    """One variant's topic sweep, masked-LM curve (on ``text``'s held-out paragraphs) and tagging
    curve, checkpointed under ``name``."""
    from ..results import evaluate_target, heldout_texts

    held = heldout_texts(run.stack, text)

    def compute():
        r = evaluate_target(run.stack, target, b, run.lambdas, run.mlm_grid, held, TASK, run.bs)
        return {**r, "tagging": tagging_curve(run.stack, target, r["sweep"]["a"], b, run.lambdas,
                                              run.tag_cache)}

    r = train.checkpointed(run.ckpt, name, compute)
    g = r["sweep"]["gain_vs_better"]
    _log(f"{name}: merge − better {format_gain(g)} at λ = {r['sweep']['best_lam']}")
    return r


def variant_points(run: EvalRun, dest: Path, res: dict, code: str, partner: str) -> dict:
    """arm -> share -> point of ``code``'s variants; each sweep measured here joins ``res``'s
    ``low_resource`` setting."""
    from ..results import write_target

    own = res.get("own_adapter", {})
    rows: dict[str, dict] = {arm: {} for arm in ARMS}
    for v, c, size, arm in all_variants(run.build):
        if c != code:
            continue
        kept = run.earlier(code, arm, str(size))
        # Measured by an earlier run and not here, or measured but not shipped (its weights
        # are not in this bundle): its point stays in the table.
        if kept and (v not in run.stack.bundle.languages or not run.measured_here(v)):
            rows[arm][str(size)] = kept
            continue
        if v not in run.stack.bundle.languages or not selected(v, code):
            continue
        r = measure_variant(run, v, v, code, partner)
        sweep = {**r["sweep"], "own": own.get(code, {}).get("accuracy"),
                 "own_label": f"full {code} adapter (test)"}
        write_target(dest, res, "low_resource", v, {**r, "sweep": sweep})
        rows[arm][str(size)] = point(r)
    return rows


def full_point(run: EvalRun, code: str, partner: str) -> dict | None:
    """The full adapter's point: measured here (checkpointed), else the earlier run's; None when
    neither (another process of a split run measures it)."""
    name = f"full-{code}"
    if (run.ckpt / f"{name}.json").exists() or not run.earlier(code, "equal_compute", "full"):
        if not selected(name, code):
            return None
        return point(train.checkpointed(run.ckpt, name, lambda: full_curves(
            run.stack, code, partner, run.lambdas, run.mlm_grid, run.lambdas, run.tag_cache, run.bs)))
    return run.earlier(code, "equal_compute", "full")


def tokens_seen(build: Build, code: str, trained: dict, tok) -> dict:
    """Tokens of own text behind each point: the variants' shares and the full adapter's text."""
    tokens = {str(n): trained[variant_code(code, n)]["tokens"] for n in SIZES
              if variant_code(code, n) in trained}
    tokens["full"] = share(tok, training_paragraphs(build, code), 10**12)[1]
    return tokens


def copy_tagging_low_resource(build: Build, dest: Path, res: dict, ckpt: Path) -> None:
    """The shipped variants' tagging curves into the tagging results' ``low_resource`` group."""
    spans = dest / "results" / "libreoffice_spans.json"
    if not spans.exists():
        return
    tag = json.loads(spans.read_text(encoding="utf-8"))
    low = tag.setdefault("low_resource", {})
    for v in res["low_resource"]:
        if v in shipped(build) and (ckpt / f"{v}.json").exists():
            low[v] = json.loads((ckpt / f"{v}.json").read_text())["tagging"]
    spans.write_text(json.dumps(tag, ensure_ascii=False) + "\n", encoding="utf-8")


def write_lowres_table(build: Build, dest: Path, stack, table: dict, trained: dict,
                       seconds: float) -> None:
    """results/lowres.json: the gain-versus-data table with the arms' recipes and the training
    records."""
    train.write_json(dest / "results" / "lowres.json", {
        "languages": table, "sizes": list(SIZES), "steps": STEPS,
        "arms": {"equal_compute": f"little training: {STEPS} steps of 16 × 128 tokens for either share",
                 "converged": f"little text, trained to convergence: up to {MAX_STEPS} steps, early "
                              f"stop after {PATIENCE} checks of {CHECK_EVERY} steps without a 0.005-nat "
                              f"gain on {VAL_TOKENS:,} held-out tokens of own text"},
        "paper_arm": PAPER_ARM,
        "converged_recipe": {"max_steps": MAX_STEPS, "check_every": CHECK_EVERY, "patience": PATIENCE,
                             "min_delta": 0.005, "val_tokens": VAL_TOKENS,
                             "max_seconds": CONVERGED_SECONDS},
        "shipped": [v for v in shipped(build) if v in stack.bundle.languages
                    and (dest / "adapters" / v / "adapter_config.json").exists()],
        "training": trained,
        "eval_seconds": round(seconds, 1)})


def stage_eval(build: Build, dest: Path) -> dict:
    """Per variant of both arms (and per language's full adapter): the topic sweep with per-item
    predictions, the held-out masked-LM curve and the tagging curve. Sweeps of the variants go
    into ``dest``'s results as the setting ``low_resource`` (the page's sweep tab and flips read
    them there), their tagging curves into the tagging results' ``low_resource`` group; the
    gain-versus-data table into results/lowres.json.

    A variant is measured when this machine trained it or holds its checkpoint; one measured by
    an earlier run, whose training this machine did not repeat, keeps its shipped point.
    ``LANGARITH_LOWRES_ONLY=nl,da@100k-conv`` measures only those languages or variants and
    writes only the checkpoints: two such processes share a 2-core machine's work; a last run
    without it assembles the results from the checkpoints in seconds."""
    seed_stats(build, dest)
    partial = not selected("", "")
    if not partial:
        install(build, dest)  # the shipped variants trained here, before they are measured
    scratch = eval_bundle(build, dest)
    run = eval_run(build, dest, scratch)
    res_path = dest / "results" / "results.json"
    res = json.loads(res_path.read_text(encoding="utf-8"))
    res.setdefault("low_resource", {})
    t0 = time.time()
    trained = json.loads((train_dir(build) / "stats.json").read_text())
    tok = build.tokenizer()
    table: dict = {}
    for code, partner in pairs(build).items():
        rows = variant_points(run, dest, res, code, partner)
        if not any(rows.values()):
            continue
        full = full_point(run, code, partner)
        if full is not None:
            rows["equal_compute"]["full"] = full
        table[code] = {"partner": partner, "points": rows["equal_compute"],
                       "converged": rows["converged"], "tokens": tokens_seen(build, code, trained, tok)}
    shutil.rmtree(scratch)
    if partial:
        return {"measured": os.environ.get("LANGARITH_LOWRES_ONLY"),
                "eval_seconds": round(time.time() - t0, 1)}
    train.write_json(res_path, res)
    copy_tagging_low_resource(build, dest, res, run.ckpt)
    write_lowres_table(build, dest, run.stack, table, trained, time.time() - t0)
    return {"variants": len([v for v in run.stack.bundle.languages if "@" in v]),
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
