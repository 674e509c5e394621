"""Layer 3 (extractive QA): the answer span for baseline, source and merged.

Works on any task of kind ``"extractive_qa"`` (the ``xlmr`` profile's M2QA adapters, activated as
``Stack(language or merged, domain, qa)`` by ``LanguageStack.use``). The question and the context
are encoded as a pair; the QA head gives start and end logits per token, and the answer is the
context span with the highest ``start + end`` logit among spans with start ≤ end ≤ start + 30
(the usual SQuAD decoding). Its score is the span's probability: softmax over the context's start
positions times softmax over its end positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .arithmetic import check_lambda
from .model import InputError, LanguageStack
from .tasks import clean_text, formula, merge_pair

MAX_QA_TOKENS = 384  # question + context, as in the usual SQuAD set-up (the context is cut)
MAX_ANSWER_TOKENS = 30


def best_span(start: torch.Tensor, end: torch.Tensor, context_mask: torch.Tensor,
              max_len: int = MAX_ANSWER_TOKENS) -> tuple[int, int, float, float]:
    """``(s, e, logit, prob)`` of the best span s ≤ e ≤ s + max_len over context tokens only."""
    n = start.shape[0]
    neg = torch.finfo(start.dtype).min
    s_l = start.masked_fill(~context_mask, neg)
    e_l = end.masked_fill(~context_mask, neg)
    i = torch.arange(n)
    band = (i[None, :] >= i[:, None]) & (i[None, :] <= i[:, None] + max_len)
    allowed = band & context_mask[:, None] & context_mask[None, :]
    scores = (s_l[:, None] + e_l[None, :]).masked_fill(~allowed, float("-inf"))
    flat = int(scores.argmax())
    s, e = divmod(flat, n)
    prob = float(s_l.softmax(-1)[s] * e_l.softmax(-1)[e])
    return s, e, float(scores[s, e]), prob


@torch.inference_mode()
def answer(stack: LanguageStack, question: str, context: str, adapter, task: str | None = None) -> dict:
    """The best answer span of ``context`` under ``Stack(adapter, *stack_before, task)``:
    ``{"text", "start", "end", "score", "logit"}`` (character offsets into ``context``)."""
    t = stack.bundle.task_of_kind("extractive_qa", task)
    question, _ = clean_text(question)
    context, _ = clean_text(context)
    enc = stack.tokenizer([question], [context], return_tensors="pt", truncation="only_second",
                          max_length=MAX_QA_TOKENS, return_offsets_mapping=True)
    seq = enc.sequence_ids(0)
    offsets = enc.pop("offset_mapping")[0].tolist()
    ctx = torch.tensor([s == 1 for s in seq])
    if not bool(ctx.any()):
        raise InputError("the question leaves no room for the context: shorten the question")
    enc = {k: v.to(stack.device) for k, v in enc.items()}
    with stack.use(adapter, t.name) as model:
        out = model(**enc, head=t.name)
    start, end = out.start_logits[0].float().cpu(), out.end_logits[0].float().cpu()
    s, e, logit, prob = best_span(start, end, ctx)
    a, b = offsets[s][0], offsets[e][1]
    return {"text": context[a:b], "start": a, "end": b, "score": prob, "logit": logit}


@dataclass
class QaComparison:
    question: str
    context: str
    target: str
    a: str
    b: str
    lam: float
    formula: str
    answers: dict[str, dict]  # "A", "merged", "B" -> answer()
    notice: str | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def compare_qa(stack: LanguageStack, question: str, context: str, target: str, source: str | None,
               lam: float, task: str | None = None) -> QaComparison:
    """Answers of A alone, the merge λ·A + (1−λ)·B, and B alone, for one question and context."""
    lam = check_lambda(lam)
    t = stack.bundle.task_of_kind("extractive_qa", task)
    question, _ = clean_text(question)
    context, notice = clean_text(context)
    a, b = merge_pair(stack, target, source)
    weights = {a: lam, b: 1.0 - lam}
    answers = {"A": answer(stack, question, context, a, t.name),
               "merged": answer(stack, question, context, weights, t.name),
               "B": answer(stack, question, context, b, t.name)}
    return QaComparison(question=question, context=context, target=target, a=a, b=b, lam=lam,
                        formula=formula(weights), answers=answers, notice=notice)
