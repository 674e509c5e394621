"""The typed context every build stage receives: where the build works and packages, which
languages it trains, the device, the stages done so far, and the helpers the stages share
(logging, schedules, the corpus' items, models from the bundle being built).

``tagging`` and ``lowres`` import ``Build`` for type hints only; it imports neither of them.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
from pathlib import Path

import torch

from ..paths import DEFAULT_BUNDLE
from . import corpus as corpus_mod
from . import train
from .constants import (LANG_INFO, MLM_HELDOUT, QUICK_ADAPTER_LANGS, QUICK_TARGETS, RELATED, TASK,
                        TASK_TITLE)


class Build:
    """One build: ``work`` (the resumable working folder), ``dest`` (the packaged bundle the
    stages after ``package`` work on), ``cache`` (downloads), the languages and the device."""

    work: Path
    dest: Path
    cache: Path
    quick: bool
    smoke: bool
    device: torch.device
    adapter_langs: list[str]
    targets: list[str]
    corpus: Path
    base: Path
    bundle: Path
    stages_file: Path
    stages: dict[str, dict]  # stage name -> its record (seconds, device, info): done

    def __init__(self, work: Path, quick: bool, device: str | None, cache: Path, smoke: bool = False,
                 dest: Path | None = None):
        self.work, self.quick, self.cache = work, quick, cache
        self.dest = dest if dest is not None else DEFAULT_BUNDLE
        self.smoke = smoke or quick  # a few steps and small eval sets (all languages unless quick)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.adapter_langs = QUICK_ADAPTER_LANGS if quick else corpus_mod.DEFAULT_ADAPTER_LANGS
        self.targets = QUICK_TARGETS if quick else corpus_mod.DEFAULT_TARGETS
        self.corpus = work / "corpus"
        self.base = work / "base"
        self.bundle = work / "bundle"
        self.stages_file = work / "stages.json"
        self.stages = json.loads(self.stages_file.read_text()) if self.stages_file.exists() else {}

    # -- record keeping ----------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(self.work / "build.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")

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

    # -- training ----------------------------------------------------------------------------------

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
        from ..loading import load_adapter_checked

        model = train.load_model(self.base, self.device)
        model.load_head(str(self.bundle / "heads" / "mlm"), load_as="mlm")
        for code in adapters:
            load_adapter_checked(model, self.bundle / "adapters" / code, code)
        if task:
            load_adapter_checked(model, self.bundle / "tasks" / TASK, TASK)
        return model.to(self.device)

    def tokenizer(self):
        from ..trust import load_tokenizer

        return load_tokenizer(self.base)

    # -- the bundle's files ------------------------------------------------------------------------

    def eval_languages(self) -> list[str]:
        return ["en", *[c for c in self.adapter_langs if c != "en"], *self.targets]

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
                       "label_names": corpus_mod.CLASS_NAMES, "eval": f"eval/{TASK}"}],
            "results": "results/results.json",
        }
        train.write_json(self.bundle / "manifest.json", manifest)

    def seed_from_shipped(self, shipped: Path) -> None:
        """Take the trained parts (MLM head, language adapters, task adapters) of a packaged
        bundle instead of training them: re-evaluating the shipped bundle on a machine that did
        not train it (``--from-shipped``). The stages they stand for are marked done."""
        import shutil

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
