"""Keep & share: download the merged adapter (a zip of a folder that ``adapters``'
``load_adapter`` loads) and its JSON recipe; load a recipe to restore the page."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from .. import share, tasks
from ..loading import InputError
from ..model import LanguageStack
from .common import LINEAR, PANEL, PRIVATE, Controls, Method, class_query, event, guarded, model_handler


@model_handler(duration=30)  # the merge is written through the model's live slot, then saved
@guarded
def on_export(stack: LanguageStack, target, source, lam, method: Method = LINEAR):
    recipe = method.recipe(target, source, lam)
    out = Path(tempfile.mkdtemp(prefix="langarith-export-"))
    info = share.export(stack, recipe, out)
    link = share.to_query(recipe)
    return info["zip"], info["recipe"], f"Exported `{info['formula']}`. Link to this view: `{link}`"


@guarded
def on_class_link(stack: LanguageStack, target, source, lam, task_name, text, step,
                  method: Method = LINEAR, request: gr.Request = None):
    """"Link for my class": one link that opens every student's page on this lesson — the pair,
    λ, the task, the text (an example's index when it is one) and the tour step shown last."""
    recipe, query = class_query(stack, target, source, lam, task_name, text, step, method)
    page = (request.headers.get("referer") or "").split("?")[0] if request else ""
    return (f"**Link for my class** (opens on {target}, λ = {recipe.lam:g}, this text"
            f"{f', tour step {step}' if step else ''}):\n\n`{page}{query}`")


@guarded
def on_load_recipe(stack: LanguageStack, file):
    """A recipe file back into the page: the pair, λ and every method control, and a note."""
    if file is None:
        raise InputError("choose a recipe file first")
    path = Path(file if isinstance(file, str) else file.name)
    if path.stat().st_size > share.MAX_RECIPE_BYTES:
        raise InputError("that file is too large to be a recipe")
    r = share.Recipe.from_json(path.read_bytes())
    r.merge(stack)  # validates languages, method and weights against this bundle
    m = Method.from_recipe(r, PANEL)
    return (r.target, r.source or tasks.suggested_source(stack, r.target), r.lam, *m.values(),
            f"Loaded recipe for **{r.target}** ({m.method}).")


def layout() -> dict:
    gr.Markdown("Download the merged adapter (a folder that `adapters`' `load_adapter` "
                "loads) and its JSON recipe; load a recipe to restore the page. A link "
                "`?target=pt&source=es&lam=0.7` reproduces a view; the link for a class adds the "
                "task, the text and the tour step (`&task=libreoffice&example=2&step=3`).")
    with gr.Row():
        export = gr.Button("Export the current merge", elem_id="export")
        class_link = gr.Button("Link for my class", elem_id="class-link")
    class_note = gr.Markdown(elem_id="class-link-note")
    with gr.Row():
        zip_file = gr.File(label="merged adapter (zip)", elem_id="zip-file")
        recipe_file = gr.File(label="recipe (JSON)", elem_id="recipe-file")
    export_note = gr.Markdown(elem_id="export-note")
    upload = gr.File(label="load a recipe", file_types=[".json"], elem_id="upload")
    load_note = gr.Markdown(elem_id="load-note")
    return dict(export=export, class_link=class_link, class_note=class_note, zip_file=zip_file, recipe_file=recipe_file, export_note=export_note,
                upload=upload, load_note=load_note)


def wire(stack: LanguageStack, c: Controls, p: dict, run: dict, after) -> None:
    """``run``: the comparison, re-run after a recipe is loaded; ``after(event)``: what follows it."""
    p["export"].click(**event(on_export, [*c.pair, *c.method.inputs],
                              [p["zip_file"], p["recipe_file"], p["export_note"]]), api_name="export")
    p["class_link"].click(**event(on_class_link, [*c.pair, c.task, c.text, c.step, *c.method.inputs],
                                  p["class_note"]), api_name="class_link", **PRIVATE)
    after(p["upload"].upload(**event(on_load_recipe, p["upload"],
                                     [*c.pair, *c.method.inputs, p["load_note"]]),
                             api_name="load_recipe").then(**run))
