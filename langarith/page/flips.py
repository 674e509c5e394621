"""Where the merge matters: on the target's dev-set items at the current λ (the precomputed grid's
nearest point), what the merge fixes and breaks against A and B, and the items whose prediction
differs; picking a row puts its text in the box. Reads the bundle's stored predictions only."""

from __future__ import annotations

import html

import gradio as gr

from .. import results, tasks
from ..loading import InputError
from ..model import LanguageStack
from .common import PRIVATE, Controls, event, guarded, page_kind, page_task, readable, spans_of

FLIP_COLUMNS = ["gold", "A", "merged", "B", "text"]  # short columns first: the text wraps
COLUMN_WIDTHS = ["14%", "14%", "14%", "14%", "44%"]  # on a phone the table scrolls sideways instead


CAPTION = "Dev-set items the merge changes"
REGION = "Dev-set items the merge changes: the gold answer, the predictions of A, the merge and B, and the text"


def _empty():
    return []


def table_html(rows: list[list[str]]) -> str:
    """The flips as a read-only HTML table with a caption: Gradio's Dataframe drew a grid
    without rows and a drop button inside it (axe-core: critical). The labels never break inside
    a word; on a phone the table scrolls sideways in its own focusable region."""
    cols = "".join(f'<col style="width: {w}">' for w in COLUMN_WIDTHS)
    head = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in FLIP_COLUMNS)
    body = "".join("<tr>" + "".join(
        f'<td class="{"text" if c == "text" else "label"}">{html.escape(str(v))}</td>'
        for c, v in zip(FLIP_COLUMNS, row)) + "</tr>" for row in rows)
    return (f'<div class="flips-wrap" role="region" aria-label="{html.escape(REGION)}" tabindex="0">'
            f"<table><caption>{html.escape(CAPTION)}</caption><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def pick_choices(rows: list[list[str]]) -> dict:
    """The listed items, for the picker under the table (a row's text into the text box)."""
    return gr.update(choices=[(f"{i + 1}. {row[-1][:70]}", i) for i, row in enumerate(rows)], value=None)


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
          "Pick an item under the table to try its text.")
    say = readable(stack, task_name)
    table = [[say(r[c]) if c != "text" else r[c] for c in FLIP_COLUMNS] for r in f["rows"]]
    return md, table


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
          f"λ = {round(lam, 1):g} and B, the merge's biggest wins over A first. Pick one under the table to try it.")
    return md, table


def _no_flips(stack, target, source, lam, task_name):
    return "No labelled eval set in this profile (see the λ sweep tab).", _empty()


# The flips table of each task kind (``task_kinds.KINDS``); a kind without one: ``_no_flips``.
TABLES = {"classification": _classification_flips, "tagging": _tagging_flips}


@guarded
def on_flips(stack: LanguageStack, target: str, source: str, lam: float, task_name: str | None = None):
    """Where the merge matters at this λ: counts of items the merge fixes and breaks against A and
    against B, and the items whose prediction differs between A, the merge and B (the table, and
    the same items in the picker under it)."""
    kind = page_kind(stack, task_name)
    table = TABLES.get(kind.name if kind else None, _no_flips)
    # Every student of a class asks for the same few tables (a pair, the slider's λ): built once
    # (a table read the stored predictions back each time: ~50 ms of the server's one GIL a call).
    md, rows = stack.memo.get("flips", (table.__name__, target, source, round(float(lam), 6), task_name),
                              lambda: table(stack, target, source, lam, task_name))
    return md, table_html(rows), pick_choices(rows)


@guarded
def on_pick_flip(stack: LanguageStack, target: str, source: str, lam: float,
                 task_name: str | None, row: int | None):
    """A picked item of the flips table: its full text (the table shows it cut short) into the
    text box, with a fill-mask probe."""
    row = None if row is None else int(row)
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
    # A read-only HTML table (``table_html``), not a Dataframe; picking an item is a dropdown
    # under it, which a keyboard and a screen reader reach like any other control.
    table = gr.HTML(table_html([]), elem_id="flips", padding=False, js_on_load=None)
    pick = gr.Dropdown([], value=None, label="Try an item's text", elem_id="flips-pick")
    return dict(note=note, table=table, pick=pick)


def flips_event(stack: LanguageStack, c: Controls, p: dict, **kw) -> dict:
    return event(on_flips, [*c.pair, c.task], [p["note"], p["table"], p["pick"]], **kw)


def wire(stack: LanguageStack, c: Controls, p: dict, follow) -> None:
    """A picked item is a new text: ``follow.text`` runs its comparison."""
    follow.text(p["pick"].input(**event(on_pick_flip, [*c.pair, c.task, p["pick"]], [c.text, c.mask_text]),
                                api_name="pick_flip", **PRIVATE))
