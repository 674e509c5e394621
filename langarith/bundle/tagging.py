"""The embedded bundle's second task: tagging the marked-up spans of the LibreOffice help.

The help HTML keeps its inline markup in every translation, span for span, so each paragraph
comes with typed spans for free. The tag set (``SPAN_CLASSES``):

* ``UI``    = ``emph`` + ``menuitem``. Merged: both mark user-interface labels (menu paths,
  dialogs, buttons) and the help uses them interchangeably; the same path ("Format - Cells") is
  ``emph`` in one file and ``menuitem`` in the next, and they nest (``emph`` around ``menuitem``),
  so keeping them apart would ask the model to guess an author's habit, not read the language.
* ``CODE``  = ``literal`` (function names, file names, values), kept: it is code-like, not UI.
* ``INPUT`` = ``input`` (text the reader types), kept.
* ``KEY``   = ``keycode`` (keys and shortcuts), kept.

Left out: ``avis`` (marks whole tooltip sentences, not a span inside a sentence), and the rare
``productname``/``widget``/``acronym``. Nested spans: the outermost kept span wins. Spans are
turned into BIO tags over whitespace words (the tokenizer's words: its pre-tokenizer is
Metaspace, which splits on whitespace); a word touched by a span takes its type.

Split: the topic task's hash split, by item key. Dev and test are the topic task's dev/test
paragraphs, which the corpus stage removed from the MLM text of every language (the shipped
language adapters never saw them); train is English paragraphs that are not held out. Untranslated
paragraphs (equal to en-US) were dropped per language by the corpus stage; an eval item must have
at least one span in its own language.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..arithmetic import pair_weights
from ..stats import format_gain
from . import corpus as corpus_mod
from .constants import ENHANCEMENT, LAMBDAS, RELATED

if TYPE_CHECKING:  # the context's type only: context never imports this module
    from .context import Build

TASK = "libreoffice_spans"
TASK_TITLE = "LibreOffice help: marked-up spans (UI, CODE, INPUT, KEY)"
SPAN_CLASSES = {"emph": "UI", "menuitem": "UI", "literal": "CODE", "input": "INPUT",
                "keycode": "KEY"}
TYPES = ["UI", "CODE", "INPUT", "KEY"]
LABELS = ["O"] + [f"{p}-{t}" for t in TYPES for p in ("B", "I")]
#: The span kinds spelled out for the page (the tags stay in JSON, CLI and API).
TYPE_NAMES = {"UI": "UI element", "CODE": "code", "INPUT": "typed input", "KEY": "key"}
MAX_TOKENS = 128
EVAL_PER_SPLIT = 300  # dev and test sentences per language, at most (a 1-core sweep: ~45 min)
# Dev sentences per target whose taggings are stored for the page (flips table, tour): the first
# 100 of the eval file's seeded order (None: all 300). 11 λ × 10 targets × 300 took ~15 min on 2
# idle CPU cores and over an hour on shared ones; 100 still give the table tens of rows.
PAGE_DEV_ITEMS: int | None = 100

_OPEN, _CLOSE = "\x01", "\x02"  # markers in the parsed stream: not whitespace, never in the help


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] [tagging] {msg}", flush=True)


# --- span extraction ---------------------------------------------------------------------------


class SpanParser(corpus_mod.HelpParagraphParser):
    """The corpus parser (same text, same ids) that also marks kept spans in the text stream.

    Markers travel with the text into parent blocks exactly as the corpus parser moves text, so
    offsets never need fixing up; ``marked_to_spans`` turns them into character offsets."""

    def __init__(self) -> None:
        super().__init__()
        self._marks: list[bool] = []  # per open <span>: did it emit an open marker?

    def _emit(self, s: str) -> bool:
        if not self._skip and self._stack:
            self._stack[-1][2].append(s)
            return True
        return False

    def handle_starttag(self, tag, attrs):
        super().handle_starttag(tag, attrs)
        if tag == "span":
            classes = (dict(attrs).get("class") or "").split()
            kind = next((SPAN_CLASSES[c] for c in classes if c in SPAN_CLASSES), None)
            self._marks.append(bool(kind) and self._emit(_OPEN + str(TYPES.index(kind))))

    def handle_endtag(self, tag):
        if tag == "span" and self._marks and self._marks.pop():
            self._emit(_CLOSE)
        super().handle_endtag(tag)


def marked_to_spans(raw: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Normalise whitespace exactly as ``corpus._norm`` and return (text, [(start, end, type)]).

    Outermost span wins (nested kept spans are absorbed); unmatched markers are ignored; spans
    that hold only whitespace vanish."""
    out: list[str] = []
    spans: list[tuple[int, int, str]] = []
    depth, start, kind = 0, 0, ""
    pending = False  # a whitespace run seen since the last character written
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == _OPEN:
            if depth == 0:
                start = len(out) + (1 if pending and out else 0)
                kind = TYPES[int(raw[i + 1])]
            depth += 1
            i += 2
            continue
        if c == _CLOSE:
            if depth > 0:
                depth -= 1
                if depth == 0 and len(out) > start:
                    spans.append((start, len(out), kind))
            i += 1
            continue
        if c.isspace():
            pending = True
        else:
            if pending and out:
                out.append(" ")
            pending = False
            out.append(c)
        i += 1
    return "".join(out), spans


def parse_help_spans(root: Path, lang_dir: str) -> dict[str, tuple[str, list]]:
    """``key -> (text, spans)`` for the help of one language, keys and texts as ``parse_help``."""
    base = Path(root) / "usr/share/libreoffice/help" / lang_dir / "text"
    out: dict[str, tuple[str, list]] = {}
    for path in sorted(base.rglob("*.html")):
        rel = path.relative_to(base)
        parser = SpanParser()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        parser.close()
        for pid, raw in parser.items:
            text, spans = marked_to_spans(raw)
            key = f"{rel.parts[0]}/{'/'.join(rel.parts[1:])}#{pid}"
            if len(text) >= corpus_mod.MIN_CHARS and key not in out:
                out[key] = (text, spans)
    return out


def words_of(text: str) -> list[tuple[int, int]]:
    """Character offsets of the whitespace-separated words."""
    offs, pos = [], 0
    for w in text.split():
        s = text.index(w, pos)
        offs.append((s, s + len(w)))
        pos = s + len(w)
    return offs


def bio_tags(text: str, spans: list[tuple[int, int, str]]) -> tuple[list[str], list[str]]:
    """(words, BIO tags): a word takes the type of the first span it overlaps; B on the first
    word of each span (so adjacent spans stay two spans), I on the following ones."""
    offs = words_of(text)
    tags = ["O"] * len(offs)
    for j, (ws, we) in enumerate(offs):
        for k, (s, e, kind) in enumerate(spans):
            if s < we and ws < e:
                first = j == 0 or not (s < offs[j - 1][1] and offs[j - 1][0] < e)
                tags[j] = ("B-" if first else "I-") + kind
                break
    return [text[s:e] for s, e in offs], tags


def count_spans(tags: list[str]) -> dict[str, int]:
    from seqeval.metrics.sequence_labeling import get_entities

    out = {t: 0 for t in TYPES}
    for kind, _, _ in get_entities(tags):
        out[kind] += 1
    return out


# --- the task data -----------------------------------------------------------------------------


def _parsed_spans(cache: Path, lang: str) -> dict[str, tuple[str, list]]:
    cfile = cache / "parsed_spans" / f"{lang}.json.gz"
    if cfile.exists():
        with gzip.open(cfile, "rt", encoding="utf-8") as f:
            return {k: (v[0], [tuple(s) for s in v[1]]) for k, v in json.load(f).items()}
    root = cache / "root" / corpus_mod.package_for(lang)
    t = time.time()
    data = parse_help_spans(root, corpus_mod.help_language_dir(root, lang))
    _log(f"parsed spans {lang}: {len(data)} paragraphs in {time.time() - t:.1f} s")
    cfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfile.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    tmp.rename(cfile)
    return data


def build_items(cache: Path, corpus_dir: Path, langs: list[str]) -> tuple[list[dict], dict]:
    """Train (English) and dev/test (every language) items, plus the span statistics.

    Held out = the topic task's dev/test keys and every English text equal to one of them (the
    corpus stage removed both from all MLM text). An item's text must equal the corpus stage's
    text for that key and language, so the same fallback filtering and vocabulary apply."""
    topic = [json.loads(x) for x in (corpus_dir / "task.jsonl").read_text(encoding="utf-8").splitlines() if x]
    held = {r["key"]: r for r in topic if r["split"] != "train"}
    held_text = {t for r in held.values() for t in r["text"].values()}
    parsed = {l: _parsed_spans(cache, l) for l in langs}
    items: list[dict] = []
    mismatch = {l: 0 for l in langs}
    seen: set[str] = set()
    for key, (text, spans) in sorted(parsed["en"].items()):  # train: English, deduplicated
        if key in held or text in held_text or text in seen or not spans:
            continue
        seen.add(text)
        words, tags = bio_tags(text, spans)
        items.append({"key": key, "lang": "en", "split": "train", "text": text,
                      "words": words, "tags": tags})
    for key in sorted(held):
        r = held[key]
        for l in langs:
            want = r["text"].get(l)
            got = parsed[l].get(key)
            if want is None or got is None:
                continue
            if got[0] != want:  # the corpus stage's text is the reference (vocabulary, MLM filter)
                mismatch[l] += 1
                continue
            if not got[1]:
                continue
            words, tags = bio_tags(*got)
            items.append({"key": key, "lang": l, "split": r["split"], "text": want,
                          "words": words, "tags": tags})
    return items, _stats(items, langs, mismatch)


def _stats(items: list[dict], langs: list[str], mismatch: dict) -> dict:
    per = {}
    for l in langs:
        row = {s: {"sentences": 0, **{t: 0 for t in TYPES}} for s in ("train", "dev", "test")}
        for it in items:
            if it["lang"] == l:
                c = row[it["split"]]
                c["sentences"] += 1
                for t, n in count_spans(it["tags"]).items():
                    c[t] += n
        per[l] = {s: v for s, v in row.items() if v["sentences"]} | {"text_mismatch": mismatch[l]}
    return {"task": TASK, "labels": LABELS, "span_classes": SPAN_CLASSES, "languages": per}


def eval_subset(items: list[dict], lang: str, per_split: int = EVAL_PER_SPLIT) -> list[dict]:
    """Up to ``per_split`` dev and test items of a language, a seeded sample by key (the same
    keys are preferred in every language, so the languages are compared on similar paragraphs)."""
    out = []
    for split in ("dev", "test"):
        pool = [it for it in items if it["lang"] == lang and it["split"] == split]
        pool.sort(key=lambda it: _key_hash(it["key"]))  # a seeded order, alike in every language
        out += pool[:per_split]
    return out


def _key_hash(key: str, seed: int = 7) -> str:
    import hashlib

    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.rename(path)


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


# --- encoding and training ---------------------------------------------------------------------


def encode(tokenizer, words: list[str], tags: list[str] | None = None, max_tokens: int = MAX_TOKENS):
    """Input ids and, with tags, labels on each word's first sub-token (-100 elsewhere), plus the
    first sub-token position of every word that survived truncation."""
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_tokens)
    index = {lab: i for i, lab in enumerate(LABELS)}
    labels, first, prev = [], [], None
    for pos, w in enumerate(enc.word_ids()):
        if w is not None and w != prev:
            first.append(pos)
            labels.append(index[tags[w]] if tags is not None else 0)
        else:
            labels.append(-100)
        prev = w
    return enc["input_ids"], labels, first


def _batches(rows: list, batch: int, seed: int, epochs: int) -> list[list[int]]:
    """Length-bucketed batches, reshuffled each epoch, fixed by the seed (so a resumed run takes
    the same batch at the same step)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    chunks = [order[s:s + batch] for s in range(0, len(order), batch)]
    rng, out = random.Random(seed), []
    for _ in range(epochs):
        rng.shuffle(chunks)
        out += [list(c) for c in chunks]
    return out


def _collate(rows, idx, pad_id: int):
    n = max(len(rows[i][0]) for i in idx)
    ids = torch.full((len(idx), n), pad_id, dtype=torch.long)
    lab = torch.full((len(idx), n), -100, dtype=torch.long)
    att = torch.zeros((len(idx), n), dtype=torch.long)
    for j, i in enumerate(idx):
        x, y = rows[i][0], rows[i][1]
        ids[j, :len(x)] = torch.tensor(x)
        lab[j, :len(y)] = torch.tensor(y)
        att[j, :len(x)] = 1
    return ids, att, lab


def add_task(model, name: str = TASK) -> None:
    from adapters import SeqBnConfig

    from .train import SEED

    torch.manual_seed(SEED)
    model.add_adapter(name, config=SeqBnConfig(reduction_factor=16))
    model.add_tagging_head(name, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)))


def train_tagger(model, tokenizer, items: list[dict], ckpt: Path, *, epochs: int, batch: int,
                 lr: float, max_seconds: float, language: str = "en", log_every: int = 50) -> dict:
    """Task adapter + tagging head on ``Stack(language, task)``, language adapter frozen.

    Resumable: every ~3 minutes the trainable tensors, the optimiser and the step go to ``ckpt``;
    a restarted run continues from there with the same batch order and learning-rate schedule
    (linear warm-up over 5 %, linear decay to the step or time budget, whichever ends first)."""
    from adapters.composition import Stack

    from .train import SEED, Schedule, freeze_all_but, scheduled_lr

    rows = [encode(tokenizer, it["words"], it["tags"])[:2] for it in items]
    plan = _batches(rows, batch, SEED, epochs)
    add_task(model)
    model.set_active_adapters(Stack(language, TASK))
    freeze_all_but(model, [f".adapters.{TASK}.", f"heads.{TASK}."])
    named = {k: p for k, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(list(named.values()), lr=lr, weight_decay=0.0)
    step, spent, losses = 0, 0.0, []
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for k, v in state["params"].items():
                named[k].copy_(v)
        opt.load_state_dict(state["opt"])
        step, spent, losses = state["step"], state["seconds"], state["losses"]
        _log(f"resumed at step {step}/{len(plan)} ({spent:.0f} s spent)")
    sched = Schedule(steps=len(plan), batch=batch, lr=lr, max_seconds=max_seconds)
    model.train()
    t0, last_save = time.time() - spent, time.time()
    while step < len(plan) and time.time() - t0 < max_seconds:
        for g in opt.param_groups:
            g["lr"] = scheduled_lr(step, time.time() - t0, sched)
        ids, att, lab = _collate(rows, plan[step], tokenizer.pad_token_id)
        logits = model(input_ids=ids, attention_mask=att, head=TASK).logits
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, len(LABELS)), lab.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(named.values()), 1.0)
        opt.step()
        losses.append(round(loss.item(), 4))
        step += 1
        if step % log_every == 0:
            _log(f"step {step}/{len(plan)} loss {sum(losses[-log_every:]) / log_every:.4f} "
                 f"({time.time() - t0:.0f} s)")
        if time.time() - last_save > 180 or step == len(plan):
            _save_ckpt(ckpt, named, opt, step, time.time() - t0, losses)
            last_save = time.time()
    _save_ckpt(ckpt, named, opt, step, time.time() - t0, losses)
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return {"steps": step, "planned_steps": len(plan), "epochs": epochs, "batch": batch, "lr": lr,
            "train_items": len(items), "train_seconds": round(time.time() - t0, 1),
            "first_loss": losses[0] if losses else math.nan,
            "final_loss": round(sum(tail) / max(len(tail), 1), 4),
            "trainable": sum(p.numel() for p in named.values())}


def _save_ckpt(path: Path, named, opt, step: int, seconds: float, losses: list) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"params": {k: v.detach().clone() for k, v in named.items()}, "opt": opt.state_dict(),
                "step": step, "seconds": seconds, "losses": losses}, tmp)
    tmp.rename(path)


# --- build stages (build.REGISTRY calls them with the typed context.Build) ---------------------------------------------------------


def _langs(build) -> list[str]:
    return ["en", *[c for c in build.adapter_langs if c != "en"], *build.targets]


def items_for(build) -> tuple[list[dict], dict]:
    """The task items, built once per work folder (``WORK/tagging/items.jsonl.gz``)."""
    folder = build.work / "tagging"
    path, spath = folder / "items.jsonl.gz", folder / "stats.json"
    if path.exists() and spath.exists():
        return read_jsonl_gz(path), json.loads(spath.read_text(encoding="utf-8"))
    items, stats = build_items(build.cache / "debian", build.corpus, _langs(build))
    write_jsonl_gz(path, items)
    spath.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return items, stats


def manifest_entry() -> dict:
    return {"name": TASK, "title": TASK_TITLE, "kind": "tagging", "adapter": f"tasks/{TASK}",
            "labels": LABELS, "label_names": TYPE_NAMES, "eval": f"eval/{TASK}"}


def add_to_manifest(dest: Path) -> None:
    """Add (or replace) this task's entry in ``dest/manifest.json``; other entries untouched."""
    path = dest / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["tasks"] = [t for t in manifest["tasks"] if t["name"] != TASK] + [manifest_entry()]
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def stage_train(build: Build, dest: Path, *, epochs: int = 8, batch: int = 16, lr: float = 1e-3,
                max_seconds: float = 2400) -> dict:
    """Train on the packaged bundle's frozen English adapter; write the task adapter (fp16, with
    its head), the eval sets and the manifest entry into ``dest``. Budget: 8 epochs of the ~9,000
    English sentences or 40 minutes (one CPU core: ~0.5 s a batch of 16), whichever ends first."""
    from ..loading import Bundle, load_adapter_checked
    from .train import load_model, save_fp16_adapter

    items, stats = items_for(build)
    train_items = [it for it in items if it["split"] == "train"]
    if build.smoke:
        train_items, epochs, max_seconds = train_items[:64], 1, 60
    bundle = Bundle.load(dest)
    from ..trust import load_tokenizer

    tok = load_tokenizer(bundle.path(bundle.manifest["tokenizer"]))
    model = load_model(bundle.base_path(), torch.device("cpu"))
    load_adapter_checked(model, bundle.path(bundle.languages["en"].adapter), "en")
    info = train_tagger(model, tok, train_items, build.work / "tagging" / "ckpt.pt", epochs=epochs,
                        batch=batch, lr=lr, max_seconds=max_seconds)
    save_fp16_adapter(model, TASK, dest / "tasks" / TASK, with_head=True)
    write_eval_sets(build, dest, items)
    add_to_manifest(dest)
    _log(f"trained: {info}")
    return info


def write_eval_sets(build: Build, dest: Path, items: list[dict]) -> None:
    per_split = 8 if build.smoke else EVAL_PER_SPLIT
    for l in _langs(build):
        write_jsonl_gz(dest / "eval" / TASK / f"{l}.jsonl.gz",
                       [{k: it[k] for k in ("key", "split", "text", "words", "tags")}
                        for it in eval_subset(items, l, per_split)])


def _by_split(rows: list[dict], pred: list[list[str]]) -> dict:
    """seqeval scores and per-sentence counts of one prediction run, per split."""
    from ..ner import sentence_counts, span_f1

    out = {}
    for split in ("dev", "test"):
        idx = [i for i, r in enumerate(rows) if r["split"] == split]
        if not idx:
            continue
        gold, p = [rows[i]["tags"] for i in idx], [pred[i] for i in idx]
        out[split] = {**span_f1(gold, p), "counts": [list(sentence_counts(g, q)) for g, q in zip(gold, p)]}
    return out


class Evaluator:
    """Predictions of one stack on the tagging eval sets, cached on disk per (language, adapter
    or merge) so an interrupted evaluation resumes where it stopped."""

    def __init__(self, stack, cache: Path | None, task: str = TASK, split: str | None = None,
                 limit: int | None = None):
        """``split``/``limit``: only the first ``limit`` items of that split (None: all)."""
        from ..ner import load_tagging_eval

        self.stack, self.cache, self.task = stack, cache, task
        self.memo: dict = {}
        folder = stack.bundle.path(stack.bundle.task(task).eval)
        self.rows = {c: load_tagging_eval(stack, c, task, split)[:limit] for c in stack.bundle.languages
                     if (folder / f"{stack.bundle.text_of(c)}.jsonl.gz").is_file()}

    def pred(self, lang: str, a: str, b: str | None = None, lam: float = 1.0) -> list[list[str]]:
        from ..ner import tag_words

        spec = a if b is None or lam == 1 else b if lam == 0 else f"{a}+{b}@{lam:g}"
        adapter = a if spec == a else b if spec == b else pair_weights(a, b, lam)
        if (lang, spec) in self.memo:
            return self.memo[lang, spec]
        path = self.cache / f"{lang}_{self._digest(lang)}__{spec}.json" if self.cache else None
        if path and path.exists():
            self.memo[lang, spec] = json.loads(path.read_text(encoding="utf-8"))
            return self.memo[lang, spec]
        t = time.time()
        pred = tag_words(self.stack, [r["words"] for r in self.rows[lang]], adapter, self.task)
        _log(f"{lang} with {spec}: {len(pred)} sentences in {time.time() - t:.1f} s")
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(pred), encoding="utf-8")
        self.memo[lang, spec] = pred
        return pred

    def _digest(self, lang: str) -> str:
        """Names the eval set in cache file names: a changed set never reads stale predictions."""
        import hashlib

        keys = "\n".join(f"{r['split']}:{r['key']}" for r in self.rows[lang])
        return hashlib.sha1(keys.encode()).hexdigest()[:10]

    def scores(self, lang: str, a: str, b: str | None = None, lam: float = 1.0) -> dict:
        return _by_split(self.rows[lang], self.pred(lang, a, b, lam))


def _public(score: dict) -> dict:
    return {k: v for k, v in score.items() if k != "counts"}


def evaluate_all(stack, pairs: dict[str, tuple[str, str, str]], lambdas: list[float],
                 cache: Path | None, task: str = TASK) -> tuple[dict, dict]:
    """English F1, the premise (own vs English adapter on each adapter language, test) and the λ
    curves of ``pairs`` (target -> (A, B, group)). Returns (results, stored predictions)."""
    import numpy as np

    from ..ner import sweep_summary
    from ..stats import bootstrap_difference

    ev = Evaluator(stack, cache, task)
    en = stack.bundle.task_language
    res: dict = {"task": task, "labels": LABELS, "lambdas": lambdas,
                 "english": {s: _public(v) for s, v in ev.scores(en, en).items()},
                 "premise": {}, "zero_shot": {}, "enhancement": {}}
    for c in stack.bundle.adapter_languages():
        if c == en or c not in ev.rows:
            continue
        own, eng = ev.scores(c, c)["test"], ev.scores(c, en)["test"]
        res["premise"][c] = {"own": own["micro"]["f1"], "en": eng["micro"]["f1"], "n_test": own["n"],
                             "own_minus_en": bootstrap_difference(np.array(own["counts"]),
                                                                  np.array(eng["counts"])),
                             "per_class_own": {k: v["f1"] for k, v in own["per_class"].items()},
                             "per_class_en": {k: v["f1"] for k, v in eng["per_class"].items()}}
        _log(f"premise {c}: own {own['micro']['f1']:.1f} vs en {eng['micro']['f1']:.1f}")
    stored: dict = {}
    for target, (a, b, group) in pairs.items():
        runs = {lam: ev.scores(target, a, b, lam) for lam in lambdas}
        curve = sweep_summary(target, a, b, lambdas, {x: runs[x]["dev"] for x in lambdas},
                              {x: runs[x]["test"] for x in lambdas})
        curve["counts"] = {s: [runs[x][s]["counts"] for x in lambdas] for s in ("dev", "test")}
        res[group][target] = curve
        stored[target] = _stored_predictions(ev, target, a, b, lambdas)
        bs = curve["bootstrap"]["gain_vs_better"]
        _log(f"{target}: A={a} {curve['a_alone']:.1f} B={b} {curve['b_alone']:.1f} merged@"
             f"{curve['best_lam']:g} {curve['test_at_best']:.1f} (vs better {format_gain(bs)} "
             f"(95 %), n={curve['n_test']})")
    return res, stored


def _stored_predictions(ev: Evaluator, target: str, a: str, b: str, lambdas,
                        split: str = "test") -> dict:
    """The ``split``'s sentences with A's and B's tags, and the merge's tags where they differ
    from A's or B's (what ``ner.flip_counts`` reads for test and ``ner.flips`` for dev)."""
    rows = ev.rows[target]
    idx = [i for i, r in enumerate(rows) if r["split"] == split]
    pa, pb = ev.pred(target, a), ev.pred(target, b)
    merged = {}
    for lam in lambdas:
        pm = ev.pred(target, a, b, lam)
        merged[f"{lam:g}"] = {str(j): pm[i] for j, i in enumerate(idx) if pm[i] != pa[i] or pm[i] != pb[i]}
    return {"a": a, "b": b, "split": split,
            "items": [{k: rows[i][k] for k in ("key", "words", "tags")} for i in idx],
            "A": [pa[i] for i in idx], "B": [pb[i] for i in idx], "merged": merged}


def predictions_path(dest: Path, split: str = "test", task: str = TASK) -> Path:
    """``results/<task>_predictions.json.gz`` (test: the numbers) or ``..._dev_predictions..``
    (dev: what the page shows); ``ner._stored`` reads them."""
    return Path(dest) / "results" / (f"{task}_predictions.json.gz" if split == "test"
                                     else f"{task}_{split}_predictions.json.gz")


def store_page_predictions(stack, pairs: dict[str, tuple[str, str, str]], lambdas: list[float],
                           cache: Path | None, dest: Path, per_target: int | None = PAGE_DEV_ITEMS,
                           task: str = TASK) -> dict:
    """The page's dev items: A's, B's and the merge's taggings on the λ grid of each target's
    dev sentences (the first ``per_target``; None: all), in the test file's compact form.
    Resumable: each (target, adapter or merge) run is cached in ``cache``."""
    ev = Evaluator(stack, cache, task, split="dev", limit=per_target)
    stored = {}
    for target, (a, b, _) in pairs.items():
        t = time.time()
        stored[target] = {**_stored_predictions(ev, target, a, b, lambdas, "dev"),
                          "subset": ("all" if per_target is None else f"the first {per_target}")
                                    + f" dev sentences of eval/{task}/{stack.bundle.text_of(target)}"
                                    ".jsonl.gz"}
        _log(f"dev predictions {target}: {len(ev.rows[target])} sentences in {time.time() - t:.0f} s")
    path = predictions_path(dest, "dev", task)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(stored, f, ensure_ascii=False)
    tmp.rename(path)
    return {"targets": len(stored), "per_target": per_target}


def shipped_pairs(results: dict) -> dict[str, tuple[str, str, str]]:
    """target -> (A, B, group) of the curves a ``results/<task>.json`` holds."""
    return {t: (c["a"], c["b"], g) for g in ("zero_shot", "enhancement") for t, c in results.get(g, {}).items()}


def _training_from_ckpt(path: Path) -> dict:
    """The training run's step count, time and loss from its checkpoint (when another process
    rewrote stages.json without this stage's entry)."""
    if not path.exists():
        return {}
    state = torch.load(path, map_location="cpu", weights_only=True)
    tail = state["losses"][-max(1, len(state["losses"]) // 10):]
    return {"steps": state["step"], "train_seconds": round(state["seconds"], 1),
            "first_loss": state["losses"][0], "final_loss": round(sum(tail) / len(tail), 4)}


def stage_eval(build: Build, dest: Path) -> dict:
    """Evaluate the packaged tagging task: ``dest/results/<task>.json`` (scores, per-sentence
    counts, bootstrap intervals) and ``<task>_predictions.json.gz`` (for the flips view)."""
    from ..model import LanguageStack

    items, stats = items_for(build)
    write_eval_sets(build, dest, items)  # cheap; the cap may have changed since training
    stack = LanguageStack(dest, device="cpu")
    adapters = set(stack.bundle.adapter_languages())
    pairs = {t: ("en", RELATED[t], "zero_shot") for t in build.targets if RELATED.get(t) in adapters}
    pairs |= {c: (c, RELATED[c], "enhancement") for c in ENHANCEMENT
              if c in adapters and RELATED.get(c) in adapters}
    lambdas = [0.0, 0.5, 1.0] if build.quick else LAMBDAS
    t0 = time.time()
    res, stored = evaluate_all(stack, pairs, lambdas, build.work / "tagging" / "preds")
    res["data"] = stats
    res["per_split_cap"] = 8 if build.smoke else EVAL_PER_SPLIT
    res["training"] = build.stages.get("tagging") or _training_from_ckpt(build.work / "tagging" / "ckpt.pt")
    res["eval_seconds"] = round(time.time() - t0, 1)
    out = dest / "results"
    out.mkdir(exist_ok=True)
    (out / f"{TASK}.json").write_text(json.dumps(res, ensure_ascii=False) + "\n", encoding="utf-8")
    with gzip.open(predictions_path(dest, "test"), "wt", encoding="utf-8") as f:
        json.dump(stored, f, ensure_ascii=False)
    store_page_predictions(stack, pairs, lambdas, build.work / "tagging" / "preds_dev", dest,
                           per_target=PAGE_DEV_ITEMS)
    return {"eval_seconds": res["eval_seconds"], "targets": len(pairs)}


def _own_paths(dest: Path) -> list[Path]:
    return [dest / "tasks" / TASK, dest / "eval" / TASK, dest / "results" / f"{TASK}.json",
            predictions_path(dest, "test"), predictions_path(dest, "dev")]


def stash(dest: Path, work: Path) -> Path | None:
    """Copy this task's files out of a packaged bundle that is about to be replaced."""
    import shutil

    have = [p for p in _own_paths(dest) if p.exists()]
    if not have:
        return None
    keep = work / "tagging" / "stash"
    if keep.exists():
        shutil.rmtree(keep)
    for p in have:
        target = keep / p.relative_to(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, target)
    return keep


def unstash(keep: Path | None, dest: Path) -> None:
    """Put the stashed files back into the new package and its manifest entry with them."""
    import shutil

    if keep is None:
        return
    for p in sorted(keep.rglob("*")):
        target = dest / p.relative_to(keep)
        if p.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
    if (dest / "tasks" / TASK / "adapter_config.json").exists():
        add_to_manifest(dest)


# --- the README tables -------------------------------------------------------------------------


def _ci(g: dict) -> str:
    return format_gain(g)


def report(results: dict) -> str:
    """Markdown tables of a ``results/<task>.json``: span counts, English F1, the premise and the
    merges (``python -m langarith.bundle.tagging --report BUNDLE``)."""
    lines = ["| language | split | sentences | UI | CODE | INPUT | KEY |", "|---|---|---:|---:|---:|---:|---:|"]
    for lang, row in results["data"]["languages"].items():  # train (English), dev + test
        for name, splits in (("train", ["train"]), ("dev + test", ["dev", "test"])):
            have = [row[s] for s in splits if s in row]
            if have:
                tot = {k: sum(c[k] for c in have) for k in ["sentences", *TYPES]}
                lines.append(f"| {lang} | {name} | {tot['sentences']:,} | " + " | ".join(
                    f"{tot[t]:,}" for t in TYPES) + " |")
    en = results["english"]["test"]
    lines += ["", f"English test (n = {en['n']}): micro F1 {en['micro']['f1']:.1f} (P {en['micro']['precision']:.1f}, "
              f"R {en['micro']['recall']:.1f}); " + ", ".join(
                  f"{k} {v['f1']:.1f} (support {v['support']})" for k, v in en["per_class"].items()), "",
              "| language | own adapter | English adapter | own − English [95 % CI] | n test |",
              "|---|---:|---:|---:|---:|"]
    for lang, p in results["premise"].items():
        lines.append(f"| {lang} | {p['own']:.1f} | {p['en']:.1f} | {_ci(p['own_minus_en'])} | {p['n_test']} |")
    lines += ["", "| target | A | B | A alone | B alone | merge (λ chosen on dev) | merge − better [95 % CI] "
              "| merge − A [95 % CI] | n dev / test |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for group in ("zero_shot", "enhancement"):
        for t, c in results[group].items():
            lines.append(f"| {t} ({group.replace('_', '-')}) | {c['a']} | {c['b']} | {c['a_alone']:.1f} | "
                         f"{c['b_alone']:.1f} | {c['test_at_best']:.1f} (λ = {c['best_lam']:g}) | "
                         f"{_ci(c['gain_vs_better'])} | {_ci(c['gain_vs_a'])} | {c['n_dev']} / {c['n_test']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Print the span-tagging task's README tables, or "
                                "store the page's dev predictions of a built bundle.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--report", metavar="BUNDLE", help="bundle folder with results/<task>.json")
    g.add_argument("--dev-predictions", metavar="BUNDLE",
                   help="write BUNDLE/results/<task>_dev_predictions.json.gz for the curves in "
                        "results/<task>.json (the tagging_eval stage does it too)")
    p.add_argument("--cache", help="folder for resumable per-run predictions (with --dev-predictions)")
    p.add_argument("--per-target", type=int, default=PAGE_DEV_ITEMS,
                   help=f"dev sentences per target (default {PAGE_DEV_ITEMS})")
    a = p.parse_args(argv)
    path = Path(a.report or a.dev_predictions) / "results" / f"{TASK}.json"
    if not path.is_file():
        raise SystemExit(f"error: no {path}: run the build's tagging_eval stage first")
    res = json.loads(path.read_text(encoding="utf-8"))
    if a.report:
        print(report(res), end="")
        return 0
    if a.per_target is not None and a.per_target < 1:
        raise SystemExit(f"error: --per-target must be at least 1, not {a.per_target}")
    from ..model import LanguageStack

    stack = LanguageStack(a.dev_predictions, device="cpu")
    print(store_page_predictions(stack, shipped_pairs(res), res["lambdas"],
                                 Path(a.cache) if a.cache else None, Path(a.dev_predictions),
                                 per_target=a.per_target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
