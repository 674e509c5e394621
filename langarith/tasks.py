"""Layer 3: task predictions of a stack — baseline, source and merged side by side — and evaluation.

Everything here calls ``LanguageStack.use`` so that merge + forward happen under the stack's lock.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field

import torch

from .arithmetic import check_lambda, merge_method, pair_weights
from .loading import InputError
from .model import LanguageStack

# --- the stack's memo: one bounded cache per stack, keyed by value -------------------------------

def clear_cache(stack: LanguageStack, kind: str | None = None) -> None:
    """Forget the stack's computed results (one kind, or all): a benchmark measures the
    computation, not the cache."""
    stack.memo.clear(kind)


def adapter_key(adapter) -> object:
    """A hashable key of an adapter argument by its value: a name, or the merge's repr."""
    return adapter if isinstance(adapter, str) else repr(adapter)


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
    return next(c for c in stack.bundle.source_languages(target) if c != a)


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
    method = merge_method(getattr(weights, "method", "linear"))
    if method.formula is None:  # a per-layer merge: its λ path over the layers
        return layer_formula(weights)
    items = weights.weights if hasattr(weights, "weights") else weights.items()
    body = " + ".join(f"{w:.2f}·{c}" for c, w in items)
    density = getattr(weights, "density", None)
    return method.formula.format(body=body, extra="" if density is None else f", density {density}")


def layer_formula(merge) -> str:
    """``merged = λₗ·en + (1−λₗ)·es, λₗ 0.20 → 0.50 → 0.80 over the layers, λ_inv 0.50``."""
    (a, lam), (b, _) = merge.weights
    anchors = merge.lam_layers if merge.lam_layers is not None else (lam,)
    lam_inv = lam if merge.lam_inv is None else merge.lam_inv
    path = " → ".join(f"{t:.2f}" for t in anchors)
    return f"merged = λₗ·{a} + (1−λₗ)·{b}, λₗ {path} over the layers, λ_inv {lam_inv:.2f}"


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


def masked_logits(model, enc: dict, positions: torch.Tensor, rows=None) -> torch.Tensor:
    """Vocabulary logits at ``positions`` [M, 2] only, through the active language adapter.

    The head is applied by hand in the order of ``adapters``' masked-LM head (its layers, then
    the invertible adapter in reverse, then the decoder): the library computes logits for every
    token, and the decoder (vocabulary × hidden) dominates the cost of a short text. ``rows``:
    the ``model.RowMix`` of a batch with one merge per row (``LanguageStack.use_rows``)."""
    hidden = model.base_model(**enc)[0]
    h = hidden[positions[:, 0], positions[:, 1]]
    head = model.heads["mlm"]
    for i in range(len(head) - 1):
        h = head[i](h)
    inv = model.base_model.get_invertible_adapter()
    if inv is not None:
        # One input row per masked token ([M, 1, H]; NICE splits the last dim only), so that a
        # batch with one merge per row reverses each token through its own row's merge.
        if rows is not None:
            base = rows.index
            rows.select(positions[:, 0] if base is None else base[positions[:, 0]])
        h = inv(h.unsqueeze(1), rev=True).squeeze(1)
        if rows is not None:
            rows.select(base)
    return head[len(head) - 1](h)


def fill_mask(stack: LanguageStack, texts: list[str], adapters: list, k: int = 5) -> list:
    """Top-k tokens for the first mask in text i under ``adapters[i]`` (a language code, weights by
    language, or a ``Merge``), from the MLM head over the language adapter alone (this runs the
    invertible adapter forward at the input and in reverse before the head): a list of top-k
    lists. Cached by value (a class sliding λ over one text asks for the same merges again and
    again); the answers not in the memo are computed together (``_mask_probs``)."""
    keys = [(t, adapter_key(a), k) for t, a in zip(texts, adapters)]
    todo = [i for i, key in enumerate(keys) if not stack.memo.has("fill_mask", key)]
    fresh = dict(zip(todo, _top_tokens(stack, _mask_probs(stack, [texts[i] for i in todo],
                                                           [adapters[i] for i in todo]), k)))
    return [list(stack.memo.get("fill_mask", key, lambda i=i: tuple(fresh[i]))) for i, key in enumerate(keys)]


def _top_tokens(stack: LanguageStack, probs: torch.Tensor, k: int) -> list:
    out = []
    for p in probs:
        top = p.topk(k)
        tokens = stack.tokenizer.convert_ids_to_tokens(top.indices.tolist())
        out.append([(t.replace("▁", "") or t, float(v)) for t, v in zip(tokens, top.values)])
    return out


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


def single_prediction(stack: LanguageStack, text: str, adapter: str, task: str):
    """(label probabilities, per-layer hidden states, attention mask) of one unmerged adapter
    for one text: they do not depend on λ, so the stack's memo keeps them."""
    def compute():
        probs, hidden, mask = classify(stack, [text], adapter, task, hidden_states=True)
        # Cloned here, outside inference mode: inference tensors cannot have their storage
        # replaced, which ZeroGPU does to every tensor of a process it forks a worker from.
        return probs[0].tolist(), [h.clone() for h in hidden], mask.clone()

    return stack.memo.get("single", (text, adapter, task), compute)


_single = single_prediction  # the older private name


# --- many visitors in one forward pass: one merge per row -----------------------------------------
# Each request has its own λ (and pair); ``LanguageStack.use_rows`` makes row r compute with row
# r's merge, so a batch of visitors costs one padded pass, not one each. A single request is a
# batch of one: there is no second path whose memo keys must agree with this one.


def _groups(adapters: list) -> list[list[int]]:
    """Which rows run together: the rows of each language alone in one pass under its own adapter
    (``LanguageStack.use``: a language's adapter need not share the slot's config), every merge
    in one pass with one merge per row (``LanguageStack.use_rows``)."""
    out: dict = {}
    for i, ad in enumerate(adapters):
        out.setdefault(ad if isinstance(ad, str) else None, []).append(i)
    return list(out.values())


@contextlib.contextmanager
def _pass(stack: LanguageStack, adapters: list, task: str | None):
    """(model, the ``RowMix`` or None) for one group of ``_groups``."""
    if isinstance(adapters[0], str):
        with stack.use(adapters[0], task) as model:
            yield model, None
    else:
        with stack.use_rows(adapters, task) as mix:
            yield mix.model, mix


@torch.inference_mode()
def _classify_rows(stack: LanguageStack, texts: list[str], rows: list, task: str):
    """Label probabilities [n, labels] and hidden states of text i under merge ``rows[i]``."""
    enc = _encode(stack, texts)
    with stack.use_rows(rows, task) as mix:
        out = mix.model(**enc, head=task, output_hidden_states=True)
    mask = enc["attention_mask"].bool().cpu()
    return out.logits.float().softmax(-1).cpu(), [h.float().cpu() for h in out.hidden_states], mask


def comparisons(stack: LanguageStack, requests: list[tuple], task: str | None = None) -> list:
    """Merged stack vs adapter A alone vs adapter B alone, for many (text, target, source, λ[,
    merge]) requests of one task in one merged pass (A's and B's predictions come from the
    memo). ``merge`` (a ``model.Merge``) replaces the linear λ·A + (1−λ)·B by another recipe
    (N-way, task arithmetic, TIES, DARE, per-layer λ); A and B stay the baselines beside it.
    Each answer is a ``Comparison``, or the ``InputError``/``MergeError`` that request alone
    would raise."""
    from .arithmetic import MergeError

    task_ = stack.bundle.task(task)
    out: list = [None] * len(requests)
    todo = []
    for i, (text, target, source, lam, *merge) in enumerate(requests):
        merge = merge[0] if merge else None
        try:
            text, notice = clean_text(text)
            if merge is None:
                lam = check_lambda(lam)
            a, b = merge_pair(stack, target, source)
            if merge is None:
                weights = pair_weights(a, b, lam)
            else:
                weights, lam = merge, dict(merge.weights).get(a, float("nan"))
            pa, ha, mask = single_prediction(stack, text, a, task_.name)
            pb, _, _ = single_prediction(stack, text, b, task_.name)
            todo.append((i, text, target, a, b, lam, weights, notice, pa, pb, ha, mask))
        except (InputError, MergeError) as e:
            out[i] = e
    # A class slides λ over the same few texts on the slider's grid: a merged answer already
    # computed (keyed by text, merge and task) costs no forward pass.
    key = {t[0]: (t[1], adapter_key(t[6]), task_.name) for t in todo}
    run = [t for t in todo if not stack.memo.has("merged", key[t[0]])]
    fresh = {}
    if run:
        probs, hidden, _ = _classify_rows(stack, [t[1] for t in run], [t[6] for t in run], task_.name)
        for r, (i, *_, ha, mask) in enumerate(run):
            n = int(mask.sum())  # this row's tokens: the padding of the batch is not its own
            hm = [h[r:r + 1, :n] for h in hidden]
            fresh[i] = (probs[r].tolist(), _hidden_shift(hm, ha, mask[0:1]))
    for i, text, target, a, b, lam, weights, notice, pa, pb, _, _ in todo:
        pm, shift = stack.memo.get("merged", key[i], lambda: fresh[i])
        out[i] = Comparison(target=target, a=a, b=b, lam=lam, formula=formula(weights),
                            labels=list(task_.labels), probs={"merged": list(pm), "A": pa, "B": pb},
                            hidden_shift=list(shift), notice=notice)
    return out


def compare(stack: LanguageStack, text: str, target: str, source: str | None, lam: float,
            task: str | None = None, mask_text: str | None = None, merge=None) -> Comparison:
    """``comparisons`` of one request (its error raised); with ``mask_text``, also the fill-mask
    of the merge, A and B."""
    cmp = comparisons(stack, [(text, target, source, lam, merge)], task)[0]
    if isinstance(cmp, Exception):
        raise cmp
    if mask_text is not None:
        mtext, _ = clean_text(mask_text)
        merged = merge if merge is not None else pair_weights(cmp.a, cmp.b, cmp.lam)
        fills = fill_mask(stack, [mtext] * 3, [merged, cmp.a, cmp.b])
        cmp.fill_mask = dict(zip(("merged", "A", "B"), fills))
    return cmp


@torch.inference_mode()
def _mask_probs(stack: LanguageStack, texts: list[str], adapters: list) -> torch.Tensor:
    """The MLM head's full distribution [n, vocab] at the first mask of text i under
    ``adapters[i]`` (fill-mask, and the output ensemble's mixture of two such distributions)."""
    mask = stack.tokenizer.mask_token
    out = torch.empty(0)
    for t in texts:
        if mask not in t:
            raise InputError(f"the fill-mask text needs a {mask} token")
    for idx in _groups(adapters):
        enc = _encode(stack, [texts[i] for i in idx])
        first = []
        for r in range(len(idx)):
            pos = (enc["input_ids"][r] == stack.tokenizer.mask_token_id).nonzero()
            if len(pos) == 0:
                raise InputError(f"the {mask} token was cut off: put it earlier in the text")
            first.append([r, int(pos[0, 0])])
        with _pass(stack, [adapters[i] for i in idx], None) as (model, mix):
            p = masked_logits(model, enc, torch.tensor(first, device=stack.device),
                              rows=mix).float().softmax(-1).cpu()
        if out.numel() == 0:
            out = torch.empty(len(texts), p.shape[1])
        out[idx] = p
    return out


@torch.inference_mode()
def mlm_token_losses(stack: LanguageStack, requests: list[tuple]) -> list:
    """Per (texts, adapter) request (an adapter: a language code, weights by language or a
    ``Merge``): per text, (summed masked-token cross-entropy, number of masked tokens), with the
    masking of ``_mlm_batches`` and logits only at masked positions. Cached by value; the
    requests not in the memo share passes (``_groups``), one merge per request."""
    import numpy as np

    m = stack.memo
    keys = [(tuple(texts), adapter_key(adapter)) for texts, adapter in requests]
    got = {i: m.get("mlm_loss", key, lambda: None) for i, key in enumerate(keys) if m.has("mlm_loss", key)}
    todo = [i for i in range(len(keys)) if got.get(i) is None]
    for group in _groups([requests[i][1] for i in todo]):
        group = [todo[g] for g in group]
        flat, owner = [], []  # every text of every request, and which request it belongs to
        for j, i in enumerate(group):
            flat += list(requests[i][0])
            owner += [j] * len(requests[i][0])
        owner_t = torch.tensor(owner, device=stack.device)
        sums, counts = np.zeros(len(flat)), np.zeros(len(flat))
        with _pass(stack, [requests[i][1] for i in group], None) as (model, mix):
            for inputs, att, where, true, text_idx, row_text in _mlm_batches(stack, flat):
                if mix is not None:
                    mix.select(owner_t[row_text])
                logits = masked_logits(model, {"input_ids": inputs, "attention_mask": att}, where,
                                       rows=mix)
                loss = torch.nn.functional.cross_entropy(logits.float(), true, reduction="none")
                np.add.at(sums, text_idx.cpu().numpy(), loss.cpu().numpy())
                np.add.at(counts, text_idx.cpu().numpy(), 1)
        owner_a = np.array(owner)
        for j, i in enumerate(group):
            part = owner_a == j
            got[i] = m.get("mlm_loss", keys[i], lambda part=part: (sums[part].copy(), counts[part].copy()))
    return [got[i] for i in range(len(keys))]


def mlm_curve_requests(texts: list[str], a: str, b: str, lambdas) -> list[tuple]:
    """The (texts, adapter) requests ``mlm_curve`` makes for a λ grid (for ``mlm_token_losses``)."""
    return [(texts, a if lam == 1.0 else b if lam == 0.0 else pair_weights(a, b, lam))
            for lam in check_grid(lambdas)]


# --- evaluation ---------------------------------------------------------------------------------


def read_jsonl(path) -> list[dict]:
    """Rows of a ``.jsonl`` or ``.jsonl.gz`` file (the bundle ships its eval sets gzipped)."""
    import gzip

    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def eval_path(stack: LanguageStack, lang: str, task: str | None = None):
    """The eval file of a language for a task (``<lang>.jsonl.gz`` or ``<lang>.jsonl``), or None."""
    t = stack.bundle.task(task)
    if not t.eval:
        return None
    folder = stack.bundle.path(t.eval)
    lang = stack.bundle.text_of(lang)
    return next((p for p in (folder / f"{lang}.jsonl.gz", folder / f"{lang}.jsonl") if p.is_file()),
                None)


def load_eval(stack: LanguageStack, lang: str, task: str | None = None,
              split: str | None = None) -> list[dict]:
    """The bundle's labelled eval items for one language ({"key", "text", "label", "split"})."""
    t = stack.bundle.task(task)
    if not t.eval or t.kind != "classification":
        raise InputError(f"{stack.bundle.name} has no labelled {t.name} eval sets to sweep")
    path = eval_path(stack, lang, t.name)
    if path is None:
        raise InputError(f"no {t.name} eval set for {lang}: this bundle has none for that language")
    # Read once per stack: the page's flips read it on every λ (a gzip of 1,000 items each time).
    rows = stack.memo.get("eval", str(path), lambda: tuple(read_jsonl(path)))
    return [dict(r) for r in rows if split is None or r["split"] == split]


def test_texts(stack: LanguageStack, lang: str) -> frozenset[str]:
    """Every test-set text of a language in the bundle's eval sets, of all tasks, whitespace
    normalised. What the page shows as a dev item is never one of them: a few dev paragraphs have
    the very text of a test paragraph under another key (two English paragraphs translated alike)."""
    def read() -> frozenset[str]:
        out: set[str] = set()
        for t in stack.bundle.tasks.values():
            path = eval_path(stack, lang, t.name)
            if path is not None:
                out |= {" ".join(r["text"].split()) for r in read_jsonl(path)
                        if r.get("split") == "test" and isinstance(r.get("text"), str)}
        return frozenset(out)

    return stack.memo.get("eval", ("test_texts", stack.bundle.text_of(lang)), read)


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


def predict_labels(stack: LanguageStack, rows: list[dict], adapter, task: str | None = None,
                   batch_size: int = 32) -> list[int]:
    """Predicted label index of every item under ``Stack(adapter, task)``, in the rows' order."""
    t = stack.bundle.task(task)
    # Length-sorted batches pad less; the order does not change the predictions.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["text"]))
    pred = [0] * len(rows)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        probs = classify(stack, [rows[i]["text"] for i in idx], adapter, t.name)
        for i, p in zip(idx, probs.argmax(-1).tolist()):
            pred[i] = p
    return pred


def gold_labels(stack: LanguageStack, rows: list[dict], task: str | None = None) -> list[int]:
    index = {lab: i for i, lab in enumerate(stack.bundle.task(task).labels)}
    return [index[r["label"]] for r in rows]


def evaluate(stack: LanguageStack, rows: list[dict], adapter, task: str | None = None,
             batch_size: int = 32) -> dict[str, float]:
    """Accuracy and macro-F1 of ``Stack(adapter, task)`` (adapter: a code or merge weights)."""
    t = stack.bundle.task(task)
    pred = predict_labels(stack, rows, adapter, t.name, batch_size)
    return metrics(gold_labels(stack, rows, t.name), pred, len(t.labels))


# --- λ sweep ------------------------------------------------------------------------------------

DEFAULT_LAMBDAS = tuple(round(i / 10, 1) for i in range(11))


def sweep(stack: LanguageStack, target: str, source: str | None = None,
          lambdas=DEFAULT_LAMBDAS, task: str | None = None, progress=None,
          batch_size: int = 32) -> dict:
    """Accuracy/macro-F1 of λ·A + (1−λ)·B over a λ grid on the target's eval set (dev and test).

    The best λ is chosen on dev (ties: closer to 0.5) and reported on test, as in the paper; the
    per-item predictions at every λ feed a paired bootstrap of that whole procedure
    (``stats.bootstrap_sweep``: gains over A, B and the better of the two, with 95 % intervals).
    ``progress(done, total, message)`` is called after each point. Results are cached per
    (target, source, grid, task): the stack's weights never change.
    """
    lambdas = check_grid(lambdas)
    a, b = merge_pair(stack, target, source)
    return _sweep_cached(stack, target, a, b, lambdas, stack.bundle.task(task).name, progress,
                         batch_size)


def check_grid(lambdas) -> tuple[float, ...]:
    """A λ grid: finite values in [0, 1], sorted, without repeats; it must hold both endpoints
    (the single adapters A and B are the baselines)."""
    grid = tuple(sorted({round(check_lambda(x), 6) for x in lambdas}))
    if not grid:
        raise InputError("the λ grid is empty")
    if grid[0] != 0.0 or grid[-1] != 1.0:
        raise InputError("the λ grid must include 0 (B alone) and 1 (A alone)")
    return grid


def _sweep_cached(stack, target, a, b, lambdas, task, progress, batch_size=32) -> dict:
    return stack.memo.get("sweep", (target, a, b, lambdas, task),
                           lambda: _sweep(stack, target, a, b, lambdas, task, progress, batch_size))


def _sweep(stack, target, a, b, lambdas, task, progress, batch_size) -> dict:
    data = {s: load_eval(stack, target, task, s) for s in ("dev", "test")}
    if not data["dev"] or not data["test"]:
        raise InputError(f"the {target} eval set needs dev and test items")
    preds: dict[str, list[list[int]]] = {"dev": [], "test": []}
    for i, lam in enumerate(lambdas):
        w = pair_weights(a, b, lam)
        for s, rows in data.items():
            preds[s].append(predict_labels(stack, rows, w, task, batch_size))
        if progress:
            progress(i + 1, len(lambdas), f"λ = {lam:.2f}")
    return sweep_from_predictions(stack, target, a, b, lambdas, task, data, preds)


def encode_predictions(pred: list[int]) -> str:
    """Label indices as one string of base-36 digits (compact in JSON; up to 36 labels)."""
    return "".join("0123456789abcdefghijklmnopqrstuvwxyz"[p] for p in pred)


def decode_predictions(text: str) -> list[int]:
    return [int(ch, 36) for ch in text]


def sweep_from_predictions(stack: LanguageStack, target: str, a: str, b: str, lambdas, task: str,
                           data: dict[str, list[dict]], preds: dict[str, list[list[int]]]) -> dict:
    """A sweep's metrics, baselines, dev-chosen λ and bootstrap from per-item predictions
    (``preds[split][i]`` at ``lambdas[i]``): the live sweep and the build's precomputed one."""
    import numpy as np

    from . import stats

    n_labels = len(stack.bundle.task(task).labels)
    gold = {s: gold_labels(stack, rows, task) for s, rows in data.items()}
    points = [{"lam": lam, **{s: metrics(gold[s], preds[s][i], n_labels) for s in data}}
              for i, lam in enumerate(lambdas)]
    ia, ib = lambdas.index(1.0), lambdas.index(0.0)
    baselines = {"A": {"language": a, "dev": points[ia]["dev"], "test": points[ia]["test"]},
                 "B": {"language": b, "dev": points[ib]["dev"], "test": points[ib]["test"]}}
    counts = {s: stats.accuracy_counts(np.asarray(preds[s]) == np.asarray(gold[s])[None, :])
              for s in data}
    boot = stats.bootstrap_sweep(lambdas, counts["dev"], counts["test"])
    best = points[lambdas.index(boot["best_lam"])]
    return {"target": target, "source": b, "a": a, "b": b, "task": task, "points": points,
            "baselines": baselines, "best_lam": boot["best_lam"], "test_at_best": best["test"],
            "a_alone": points[ia]["test"], "b_alone": points[ib]["test"],
            "majority": _majority_share(gold["test"]),
            "n_dev": len(data["dev"]), "n_test": len(data["test"]),
            "gain_vs_a": boot["gain_vs_a"], "gain_vs_b": boot["gain_vs_b"],
            "gain_vs_better": boot["gain_vs_better"], "bootstrap": boot,
            "keys": {s: item_keys(rows, s) for s, rows in data.items()},
            "predictions": {s: [encode_predictions(p) for p in preds[s]] for s in data}}


def item_keys(rows: list[dict], split: str) -> list[str]:
    """Each eval item's identity: its key, else its place in the split (small test bundles)."""
    return [r.get("key") or f"{split}-{i}" for i, r in enumerate(rows)]


def _majority_share(gold: list[int]) -> float:
    return max(gold.count(g) for g in set(gold)) / len(gold) if gold else math.nan


# --- masked-LM loss: how well an adapter (or a merge) models a language's text ------------------

MLM_STRIDE = 5  # mask every 5th token (20 %), in 5 passes, so that every token is scored once
MLM_CHUNK = 16  # texts per forward: length-sorted chunks pad little


def _mlm_batches(stack: LanguageStack, texts: list[str]):
    """The deterministic masking of ``mlm_loss``: for each text and offset k < 5, one copy with
    every token at position ≡ k (mod 5) masked (special tokens never). Yields (inputs, attention,
    masked positions [M, 2], their true ids, the text index of each masked token and of each
    input row)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    any_maskable = False
    for s in range(0, len(order), MLM_CHUNK):
        chunk = order[s:s + MLM_CHUNK]
        enc = _encode(stack, [texts[i] for i in chunk])
        ids, att = enc["input_ids"], enc["attention_mask"]
        special = torch.tensor(stack.tokenizer.all_special_ids, device=ids.device)
        maskable = att.bool() & ~torch.isin(ids, special)
        any_maskable |= bool(maskable.any())
        cols = torch.arange(ids.shape[1], device=ids.device)
        index = torch.tensor(chunk, device=ids.device)
        for k in range(MLM_STRIDE):
            pos = maskable & (cols % MLM_STRIDE == k)
            rows = pos.any(1).nonzero().flatten()
            if len(rows) == 0:
                continue
            sub = pos[rows]
            inputs = ids[rows].masked_fill(sub, stack.tokenizer.mask_token_id)
            where = sub.nonzero()
            yield inputs, att[rows], where, ids[rows][sub], index[rows[where[:, 0]]], index[rows]
    if not any_maskable:
        raise InputError("the text has no word tokens to mask (only special tokens or spaces)")


def mlm_loss(stack: LanguageStack, texts: list[str], adapter) -> float:
    """Mean masked-LM loss of ``texts`` under a language adapter or merge, masking every 5th
    token in turn (deterministic, so scores of different adapters and λ are comparable)."""
    sums, counts = mlm_token_losses(stack, [(texts, adapter)])[0]
    return float(sums.sum() / max(counts.sum(), 1))


MLM_LIVE_LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def mlm_curve(stack: LanguageStack, texts: list[str], a: str, b: str, lambdas=MLM_LIVE_LAMBDAS,
              progress=None) -> dict:
    """Masked-LM loss of ``texts`` for λ·A + (1−λ)·B over a λ grid (0 and 1 = B and A alone).

    Returns ``{"a", "b", "points": [{"lam", "loss"}], "best_lam", "n_tokens", "sums", "counts"}``
    (per-text sums and counts at each λ, for choosing λ on one half of the text and reporting on
    the other)."""
    lambdas = check_grid(lambdas)
    stack.check_mergeable([a, b])
    sums, counts, points = [], [], []
    for i, lam in enumerate(lambdas):
        adapter = a if lam == 1.0 else b if lam == 0.0 else pair_weights(a, b, lam)
        s, c = mlm_token_losses(stack, [(texts, adapter)])[0]
        sums.append(s.tolist())
        counts.append(c.tolist())
        points.append({"lam": lam, "loss": float(s.sum() / max(c.sum(), 1))})
        if progress:
            progress(i + 1, len(lambdas), f"λ = {lam:.2f}")
    best = min(points, key=lambda p: (p["loss"], abs(p["lam"] - 0.5)))
    return {"a": a, "b": b, "points": points, "best_lam": best["lam"],
            "n_tokens": int(sum(counts[0])), "sums": sums, "counts": counts}


def heldout_mlm_summary(curve: dict) -> dict:
    """A held-out masked-LM curve, honestly scored: λ chosen on one half of the texts (even
    indices), its loss and A's and B's reported on the other half (odd indices)."""
    import numpy as np

    from . import stats

    sums, counts = np.asarray(curve["sums"]), np.asarray(curve["counts"])
    first, second = stats.split_halves(sums.shape[1])
    lambdas = [p["lam"] for p in curve["points"]]

    def loss(half):
        return sums[:, half].sum(1) / np.maximum(counts[:, half].sum(1), 1)

    l1, l2 = loss(first), loss(second)
    i = int(np.argmin(l1 + 1e-12 * np.abs(np.asarray(lambdas) - 0.5)))  # ties: closer to 0.5
    ia, ib = lambdas.index(1.0), lambdas.index(0.0)
    return {"a": curve["a"], "b": curve["b"], "points": curve["points"],
            "best_lam": curve["best_lam"], "n_tokens": curve["n_tokens"], "n_texts": int(sums.shape[1]),
            "halves": {"best_lam_first": lambdas[i], "second": {
                "a": float(l2[ia]), "b": float(l2[ib]), "merged": float(l2[i]),
                "n_tokens": int(counts[:, second].sum(1)[0])}},
            "interior_minimum": 0 < lambdas.index(curve["best_lam"]) < len(lambdas) - 1}


def heldout_mlm_bootstrap(curve: dict) -> dict:
    """``heldout_mlm_summary``'s procedure (λ chosen on the first half of the texts, reported on the
    second) under the paired bootstrap over texts (``stats.bootstrap_sweep`` on
    ``stats.loss_counts``): gains in nats per token, positive where the merge's loss is lower."""
    import numpy as np

    from . import stats

    sums, counts = np.asarray(curve["sums"]), np.asarray(curve["counts"])
    first, second = stats.split_halves(sums.shape[1])
    lambdas = [p["lam"] for p in curve["points"]]
    return stats.bootstrap_sweep(lambdas, stats.loss_counts(sums[:, first], counts[:, first]),
                                 stats.loss_counts(sums[:, second], counts[:, second]), scale=1.0)


def mlm_text(text: str | None) -> tuple[list[str], str | None]:
    """Text for a live masked-LM curve: cleaned and cut like any text (one sequence)."""
    text, notice = clean_text(text)
    return [text], notice


# --- the output ensemble: average the two stacks' outputs, not their weights --------------------
#
# Why not ``adapters``' ``Average`` block: it does weight its children (``weights=[λ, 1−λ]``), but
# it averages each layer's adapter output inside one forward pass (``compose_average``), so every
# later layer sees the mixed state, and only the first child's invertible adapter runs
# (``invertible_adapters_forward``: "takes only very first language adapter position"). That is a
# third model, neither the weight merge nor an ensemble of the two stacks. Here Stack(A, task) and
# Stack(B, task) run separately and their *probabilities* are mixed: λ·p_A + (1−λ)·p_B is a proper
# mixture (sums to 1; λ = 1 is A exactly, λ = 0 is B) and gives the masked-LM loss a mixture
# likelihood; averaging logits would be a product of experts, not "λ of A's prediction".

ENSEMBLE = "output_ensemble"


def mix_probs(pa: torch.Tensor, pb: torch.Tensor, lam: float) -> torch.Tensor:
    """λ·p_A + (1−λ)·p_B."""
    return lam * pa + (1.0 - lam) * pb


def ensemble_formula(a: str, b: str, lam: float) -> str:
    return f"ensemble = {lam:.2f}·p({a}-stack) + {1 - lam:.2f}·p({b}-stack)"


def ensemble_probs(stack: LanguageStack, texts: list[str], a: str, b: str, lam: float,
                   task: str | None = None) -> torch.Tensor:
    """Label probabilities [n, labels] of the output ensemble of Stack(A, task) and Stack(B, task)."""
    lam = check_lambda(lam)
    return mix_probs(classify(stack, texts, a, task), classify(stack, texts, b, task), lam)


def ensemble_fill_mask(stack: LanguageStack, text: str, a: str, b: str, lam: float,
                       k: int = 5) -> list[tuple[str, float]]:
    """Top-k tokens of λ·p_A + (1−λ)·p_B at the first mask."""
    pa, pb = _mask_probs(stack, [text, text], [a, b])
    return _top_tokens(stack, mix_probs(pa, pb, lam)[None], k)[0]


def compare_ensemble(stack: LanguageStack, text: str, target: str, source: str | None, lam: float,
                     task: str | None = None, mask_text: str | None = None) -> Comparison:
    """The output ensemble beside A and B alone (its probabilities in the ``merged`` column, where
    the page shows the middle prediction), and the weight merge at the same λ for contrast."""
    text, notice = clean_text(text)
    task_ = stack.bundle.task(task)
    lam = check_lambda(lam)
    a, b = merge_pair(stack, target, source)
    pa, _, _ = single_prediction(stack, text, a, task_.name)
    pb, _, _ = single_prediction(stack, text, b, task_.name)
    pe = mix_probs(torch.tensor(pa), torch.tensor(pb), lam)
    pm = classify(stack, [text], pair_weights(a, b, lam), task_.name)[0]
    cmp = Comparison(target=target, a=a, b=b, lam=lam, formula=ensemble_formula(a, b, lam),
                     labels=list(task_.labels),
                     probs={"merged": pe.tolist(), "A": pa, "B": pb, "weight_merge": pm.tolist()},
                     notice=notice)
    if mask_text is not None:
        mtext, _ = clean_text(mask_text)
        cmp.fill_mask = {"merged": ensemble_fill_mask(stack, mtext, a, b, lam),
                         **dict(zip("AB", fill_mask(stack, [mtext] * 2, [a, b])))}
    return cmp


def predict_probs(stack: LanguageStack, rows: list[dict], adapter, task: str | None = None,
                  batch_size: int = 32) -> torch.Tensor:
    """Label probabilities [n, labels] of every item under ``Stack(adapter, task)``, rows' order."""
    t = stack.bundle.task(task)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["text"]))  # less padding
    out = torch.zeros(len(rows), len(t.labels))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        out[idx] = classify(stack, [rows[i]["text"] for i in idx], adapter, t.name)
    return out


def ensemble_sweep(stack: LanguageStack, target: str, source: str | None = None,
                   lambdas=DEFAULT_LAMBDAS, task: str | None = None, progress=None,
                   batch_size: int = 32) -> dict:
    """The output ensemble over a λ grid on the target's eval set, through
    ``sweep_from_predictions``: the same metrics, dev-chosen λ and paired bootstrap as the merge's
    sweep. Two forward passes per item in all (A's and B's probabilities), whatever the grid."""
    lambdas = check_grid(lambdas)
    a, b = merge_pair(stack, target, source)
    task = stack.bundle.task(task).name
    return stack.memo.get("ensemble_sweep", (target, a, b, lambdas, task),
                           lambda: _ensemble_sweep(stack, target, a, b, lambdas, task, progress,
                                                   batch_size))


def _ensemble_sweep(stack, target, a, b, lambdas, task, progress, batch_size) -> dict:
    data = {s: load_eval(stack, target, task, s) for s in ("dev", "test")}
    if not data["dev"] or not data["test"]:
        raise InputError(f"the {target} eval set needs dev and test items")
    preds: dict[str, list[list[int]]] = {}
    for i, (s, rows) in enumerate(data.items()):
        pa = predict_probs(stack, rows, a, task, batch_size)
        pb = predict_probs(stack, rows, b, task, batch_size)
        preds[s] = [mix_probs(pa, pb, lam).argmax(-1).tolist() for lam in lambdas]
        if progress:
            progress(i + 1, len(data), f"{s}: A and B stacks")
    return {**sweep_from_predictions(stack, target, a, b, lambdas, task, data, preds),
            "method": ENSEMBLE}


@torch.inference_mode()
def mlm_token_logprobs(stack: LanguageStack, texts: list[str], adapter):
    """Per masked token (the masking of ``_mlm_batches``): log p(true token) under one adapter or
    merge, and the index of its text."""
    import numpy as np

    logp, which = [], []
    with stack.use(adapter, None) as model:
        for inputs, att, where, true, text_idx, _ in _mlm_batches(stack, texts):
            logits = masked_logits(model, {"input_ids": inputs, "attention_mask": att}, where)
            logp.append(logits.float().log_softmax(-1).gather(1, true[:, None])[:, 0].cpu().numpy())
            which.append(text_idx.cpu().numpy())
    return np.concatenate(logp).astype(np.float64), np.concatenate(which)


def ensemble_mlm_curve(stack: LanguageStack, texts: list[str], a: str, b: str,
                       lambdas=MLM_LIVE_LAMBDAS, progress=None) -> dict:
    """Masked-LM loss of ``texts`` under the output ensemble: at each masked token
    −log(λ·p_A(token) + (1−λ)·p_B(token)), over a λ grid. Same shape as ``mlm_curve`` (so
    ``heldout_mlm_summary`` and the plots take it); two scoring passes whatever the grid."""
    import numpy as np

    lambdas = check_grid(lambdas)
    stack.check_mergeable([a, b])
    la, idx = mlm_token_logprobs(stack, texts, a)
    lb, _ = mlm_token_logprobs(stack, texts, b)
    counts = np.bincount(idx, minlength=len(texts)).astype(np.float64)
    sums, points = [], []
    for i, lam in enumerate(lambdas):
        with np.errstate(divide="ignore"):  # log 0 = −inf: λ = 0 or 1 leaves one stack alone
            mixed = np.logaddexp(np.log(lam) + la, np.log(1.0 - lam) + lb)
        s = np.bincount(idx, weights=-mixed, minlength=len(texts))
        sums.append(s.tolist())
        points.append({"lam": lam, "loss": float(s.sum() / max(counts.sum(), 1))})
        if progress:
            progress(i + 1, len(lambdas), f"λ = {lam:.2f}")
    best = min(points, key=lambda p: (p["loss"], abs(p["lam"] - 0.5)))
    return {"a": a, "b": b, "points": points, "best_lam": best["lam"], "method": ENSEMBLE,
            "n_tokens": int(counts.sum()), "sums": sums, "counts": [counts.tolist()] * len(lambdas)}


def forward_cost(stack: LanguageStack, texts: list[str], a: str, b: str, lam: float = 0.5,
                 task: str | None = None, repeats: int = 3) -> dict:
    """Seconds per call (best of ``repeats``) to classify ``texts`` with one adapter, with the
    weight merge at λ (write into the slot + one forward) and with the output ensemble (two
    forwards): the ensemble's price is a second pass through the encoder."""
    import time

    lam = check_lambda(lam)
    runs = {"one_adapter": lambda: classify(stack, texts, a, task),
            "weight_merge": lambda: classify(stack, texts, pair_weights(a, b, lam), task),
            "ensemble": lambda: ensemble_probs(stack, texts, a, b, lam, task)}
    seconds = {}
    for name, fn in runs.items():
        best = math.inf
        for _ in range(max(int(repeats), 1)):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        seconds[name] = best
    return {"seconds": seconds, "forwards": {"one_adapter": 1, "weight_merge": 1, "ensemble": 2},
            "ensemble_over_one": seconds["ensemble"] / seconds["one_adapter"],
            "n_texts": len(texts), "repeats": max(int(repeats), 1)}
