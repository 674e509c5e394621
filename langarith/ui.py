"""Layer 4: the Gradio page. Thin: every handler calls the tasks/analysis layers and draws."""

from __future__ import annotations

import gradio as gr

from . import analysis, plots, tasks
from .arithmetic import MergeError
from .model import BundleError, InputError, LanguageStack

INTRO = """\
**Language arithmetic** builds a language adapter without training: it takes two trained MAD-X
language adapters and mixes them parameter by parameter, `merged = λ·A + (1−λ)·B`
([Klimaszewski et al., COLING 2025](https://arxiv.org/abs/2404.15737)).
Pick a target language (one without an adapter of its own is marked *zero-shot*), a related source
language and λ: the page shows the task predictions of the merged stack beside each adapter alone,
and how the merge moved the weights and the hidden states.
"""

BAD_INPUT = (InputError, MergeError, BundleError)


def language_choices(stack: LanguageStack, with_adapter_only: bool = False) -> list[tuple[str, str]]:
    out = []
    for code, lang in stack.bundle.languages.items():
        if with_adapter_only and not lang.has_adapter:
            continue
        tag = "" if lang.has_adapter else " · zero-shot, no adapter"
        out.append((f"{lang.name} ({code}, {lang.family}){tag}", code))
    return out


def build_demo(stack: LanguageStack) -> gr.Blocks:
    bundle = stack.bundle
    task = bundle.task(None)
    targets = [c for c in bundle.languages if not bundle.languages[c].has_adapter] + \
        [c for c in bundle.languages if bundle.languages[c].has_adapter]
    first = targets[0]
    first_text = (bundle.languages[first].examples or ("",))[0]

    def examples_for(target: str) -> list[str]:
        return list(bundle.language(target).examples)

    def on_target(target: str):
        """A new target: suggested source, its examples, and the first example in the text box."""
        try:
            source = tasks.suggested_source(stack, target)
            a = tasks.baseline_language(stack, target)
        except BAD_INPUT as e:
            raise gr.Error(str(e)) from None
        ex = examples_for(target)
        text = ex[0] if ex else ""
        setting = "zero-shot" if a != target else "enhancement"
        info = f"Baseline A = **{a}** ({setting}); suggested source B = **{source}**."
        return (gr.update(value=source), gr.update(choices=ex, value=text or None),
                text, tasks.mask_a_word(text), info)

    def on_compare(target: str, source: str, lam: float, text: str, mask_text: str):
        try:
            cmp = tasks.compare(stack, text, target, source, lam, task.name,
                                mask_text=mask_text if mask_text and mask_text.strip() else None)
            rows = analysis.weight_geometry(stack, cmp.a, cmp.b, cmp.lam)
        except BAD_INPUT as e:
            raise gr.Error(str(e)) from None
        name = {w: dict(zip(cmp.labels, cmp.probs[w])) for w in cmp.probs}
        fm = {w: dict(v) for w, v in cmp.fill_mask.items()} or {w: {} for w in ("A", "merged", "B")}
        head = f"### `{cmp.formula}`"
        if cmp.notice:
            gr.Warning(cmp.notice)
            head += f"\n\n*{cmp.notice}*"
        return (head,
                gr.update(value=name["A"], label=f"A = {cmp.a} alone"),
                gr.update(value=name["merged"], label=f"merged (λ = {cmp.lam:.2f})"),
                gr.update(value=name["B"], label=f"B = {cmp.b} alone"),
                gr.update(value=fm["A"], label=f"fill-mask, {cmp.a}"),
                gr.update(value=fm["merged"], label="fill-mask, merged"),
                gr.update(value=fm["B"], label=f"fill-mask, {cmp.b}"),
                plots.geometry_figure(rows, cmp.a, cmp.b, cmp.lam),
                plots.hidden_shift_figure(cmp.hidden_shift, cmp.a, cmp.lam))

    with gr.Blocks(title="langarith: language arithmetic") as demo:
        gr.Markdown("# langarith: language arithmetic for MAD-X adapters")
        gr.Markdown(INTRO)
        gr.Markdown(f"Bundle: **{bundle.name}** · task: **{task.title}** · device: `{stack.device}`",
                    elem_id="bundle-info")
        with gr.Row():
            target = gr.Dropdown(language_choices(stack), value=first, label="Target language",
                                 elem_id="target")
            source = gr.Dropdown(language_choices(stack, with_adapter_only=True),
                                 value=tasks.suggested_source(stack, first),
                                 label="Source language B (related, with an adapter)", elem_id="source")
            lam = gr.Slider(0, 1, value=0.5, step=0.05, label="λ (weight of A)", elem_id="lam")
        setting = gr.Markdown(elem_id="setting")
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(value=first_text, label=f"Text ({task.title})", lines=3,
                                  elem_id="text")
                mask_text = gr.Textbox(value=tasks.mask_a_word(first_text),
                                       label=f"Fill-mask probe (uses {stack.tokenizer.mask_token})",
                                       elem_id="mask-text")
            example = gr.Dropdown(examples_for(first), value=first_text or None,
                                  label="Examples in the target language", scale=2, elem_id="example")
        head = gr.Markdown(elem_id="formula")
        with gr.Row():
            label_a = gr.Label(label="A alone", num_top_classes=3, elem_id="pred-a")
            label_m = gr.Label(label="merged", num_top_classes=3, elem_id="pred-merged")
            label_b = gr.Label(label="B alone", num_top_classes=3, elem_id="pred-b")
        with gr.Row():
            fill_a = gr.Label(label="fill-mask, A", num_top_classes=5, elem_id="fill-a")
            fill_m = gr.Label(label="fill-mask, merged", num_top_classes=5, elem_id="fill-merged")
            fill_b = gr.Label(label="fill-mask, B", num_top_classes=5, elem_id="fill-b")
        geometry = gr.Plot(label="Per-layer weights", elem_id="geometry")
        hidden = gr.Plot(label="Per-layer hidden states", elem_id="hidden")

        inputs = [target, source, lam, text, mask_text]
        outputs = [head, label_a, label_m, label_b, fill_a, fill_m, fill_b, geometry, hidden]
        target.change(on_target, target, [source, example, text, mask_text, setting],
                      api_name="set_target").then(on_compare, inputs, outputs, api_name=False)
        lam.release(on_compare, inputs, outputs, api_name="compare", trigger_mode="always_last")
        source.input(on_compare, inputs, outputs, api_name=False)
        example.input(lambda t: (t, tasks.mask_a_word(t or "")), example, [text, mask_text],
                      api_name=False).then(on_compare, inputs, outputs, api_name=False)
        text.submit(lambda t: tasks.mask_a_word(t or ""), text, mask_text,
                    api_name=False).then(on_compare, inputs, outputs, api_name=False)
        mask_text.submit(on_compare, inputs, outputs, api_name=False)
        demo.load(on_target, target, [source, example, text, mask_text, setting],
                  api_name=False).then(on_compare, inputs, outputs, api_name=False)
    return demo
