"""Layer 3 (tagging tasks): token-level NER for baseline, source and merged, with changed spans.

Works on any task of kind ``"tagging"`` (the ``mbert-ner`` profile's WikiANN adapter). A word's
label is its first sub-token's (the usual WikiANN evaluation); entities are decoded from BIO tags.
``compare_ner`` returns, per side, the words with labels and the entity spans, and marks the spans
the merge added or removed relative to the baseline A.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import stats, tasks
from .arithmetic import check_lambda, pair_weights
from .loading import InputError
from .model import LanguageStack
from .tasks import MAX_TOKENS, clean_text, formula, merge_pair


def labels_of(stack: LanguageStack, task: str) -> list[str]:
    """Label names by id, from the loaded head's config (the hub head calls outside ``"0"``)."""
    head = stack.model.heads[task]
    label2id = (getattr(head, "config", None) or {}).get("label2id")
    if label2id:
        names = [None] * len(label2id)
        for name, i in label2id.items():
            names[i] = "O" if name in ("0", "O") else name
        if None not in names:
            return names
    return list(stack.bundle.task(task).labels)


@torch.inference_mode()
def tag(stack: LanguageStack, text: str, adapter, task: str | None = None) -> list[dict]:
    """Words of ``text`` with their label and probability under ``Stack(adapter, task)``."""
    t = stack.bundle.task_of_kind("tagging", task)
    enc = stack.tokenizer([text], return_tensors="pt", truncation=True, max_length=MAX_TOKENS,
                          return_offsets_mapping=True)
    word_ids = enc.word_ids(0)
    offsets = enc.pop("offset_mapping")[0].tolist()
    enc = {k: v.to(stack.device) for k, v in enc.items()}
    with stack.use(adapter, t.name) as model:
        logits = model(**enc, head=t.name).logits[0]
    probs = logits.float().softmax(-1).cpu()
    names = labels_of(stack, t.name)
    words: dict[int, dict] = {}
    for pos, w in enumerate(word_ids):
        if w is None:
            continue
        s, e = offsets[pos]
        while s < e and text[s].isspace():  # sentencepiece offsets include the word's leading space
            s += 1
        if w not in words:  # first sub-token decides the word's label
            p, i = probs[pos].max(-1)
            words[w] = {"start": s, "end": e, "label": names[int(i)], "score": float(p)}
        else:
            words[w]["end"] = e
    out = [words[w] for w in sorted(words)]
    for d in out:
        d["word"] = text[d["start"]:d["end"]]
    return out


def entity_spans(words: list[dict]) -> list[dict]:
    """BIO decoding: ``[{"start", "end", "type", "text"}]`` (an I- after O or another type opens)."""
    spans: list[dict] = []
    cur = None
    for w in words:
        lab = w["label"]
        kind = lab[2:] if lab[:2] in ("B-", "I-") else None
        if kind and (lab.startswith("B-") or cur is None or cur["type"] != kind):
            cur = {"start": w["start"], "end": w["end"], "type": kind}
            spans.append(cur)
        elif kind:
            cur["end"] = w["end"]
        else:
            cur = None
    return spans


@dataclass
class NerComparison:
    text: str
    target: str
    a: str
    b: str
    lam: float
    formula: str
    words: dict[str, list[dict]]  # "A", "merged", "B" -> tagged words
    spans: dict[str, list[dict]] = field(default_factory=dict)
    added: list[dict] = field(default_factory=list)  # spans in merged, not in A
    removed: list[dict] = field(default_factory=list)  # spans in A, not in merged
    notice: str | None = None

    def highlighted(self, which: str = "merged", name=str) -> list[tuple[str, str | None]]:
        """``gr.HighlightedText`` segments of the text: entity type (as ``name`` spells it), with
        ``" (changed)"`` on the merged side for spans the merge added and on A's side for spans it
        removed."""
        changed = {(s["start"], s["end"], s["type"]) for s in
                   (self.added if which == "merged" else self.removed if which == "A" else [])}
        segs, pos = [], 0
        for s in self.spans[which]:
            if s["start"] > pos:
                segs.append((self.text[pos:s["start"]], None))
            label = name(s["type"]) + (" (changed)" if (s["start"], s["end"], s["type"]) in changed else "")
            segs.append((self.text[s["start"]:s["end"]], label))
            pos = s["end"]
        if pos < len(self.text):
            segs.append((self.text[pos:], None))
        return segs

    def to_json(self) -> dict:
        return dict(self.__dict__)


def compare_ner(stack: LanguageStack, text: str, target: str, source: str | None, lam: float,
                task: str | None = None) -> NerComparison:
    """Merged stack vs adapter A alone vs adapter B alone, token by token, for one text."""
    lam = check_lambda(lam)
    text, notice = clean_text(text)
    t = stack.bundle.task_of_kind("tagging", task)
    a, b = merge_pair(stack, target, source)
    weights = pair_weights(a, b, lam)
    words = {"A": tag(stack, text, a, t.name), "merged": tag(stack, text, weights, t.name),
             "B": tag(stack, text, b, t.name)}
    spans = {k: entity_spans(v) for k, v in words.items()}
    for k, ss in spans.items():
        for s in ss:
            s["text"] = text[s["start"]:s["end"]]
    key = lambda s: (s["start"], s["end"], s["type"])  # noqa: E731
    in_a = {key(s) for s in spans["A"]}
    in_m = {key(s) for s in spans["merged"]}
    for w_a, w_m in zip(words["A"], words["merged"]):
        w_m["changed"] = w_a["label"] != w_m["label"]
    if not any(spans.values()):  # say so, rather than show three blank rows
        none = "no spans tagged by A, the merge or B"
        notice = f"{notice}; {none}" if notice else none
    return NerComparison(text=text, target=target, a=a, b=b, lam=lam, formula=formula(weights),
                         words=words, spans=spans,
                         added=[s for s in spans["merged"] if key(s) not in in_a],
                         removed=[s for s in spans["A"] if key(s) not in in_m], notice=notice)


# --- span metrics, eval sets and λ sweeps of a bundle's tagging task ----------------------------
# Entity-level scores follow seqeval's default (conlleval) decoding, the one ``entity_spans`` uses:
# an I- after O or after another type opens a span.


def sentence_counts(gold: list[str], pred: list[str]) -> tuple[int, int, int]:
    """(tp, fp, fn) of one sentence's entity spans: summed over sentences, they give seqeval's
    micro F1 (``stats.metric``), so the bootstrap can resample sentences."""
    from seqeval.metrics.sequence_labeling import get_entities

    if len(gold) != len(pred):
        raise InputError(f"gold has {len(gold)} tags and the prediction {len(pred)}")
    g, p = set(get_entities(list(gold))), set(get_entities(list(pred)))
    return len(g & p), len(p - g), len(g - p)


def span_f1(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval's entity-level precision, recall and F1, micro-averaged and per class (×100)."""
    from seqeval.metrics import classification_report

    if not gold:
        raise InputError("no sentences to score")
    rep = classification_report(gold, pred, output_dict=True, zero_division=0)
    pick = lambda r: {"precision": 100 * float(r["precision"]), "recall": 100 * float(r["recall"]),  # noqa: E731
                      "f1": 100 * float(r["f1-score"]), "support": int(r["support"])}
    return {"micro": pick(rep["micro avg"]), "n": len(gold),
            "per_class": {k: pick(v) for k, v in rep.items() if not k.endswith(" avg")}}


def tag_words(stack: LanguageStack, sentences: list[list[str]], adapter, task: str | None = None,
              batch_size: int = 32, max_tokens: int = MAX_TOKENS) -> list[list[str]]:
    """BIO labels per word for pre-split sentences (first sub-token decides; words cut off by the
    token limit get ``O``). Length-sorted batches; ``adapter``: a code or merge weights."""
    return tag_words_counted(stack, sentences, adapter, task, batch_size, max_tokens)[0]


@torch.inference_mode()
def _first_subtoken_logits(stack: LanguageStack, sentences: list[list[str]], adapter, task: str,
                           batch_size: int, max_tokens: int):
    """For each pre-split sentence (length-sorted batches): its index and the tag logits of each
    word's first sub-token ``{word: logits}`` (words cut off by the token limit are absent)."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        enc = stack.tokenizer([sentences[i] for i in idx], is_split_into_words=True,
                              truncation=True, max_length=max_tokens, padding=True,
                              return_tensors="pt")
        word_ids = [enc.word_ids(j) for j in range(len(idx))]
        with stack.use(adapter, task) as model:
            logits = model(**{k: v.to(stack.device) for k, v in enc.items()}, head=task).logits.float().cpu()
        for j, i in enumerate(idx):
            first, prev = {}, None
            for pos, w in enumerate(word_ids[j]):
                if w is not None and w != prev:
                    first[w] = logits[j, pos]
                prev = w
            yield i, first


@torch.inference_mode()
def tag_words_counted(stack: LanguageStack, sentences: list[list[str]], adapter,
                      task: str | None = None, batch_size: int = 32,
                      max_tokens: int = MAX_TOKENS) -> tuple[list[list[str]], int]:
    """``tag_words``, and how many sentences were cut at ``max_tokens``."""
    t = stack.bundle.task_of_kind("tagging", task)
    names = labels_of(stack, t.name)
    out: list[list[str]] = [[] for _ in sentences]
    cut = 0
    for i, first in _first_subtoken_logits(stack, sentences, adapter, t.name, batch_size, max_tokens):
        tags = ["O"] * len(sentences[i])
        for w, logit in first.items():
            tags[w] = names[int(logit.argmax())]
        out[i] = tags
        cut += len(first) < len(tags)
    return out, cut


@torch.inference_mode()
def word_entropies(stack: LanguageStack, sentences: list[list[str]], adapter, task: str | None = None,
                   batch_size: int = 32, max_tokens: int = MAX_TOKENS) -> list[tuple[float, int]]:
    """Per sentence: the summed entropy (nats) of the tag distribution of each word (its first
    sub-token, as ``tag_words`` reads it) and the number of words. Reads no label."""
    t = stack.bundle.task_of_kind("tagging", task)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(sentences)
    for i, first in _first_subtoken_logits(stack, sentences, adapter, t.name, batch_size, max_tokens):
        probs = torch.stack(list(first.values())).softmax(-1).numpy() if first else np.zeros((0, 1))
        out[i] = (float(stats.entropy(probs).sum()), len(first))
    return out


def load_tagging_eval(stack: LanguageStack, lang: str, task: str | None = None,
                      split: str | None = None) -> list[dict]:
    """The bundle's tagging eval items of a language: ``{"key", "words", "tags", "split", ...}``."""
    import gzip
    import json

    t = stack.bundle.task_of_kind("tagging", task)
    if not t.eval:
        raise InputError(f"{stack.bundle.name} has no eval sets for {t.name}")
    path = stack.bundle.path(t.eval) / f"{stack.bundle.text_of(lang)}.jsonl.gz"
    if not path.is_file():
        raise InputError(f"no {t.name} eval set for {lang}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(x) for x in f if x.strip()]
    return [r for r in rows if split is None or r["split"] == split]


def evaluate_tagging(stack: LanguageStack, rows: list[dict], adapter, task: str | None = None) -> dict:
    """seqeval scores plus the per-sentence ``counts`` [[tp, fp, fn], ...] of ``Stack(adapter, task)``."""
    pred = tag_words(stack, [r["words"] for r in rows], adapter, task)
    gold = [r["tags"] for r in rows]
    return {**span_f1(gold, pred), "counts": [list(sentence_counts(g, p)) for g, p in zip(gold, pred)],
            "pred": pred}


def results_path(stack: LanguageStack, task: str | None = None):
    """Where the build stores a tagging task's precomputed results: ``results/<task>.json``."""
    return stack.bundle.path("results") / f"{stack.bundle.task_of_kind('tagging', task).name}.json"


def precomputed(stack: LanguageStack, task: str | None = None) -> dict | None:
    """The build's results for the tagging task, or None when the bundle has none."""
    import json

    path = results_path(stack, task)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def shipped_sweep(stack: LanguageStack, target: str, a: str, b: str, task: str) -> dict | None:
    """The build's span-F1 curve of this pair (whatever its grid), or None."""
    pre = precomputed(stack, task) or {}
    for group in ("zero_shot", "enhancement", "low_resource"):
        c = pre.get(group, {}).get(target)
        if c and c["a"] == a and c["b"] == b:
            return c
    return None


def sweep_summary(target: str, a: str, b: str, lambdas, dev: dict, test: dict) -> dict:
    """A span-F1 λ sweep from its per-λ dev and test scores (each with per-sentence ``counts``), in
    the shape the topic task's sweep has, with the paired bootstrap's intervals over sentences."""
    import numpy as np

    from .stats import bootstrap_sweep

    boot = bootstrap_sweep(lambdas, np.array([dev[x]["counts"] for x in lambdas]),
                           np.array([test[x]["counts"] for x in lambdas]))
    points = [{"lam": x, "dev": {"f1": dev[x]["micro"]["f1"]}, "test": {"f1": test[x]["micro"]["f1"],
               "per_class": {k: v["f1"] for k, v in test[x]["per_class"].items()}}} for x in lambdas]
    ends = {"A": (a, lambdas.index(1.0)), "B": (b, lambdas.index(0.0))}
    return {"target": target, "source": b, "a": a, "b": b, "points": points,
            "baselines": {k: {"language": c, **{s: points[i][s] for s in ("dev", "test")}}
                          for k, (c, i) in ends.items()},
            "best_lam": boot["best_lam"], "test_at_best": boot["test_at_best"],
            "a_alone": boot["a"], "b_alone": boot["b"],
            **{g: boot[g] for g in ("gain_vs_a", "gain_vs_b", "gain_vs_better")},
            "bootstrap": boot, "n_dev": boot["n_dev"], "n_test": boot["n_test"]}


def tagging_sweep(stack: LanguageStack, target: str, source: str | None = None,
                  lambdas=tuple(round(i / 10, 1) for i in range(11)), task: str | None = None,
                  use_precomputed: bool = True, progress=None) -> dict:
    """Span F1 of λ·A + (1−λ)·B over a λ grid on the target's dev and test sentences; λ chosen on
    dev, reported on test, with the paired bootstrap's 95 % intervals (``stats.bootstrap_sweep``).

    The build's precomputed curve is returned when it covers the same pair and grid (a CPU sweep
    takes minutes); otherwise the sweep runs here. ``progress(done, total, message)`` per λ."""
    lambdas = tuple(sorted({round(check_lambda(x), 6) for x in lambdas}))
    if not lambdas or lambdas[0] != 0.0 or lambdas[-1] != 1.0:
        raise InputError("the λ grid needs 0 and 1 (B alone and A alone) for the baselines")
    t = stack.bundle.task_of_kind("tagging", task)
    a, b = merge_pair(stack, target, source)
    c = shipped_sweep(stack, target, a, b, t.name) if use_precomputed else None
    if c and [p["lam"] for p in c["points"]] == list(lambdas):
        return {**c, "precomputed": True}
    data = {s: load_tagging_eval(stack, target, t.name, s) for s in ("dev", "test")}
    if not data["dev"] or not data["test"]:
        raise InputError(f"the {target} eval set needs dev and test sentences")
    res: dict = {"dev": {}, "test": {}}
    for i, lam in enumerate(lambdas):
        w = a if lam == 1 else b if lam == 0 else pair_weights(a, b, lam)
        for s in res:
            res[s][lam] = evaluate_tagging(stack, data[s], w, t.name)
        if progress:
            progress(i + 1, len(lambdas), f"λ = {lam:.2f}")
    return {**sweep_summary(target, a, b, list(lambdas), res["dev"], res["test"]),
            "precomputed": False}


def _stored(stack: LanguageStack, target: str, task: str | None, split: str = "test") -> dict:
    """The build's stored taggings of a target's ``split`` sentences: test ones feed the numbers,
    dev ones the page (``<task>_predictions.json.gz`` / ``<task>_dev_predictions.json.gz``)."""
    import gzip
    import json

    name = stack.bundle.task_of_kind("tagging", task).name
    path = stack.bundle.path("results") / (f"{name}_predictions.json.gz" if split == "test"
                                           else f"{name}_{split}_predictions.json.gz")
    if not path.is_file():
        raise InputError(f"this bundle has no stored {split}-set tagging predictions (run the "
                         "tagging_eval stage)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        preds = json.load(f)
    if target not in preds:
        raise InputError(f"no stored {split}-set tagging predictions for {target}; have: "
                         f"{', '.join(sorted(preds))}")
    return preds[target]


def flip_counts(stack: LanguageStack, target: str, task: str | None = None,
                split: str = "test") -> list[dict]:
    """Per stored λ: how many ``split`` sentences the merge tags differently from A, and in how
    many of those its spans match the gold better (helped) or worse (hurt) than A's."""
    p = _stored(stack, target, task, split)
    out = []
    for key, changed in sorted(p["merged"].items(), key=lambda kv: float(kv[0])):
        helped = hurt = n = 0
        for i, tm in changed.items():
            ta, gold = p["A"][int(i)], p["items"][int(i)]["tags"]
            if tm == ta:
                continue
            n += 1
            d = _score(sentence_counts(gold, tm)) - _score(sentence_counts(gold, ta))
            helped, hurt = helped + (d > 0), hurt + (d < 0)
        out.append({"lam": float(key), "changed_vs_a": n, "helped": helped, "hurt": hurt,
                    "split": split, f"n_{split}": len(p["items"])})
    return out


def _score(c: tuple[int, int, int]) -> int:
    """A per-sentence F1-like score, 2·tp − fp − fn: higher is better, comparable across taggings."""
    return 2 * c[0] - c[1] - c[2]


def flips(stack: LanguageStack, target: str, lam: float, task: str | None = None,
          limit: int = 20, split: str = "dev") -> list[dict]:
    """Sentences of ``split`` (dev, what the page shows: never the test sentences its numbers
    are reported on) whose spans differ between A, the merge at ``lam`` and B, from the build's
    stored predictions: each with its words, gold tags, the three taggings and their (tp, fp, fn).
    Sorted by how much the merge beats A (most helped first)."""
    lam = check_lambda(lam)
    p = _stored(stack, target, task, split)
    key = f"{round(lam, 1):g}"
    if key not in p["merged"]:
        raise InputError(f"stored predictions are on the λ grid {', '.join(sorted(p['merged']))}")
    # a dev sentence whose text is also a test item's (under another key) stays off the page
    hide = tasks.test_texts(stack, target) if split != "test" else frozenset()
    out = []
    for i, row in enumerate(p["items"]):
        if " ".join(row["words"]) in hide:
            continue
        ta, tb = p["A"][i], p["B"][i]
        tm = p["merged"][key].get(str(i), ta if lam == 1 else tb if lam == 0 else None)
        if tm is None:  # the merge agreed with both A and B (stored only where it differs)
            continue
        if tm == ta and tm == tb:
            continue
        c = {k: sentence_counts(row["tags"], v) for k, v in (("A", ta), ("merged", tm), ("B", tb))}
        out.append({"key": row["key"], "split": split, "words": row["words"], "gold": row["tags"],
                    "tags": {"A": ta, "merged": tm, "B": tb}, "counts": c,
                    "merge_vs_a": _score(c["merged"]) - _score(c["A"])})
    out.sort(key=lambda d: -d["merge_vs_a"])
    return out[:limit]
