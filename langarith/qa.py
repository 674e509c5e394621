"""Layer 3 (extractive QA): the answer span for baseline, source and merged.

Works on any task of kind ``"extractive_qa"`` (the ``xlmr`` profile's M2QA adapters, activated as
``Stack(language or merged, domain, qa)`` by ``LanguageStack.use``). The question and the context
are encoded as a pair; the QA head gives start and end logits per token, and the answer is the
context span with the highest ``start + end`` logit among spans with start ≤ end ≤ start + 30
(the usual SQuAD decoding). Its score is the span's probability: softmax over the context's start
positions times softmax over its end positions.

The M2QA QA adapter was trained on SQuAD 2.0, where a question may have no answer in the context:
the answer is "no answer" (empty text) when the null score, start + end logit of the first
(``<s>``/``[CLS]``) token, beats the best span's, as in SQuAD 2.0 decoding. Question and context
are read up to the adapter's training length (512 tokens, or the model's position limit if
smaller); a longer context is cut and the answer says how many characters were not read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .arithmetic import check_lambda, pair_weights
from .loading import InputError
from .model import LanguageStack
from .tasks import clean_text, formula, merge_pair

MAX_QA_TOKENS = 512  # question + context: the M2QA QA adapter's max_seq_length (the context is cut)
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


def null_wins(start: torch.Tensor, end: torch.Tensor, span_logit: float) -> tuple[bool, float]:
    """SQuAD 2.0: "no answer" when the first token's start + end logit beats the best span."""
    null = float(start[0] + end[0])
    return null > span_logit, null


def max_qa_tokens(stack: LanguageStack, task) -> int:
    """The task's sequence length, capped by the encoder's positions (RoBERTa reserves two)."""
    cfg = stack.model.config
    reserved = 2 if "roberta" in getattr(cfg, "model_type", "") else 0
    n = getattr(task, "max_seq_length", None) or MAX_QA_TOKENS
    return min(n, getattr(cfg, "max_position_embeddings", n) - reserved)


@torch.inference_mode()
def answer(stack: LanguageStack, question: str, context: str, adapter, task: str | None = None) -> dict:
    """The best answer span of ``context`` under ``Stack(adapter, *stack_before, task)``:
    ``{"text", "start", "end", "score", "logit", "null_logit", "no_answer", "cut_chars"}``
    (character offsets into ``context``; ``text`` is empty when "no answer" wins)."""
    question, _ = clean_text(question)
    context, _ = clean_text(context)
    return answer_span(stack, question, context, adapter, task)


@torch.inference_mode()
def answer_span(stack: LanguageStack, question: str, context: str, adapter,
                task: str | None = None) -> dict:
    """``answer`` on text as given (no 2,000-character cut): the labelled-set path."""
    t = stack.bundle.task_of_kind("extractive_qa", task)
    if not question.strip() or not context.strip():
        raise InputError("the question and the context must not be empty")
    enc = stack.tokenizer([question], [context], return_tensors="pt", truncation="only_second",
                          max_length=max_qa_tokens(stack, t), return_offsets_mapping=True)
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
    none, null = null_wins(start, end, logit)
    a, b = (0, 0) if none else (offsets[s][0], offsets[e][1])
    read = max(offsets[i][1] for i, c in enumerate(ctx.tolist()) if c)
    return {"text": context[a:b], "start": a, "end": b, "score": prob, "logit": logit,
            "null_logit": null, "no_answer": none, "cut_chars": len(context) - read}


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
    weights = pair_weights(a, b, lam)
    answers = {"A": answer(stack, question, context, a, t.name),
               "merged": answer(stack, question, context, weights, t.name),
               "B": answer(stack, question, context, b, t.name)}
    return QaComparison(question=question, context=context, target=target, a=a, b=b, lam=lam,
                        formula=formula(weights), answers=answers, notice=notice)
