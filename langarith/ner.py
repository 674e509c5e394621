"""Layer 3 (tagging tasks): token-level NER for baseline, source and merged, with changed spans.

Works on any task of kind ``"tagging"`` (the ``mbert-ner`` profile's WikiANN adapter). A word's
label is its first sub-token's (the usual WikiANN evaluation); entities are decoded from BIO tags.
``compare_ner`` returns, per side, the words with labels and the entity spans, and marks the spans
the merge added or removed relative to the baseline A.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .arithmetic import check_lambda
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

    def highlighted(self, which: str = "merged") -> list[tuple[str, str | None]]:
        """``gr.HighlightedText`` segments of the text: entity type, with ``" (changed)"`` on the
        merged side for spans the merge added and on A's side for spans it removed."""
        changed = {(s["start"], s["end"], s["type"]) for s in
                   (self.added if which == "merged" else self.removed if which == "A" else [])}
        segs, pos = [], 0
        for s in self.spans[which]:
            if s["start"] > pos:
                segs.append((self.text[pos:s["start"]], None))
            label = s["type"] + (" (changed)" if (s["start"], s["end"], s["type"]) in changed else "")
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
    weights = {a: lam, b: 1.0 - lam}
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
    return NerComparison(text=text, target=target, a=a, b=b, lam=lam, formula=formula(weights),
                         words=words, spans=spans,
                         added=[s for s in spans["merged"] if key(s) not in in_a],
                         removed=[s for s in spans["A"] if key(s) not in in_m], notice=notice)
