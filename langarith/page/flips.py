"""Where the merge matters: on the target's eval items at the current λ (the precomputed grid's
nearest point), what the merge fixes and breaks against A and B, and the items whose prediction
differs; picking a row puts its text in the box. Reads the bundle's stored predictions only."""

from __future__ import annotations

import gradio as gr

from .. import results, tasks
from ..model import InputError, LanguageStack
from .common import PRIVATE, Controls, event, guarded, page_kind, page_task, readable

FLIP_COLUMNS = ["gold", "A", "merged", "B", "text"]  # short columns first: the text wraps
COLUMN_WIDTHS = ["14%", "14%", "14%", "14%", "44%"]


def _empty():
    return gr.update(value=[], headers=FLIP_COLUMNS)


def _classification_flips(stack, target, source, lam, task_name):
    try:
        f = results.flips(stack, target, source, lam, "dev")
    except InputError as e:
        return f"*{e}*", _empty()
    shown = f"λ = {f['lam']:g}" + ("" if abs(f["lam"] - lam) < 1e-9 else
                                   f" (the precomputed grid's nearest point to {lam:.2f})")
    md = (f"On the **{f['n']} {target} dev items** at {shown}: the merge gets "
          f"**{f['fixed_vs_a']}** right that A = {f['a']} alone gets wrong and **{f['broken_vs_a']}** "
          f"the reverse (net {f['fixed_vs_a'] - f['broken_vs_a']:+d}); against B = {f['b']}: "
          f"**{f['fixed_vs_b']}** fixed, **{f['broken_vs_b']}** broken "
          f"(net {f['fixed_vs_b'] - f['broken_vs_b']:+d}). {f['n_differ']} items get different labels "
          f"from A, the merge and B; {len(f['rows'])} are listed, the merge's wins first. "
          "Pick a row to try its text.")
    say = readable(stack, task_name)
    table = [[say(r[c]) if c != "text" else r[c] for c in FLIP_COLUMNS] for r in f["rows"]]
    return md, gr.update(value=table, headers=FLIP_COLUMNS)


def spans_of(words: list[str], tags: list[str], name=str) -> str:
    """BIO tags as ``type name: words; ...`` (a cell of the flips table)."""
    spans, cur = [], None
    for w, t in zip(words, tags):
        if t.startswith("B-") or (t.startswith("I-") and (cur is None or cur[0] != t[2:])):
            cur = [t[2:], [w]]
            spans.append(cur)
        elif t.startswith("I-"):
            cur[1].append(w)
        else:
            cur = None
    return "; ".join(f"{name(k)}: {' '.join(ws)}" for k, ws in spans) or "—"


def _tagging_flips(stack, target, source, lam, task_name):
    from .. import ner

    try:
        rows = ner.flips(stack, target, lam, task_name, limit=50, split="dev")
    except InputError as e:
        return f"*{e}*", _empty()
    say = readable(stack, task_name)
    table = [[spans_of(r["words"], r["gold"], say),
              *(spans_of(r["words"], r["tags"][w], say) for w in ("A", "merged", "B")),
              " ".join(r["words"])[:140]] for r in rows]
    md = (f"{len(rows)} {target} **dev-set** sentences whose spans differ between A, the merge at "
          f"λ = {round(lam, 1):g} and B, the merge's biggest wins over A first. Pick a row to try it.")
    return md, gr.update(value=table, headers=FLIP_COLUMNS)


def _no_flips(stack, target, source, lam, task_name):
    return "No labelled eval set in this profile (see the λ sweep tab).", _empty()


# The flips table of each task kind (``task_kinds.KINDS``); a kind without one: ``_no_flips``.
TABLES = {"classification": _classification_flips, "tagging": _tagging_flips}


@guarded
def on_flips(stack: LanguageStack, target: str, source: str, lam: float, task_name: str | None = None):
    """Where the merge matters at this λ: counts of items the merge fixes and breaks against A and
    against B, and the items whose prediction differs between A, the merge and B."""
    kind = page_kind(stack, task_name)
    return TABLES.get(kind.name if kind else None, _no_flips)(stack, target, source, lam, task_name)


@guarded
def on_pick_flip(stack: LanguageStack, target: str, source: str, lam: float,
                 task_name: str | None, evt: gr.SelectData):
    """A picked row of the flips table: its full text (the table shows it cut short) into the
    text box, with a fill-mask probe."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    kind = page_kind(stack, task_name)
    texts = (kind.changed_texts(stack, target, source, lam, page_task(stack, task_name))
             if kind and kind.changed_texts and row is not None else [])
    full = texts[row] if row is not None and row < len(texts) else None
    if full is None:
        return gr.update(), gr.update()
    return full, tasks.mask_a_word(full, stack.tokenizer.mask_token)


def layout() -> dict:
    gr.Markdown("### Where the merge matters: the dev-set items whose prediction it changes")
    note = gr.Markdown(elem_id="flips-note")
    # Fixed shares of the width, text last and widest: with long cells in every column (spans of
    # the tagging task) the table wraps instead of pushing the merged and B columns out of view.
    table = gr.Dataframe(headers=FLIP_COLUMNS, interactive=False, wrap=True, max_height=320,
                         column_widths=COLUMN_WIDTHS, elem_id="flips")
    return dict(note=note, table=table)


def flips_event(stack: LanguageStack, c: Controls, p: dict, **kw) -> dict:
    return event(on_flips, [*c.pair, c.task], [p["note"], p["table"]], **kw)


def wire(stack: LanguageStack, c: Controls, p: dict, follow) -> None:
    """A picked row is a new text: ``follow.text`` runs its comparison."""
    follow.text(p["table"].select(**event(on_pick_flip, [*c.pair, c.task], [c.text, c.mask_text]),
                              api_name="pick_flip", **PRIVATE))
