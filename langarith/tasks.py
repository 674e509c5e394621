"""Layer 3: task predictions of a stack — baseline, source and merged side by side — and evaluation.

Everything here calls ``LanguageStack.use`` so that merge + forward happen under the stack's lock.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from .arithmetic import check_lambda
from .model import InputError, LanguageStack

MAX_CHARS = 2000  # longer text is cut (with a notice): the encoder reads at most max_length tokens
MAX_TOKENS = 128
MASK_WORDS = 32  # mask_a_word picks among this many leading words


def clean_text(text: str | None) -> tuple[str, str | None]:
    """The text to use and an optional notice; empty text is refused."""
    text = (text or "").strip()
    if not text:
        raise InputError("the text is empty: type a sentence or pick an example")
    if len(text) > MAX_CHARS:
        return text[:MAX_CHARS], f"text cut from {len(text):,} to {MAX_CHARS:,} characters"
    return text, None


def baseline_language(stack: LanguageStack, target: str) -> str:
    """Adapter A: the target's own (enhancement) or the task's training language (zero-shot)."""
    lang = stack.bundle.language(target)
    return target if lang.has_adapter else stack.bundle.task_language


def suggested_source(stack: LanguageStack, target: str) -> str:
    """Adapter B: the manifest's related language for the target, else another adapter language."""
    lang = stack.bundle.language(target)
    a = baseline_language(stack, target)
    if lang.source and lang.source != a and stack.bundle.languages.get(lang.source, lang).has_adapter:
        return lang.source
    return next(c for c in stack.bundle.adapter_languages() if c != a)


def merge_pair(stack: LanguageStack, target: str, source: str | None) -> tuple[str, str]:
    """Adapters A (baseline) and B (source, default: the suggested one) for a target, checked:
    they differ, both exist, and their configs merge parameter by parameter."""
    a = baseline_language(stack, target)
    b = source or suggested_source(stack, target)
    if a == b:
        raise InputError(f"source and baseline are both {a}: pick another source language")
    stack.check_mergeable([a, b])
    return a, b


def formula(weights) -> str:
    """``merged = 0.70·es + 0.30·pt``; a ``Merge`` recipe also names its method."""
    method = getattr(weights, "method", "linear")
    items = weights.weights if hasattr(weights, "weights") else weights.items()
    body = " + ".join(f"{w:.2f}·{c}" for c, w in items)
    if method == "linear":
        return f"merged = {body}"
    if method == "task_arithmetic":
        return f"merged = init + Σ wᵢ·(θᵢ − init), {body}"
    extra = f", density {weights.density}" if weights.density is not None else ""
    return f"merged = {method.upper()}({body}{extra})"


# --- forward passes ----------------------------------------------------------------------------


def _encode(stack: LanguageStack, texts: list[str]):
    enc = stack.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                          max_length=MAX_TOKENS)
    return {k: v.to(stack.device) for k, v in enc.items()}


@torch.inference_mode()
def classify(stack: LanguageStack, texts: list[str], adapter, task: str | None = None,
             *, hidden_states: bool = False):
    """Label probabilities [n, labels] for ``Stack(adapter, task)``; optionally the hidden states."""
    task = stack.bundle.task(task).name
    enc = _encode(stack, texts)
    with stack.use(adapter, task) as model:
        out = model(**enc, head=task, output_hidden_states=hidden_states)
    probs = out.logits.float().softmax(-1).cpu()
    if not hidden_states:
        return probs
    mask = enc["attention_mask"].bool().cpu()
    return probs, [h.float().cpu() for h in out.hidden_states], mask


def masked_logits(model, enc: dict, positions: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits at ``positions`` [M, 2] only, through the active language adapter.

    The head is applied by hand in the order of ``adapters``' masked-LM head (its layers, then
    the invertible adapter in reverse, then the decoder): the library computes logits for every
    token, and the decoder (vocabulary × hidden) dominates the cost of a short text."""
    hidden = model.base_model(**enc)[0]
    h = hidden[positions[:, 0], positions[:, 1]]
    head = model.heads["mlm"]
    for i in range(len(head) - 1):
        h = head[i](h)
    inv = model.base_model.get_invertible_adapter()
    if inv is not None:
        h = inv(h.unsqueeze(0), rev=True).squeeze(0)  # NICE splits the last dim of [B, T, H]
    return head[len(head) - 1](h)


def fill_mask(stack: LanguageStack, text: str, adapter, k: int = 5) -> list[tuple[str, float]]:
    """Top-k tokens for the first mask in ``text``, from the MLM head over the language adapter
    alone (this runs the invertible adapter forward at the input and in reverse before the head).
    A single language's answer does not depend on λ and is cached."""
    if isinstance(adapter, str):
        return list(_fill_mask_cached(stack, text, adapter, k))
    return _fill_mask(stack, text, adapter, k)


@lru_cache(maxsize=512)
def _fill_mask_cached(stack, text, adapter, k):
    return tuple(_fill_mask(stack, text, adapter, k))


@torch.inference_mode()
def _fill_mask(stack: LanguageStack, text: str, adapter, k: int) -> list[tuple[str, float]]:
    mask = stack.tokenizer.mask_token
    if mask not in text:
        raise InputError(f"the fill-mask text needs a {mask} token")
    enc = _encode(stack, [text])
    pos = (enc["input_ids"][0] == stack.tokenizer.mask_token_id).nonzero()
    if len(pos) == 0:
        raise InputError(f"the {mask} token was cut off: put it earlier in the text")
    first = torch.tensor([[0, int(pos[0, 0])]], device=stack.device)
    with stack.use(adapter, None) as model:
        logits = masked_logits(model, enc, first)[0]
    probs = logits.float().softmax(-1)
    top = probs.topk(k)
    tokens = stack.tokenizer.convert_ids_to_tokens(top.indices.tolist())
    return [(t.replace("▁", "") or t, float(p)) for t, p in zip(tokens, top.values)]


def mask_a_word(text: str, mask: str = "<mask>") -> str:
    """Replace the longest word by the mask token: a default fill-mask probe for any sentence."""
    if mask in text:
        return text
    words = text.split()
    if not words:
        return text
    # Among the first words only: the probe must survive the cut to MAX_CHARS / MAX_TOKENS.
    i = max(range(min(len(words), MASK_WORDS)), key=lambda j: len(words[j].strip(".,;:!?")))
    core = words[i].strip(".,;:!?")
    words[i] = words[i].replace(core, mask, 1) if core else mask
    return " ".join(words)


# --- the side-by-side comparison ---------------------------------------------------------------


@dataclass
class Comparison:
    target: str
    a: str
    b: str
    lam: float
    formula: str
    labels: list[str]
    probs: dict[str, list[float]]  # "merged", "A", "B" -> probabilities over labels
    fill_mask: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    hidden_shift: list[float] = field(default_factory=list)  # per layer, merged vs A
    notice: str | None = None

    def prediction(self, which: str) -> str:
        p = self.probs[which]
        return self.labels[max(range(len(p)), key=p.__getitem__)]

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["predictions"] = {w: self.prediction(w) for w in self.probs}
        return d


@torch.inference_mode()
def hidden_shift(stack: LanguageStack, text: str, a: str, merged) -> list[float]:
    """Per-layer change of the encoder's hidden states, merged vs A alone, language adapters only
    (for profiles without a classification task)."""
    enc = _encode(stack, [text])
    hs = {}
    for key, adapter in (("A", a), ("M", merged)):
        with stack.use(adapter, None) as model:
            hs[key] = [h.float().cpu() for h in model.base_model(**enc, output_hidden_states=True).hidden_states]
    return _hidden_shift(hs["M"], hs["A"], enc["attention_mask"].bool().cpu()[0:1])


def _hidden_shift(h_merged, h_base, mask) -> list[float]:
    """Per layer: mean over tokens of ‖h_merged − h_A‖ / ‖h_A‖ (moves non-linearly with λ)."""
    out = []
    for hm, ha in zip(h_merged, h_base):
        rel = (hm - ha).norm(dim=-1) / ha.norm(dim=-1).clamp_min(1e-12)
        out.append(float(rel[mask].mean()))
    return out


@lru_cache(maxsize=256)
def _single(stack: LanguageStack, text: str, adapter: str, task: str):
    """Predictions of one unmerged adapter: they do not depend on λ, so cache them."""
    probs, hidden, mask = classify(stack, [text], adapter, task, hidden_states=True)
    return probs[0].tolist(), hidden, mask


def compare(stack: LanguageStack, text: str, target: str, source: str | None, lam: float,
            task: str | None = None, mask_text: str | None = None, merge=None) -> Comparison:
    """Merged stack vs adapter A alone vs adapter B alone, for one text.

    ``merge`` (a ``model.Merge``) replaces the default linear λ·A + (1−λ)·B by another recipe
    (N-way, task arithmetic, TIES, DARE); A and B stay the baselines shown beside it."""
    text, notice = clean_text(text)
    task_ = stack.bundle.task(task)
    if merge is None:
        lam = check_lambda(lam)
    a, b = merge_pair(stack, target, source)
    if merge is None:
        weights = {a: lam, b: 1.0 - lam}
    else:
        weights = merge
        lam = dict(merge.weights).get(a, float("nan"))
    pa, ha, mask = _single(stack, text, a, task_.name)
    pb, _, _ = _single(stack, text, b, task_.name)
    pm, hm, _ = classify(stack, [text], weights, task_.name, hidden_states=True)
    cmp = Comparison(target=target, a=a, b=b, lam=lam, formula=formula(weights),
                     labels=list(task_.labels), probs={"merged": pm[0].tolist(), "A": pa, "B": pb},
                     hidden_shift=_hidden_shift(hm, ha, mask[0:1]), notice=notice)
    if mask_text is not None:
        mtext, _ = clean_text(mask_text)
        cmp.fill_mask = {"merged": fill_mask(stack, mtext, weights),
                         "A": fill_mask(stack, mtext, a), "B": fill_mask(stack, mtext, b)}
    return cmp


# --- evaluation ---------------------------------------------------------------------------------


def load_eval(stack: LanguageStack, lang: str, task: str | None = None,
              split: str | None = None) -> list[dict]:
    """The bundle's labelled eval items for one language ({"text", "label", "split"})."""
    t = stack.bundle.task(task)
    if not t.eval or t.kind != "classification":
        raise InputError(f"{stack.bundle.name} has no labelled {t.name} eval sets to sweep")
    path = stack.bundle.path(t.eval) / f"{lang}.jsonl"
    if not path.is_file():
        raise InputError(f"no {t.name} eval set for {lang}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if split is None or r["split"] == split]


def metrics(gold: list[int], pred: list[int], n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (classes absent from both gold and predictions are skipped)."""
    acc = sum(g == p for g, p in zip(gold, pred)) / max(len(gold), 1)
    f1s = []
    for c in range(n_labels):
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": acc, "macro_f1": sum(f1s) / len(f1s) if f1s else math.nan, "n": len(gold)}


def evaluate(stack: LanguageStack, rows: list[dict], adapter, task: str | None = None,
             batch_size: int = 32) -> dict[str, float]:
    """Accuracy and macro-F1 of ``Stack(adapter, task)`` (adapter: a code or merge weights)."""
    t = stack.bundle.task(task)
    index = {lab: i for i, lab in enumerate(t.labels)}
    # Length-sorted batches pad less; the order does not change the metrics.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["text"]))
    pred = [0] * len(rows)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        probs = classify(stack, [rows[i]["text"] for i in idx], adapter, t.name)
        for i, p in zip(idx, probs.argmax(-1).tolist()):
            pred[i] = p
    return metrics([index[r["label"]] for r in rows], pred, len(t.labels))


# --- λ sweep ------------------------------------------------------------------------------------

DEFAULT_LAMBDAS = tuple(round(i / 10, 1) for i in range(11))


def sweep(stack: LanguageStack, target: str, source: str | None = None,
          lambdas=DEFAULT_LAMBDAS, task: str | None = None, progress=None) -> dict:
    """Accuracy/macro-F1 of λ·A + (1−λ)·B over a λ grid on the target's eval set (dev and test).

    The best λ is chosen on dev (ties: closer to 0.5) and reported on test, as in the paper.
    ``progress(done, total, message)`` is called after each point. Results are cached per
    (target, source, grid, task): the stack's weights never change.
    """
    lambdas = tuple(check_lambda(x) for x in lambdas)
    if not lambdas:
        raise InputError("the λ grid is empty")
    a, b = merge_pair(stack, target, source)
    return _sweep_cached(stack, target, a, b, lambdas, stack.bundle.task(task).name, progress)


_SWEEPS: dict = {}


def _sweep_cached(stack, target, a, b, lambdas, task, progress) -> dict:
    key = (id(stack), target, a, b, lambdas, task)
    if key in _SWEEPS:
        return _SWEEPS[key]
    data = {s: load_eval(stack, target, task, s) for s in ("dev", "test")}
    if not data["dev"] or not data["test"]:
        raise InputError(f"the {target} eval set needs dev and test items")
    points = []
    for i, lam in enumerate(lambdas):
        w = {a: lam, b: 1.0 - lam}
        points.append({"lam": lam, **{s: evaluate(stack, rows, w, task) for s, rows in data.items()}})
        if progress:
            progress(i + 1, len(lambdas), f"λ = {lam:.2f}")
    baselines = {}
    for name, code in (("A", a), ("B", b)):
        ends = [p for p in points if p["lam"] == (1.0 if name == "A" else 0.0)]
        baselines[name] = {"language": code, **({"dev": ends[0]["dev"], "test": ends[0]["test"]} if ends
                           else {s: evaluate(stack, rows, code, task) for s, rows in data.items()})}
    best = max(points, key=lambda p: (p["dev"]["accuracy"], -abs(p["lam"] - 0.5)))
    out = {"target": target, "source": b, "a": a, "task": task, "points": points,
           "baselines": baselines, "best_lam": best["lam"], "test_at_best": best["test"],
           "n_dev": len(data["dev"]), "n_test": len(data["test"])}
    _SWEEPS[key] = out
    return out


@torch.inference_mode()
def mlm_loss(stack: LanguageStack, texts: list[str], adapter) -> float:
    """Mean masked-LM loss of ``texts`` under a language adapter, masking every 7th token in turn
    (deterministic, so scores of different adapters are comparable)."""
    key = (id(stack), tuple(texts), adapter if isinstance(adapter, str) else repr(adapter))
    if key in _MLM_LOSS:
        return _MLM_LOSS[key]
    enc = _encode(stack, texts)
    ids, att = enc["input_ids"], enc["attention_mask"]
    special = torch.tensor(stack.tokenizer.all_special_ids, device=ids.device)
    maskable = att.bool() & ~torch.isin(ids, special)
    total, n = 0.0, 0
    with stack.use(adapter, None) as model:
        for offset in range(7):
            pos = maskable & (torch.arange(ids.shape[1], device=ids.device) % 7 == offset)
            if not pos.any():
                continue
            inputs = ids.masked_fill(pos, stack.tokenizer.mask_token_id)
            logits = model(input_ids=inputs, attention_mask=att, head="mlm").logits
            loss = torch.nn.functional.cross_entropy(logits[pos].float(), ids[pos], reduction="sum")
            total += float(loss)
            n += int(pos.sum())
    _MLM_LOSS[key] = total / max(n, 1)
    return _MLM_LOSS[key]


_MLM_LOSS: dict = {}
