"""Layer 4: the Gradio page. Thin: every handler calls the tasks/analysis/share layers and draws.

Tabs: Merge (the live slider), λ sweep, Similarity, Keep & share. Nothing per person lives on the
server: every event carries its own inputs, and the engine merges under a lock.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import gradio as gr

from . import analysis, plots, share, tasks
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

try:  # Hugging Face ZeroGPU: GPU work must run inside spaces.GPU; elsewhere a no-op
    import spaces

    on_gpu = spaces.GPU
except ImportError:
    def on_gpu(fn):
        return fn
METHODS = [("linear: λ·A + (1−λ)·B", "linear"), ("N-way weighted sum", "nway"),
           ("task arithmetic (may extrapolate)", "task_arithmetic"), ("TIES", "ties"),
           ("DARE (seeded)", "dare")]


def language_choices(stack: LanguageStack, with_adapter_only: bool = False) -> list[tuple[str, str]]:
    out = []
    for code, lang in stack.bundle.languages.items():
        if with_adapter_only and not lang.has_adapter:
            continue
        tag = "" if lang.has_adapter else " · zero-shot, no adapter"
        out.append((f"{lang.name} ({code}, {lang.family}){tag}", code))
    return out


def parse_weights(text: str) -> dict[str, float]:
    """``"en: 0.5, es: 0.3, it: 0.2"`` -> {"en": 0.5, ...}; a clear error otherwise."""
    out: dict[str, float] = {}
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        code, sep, w = part.partition(":")
        if not sep:
            raise InputError(f"write N-way weights as code: weight, got {part.strip()!r}")
        try:
            out[code.strip()] = float(w)
        except ValueError:
            raise InputError(f"weight of {code.strip()!r} is not a number: {w.strip()!r}") from None
    if len(out) < 2:
        raise InputError("N-way merging needs at least two languages, e.g. en: 0.5, es: 0.3, it: 0.2")
    return out


def make_recipe(target, source, lam, method, weights_text, density, seed, extrapolate) -> share.Recipe:
    nway = method == "nway"
    return share.Recipe(target=target, source=source or None, lam=lam,
                        method="linear" if nway else method,
                        density=float(density) if method in ("ties", "dare") else None,
                        seed=int(seed or 0), weights=parse_weights(weights_text) if nway else {},
                        allow_extrapolation=bool(extrapolate))


def precomputed_curve(stack: LanguageStack, target: str) -> dict | None:
    """The bundle's precomputed λ curve for a target (shipped eval set), if the build made one."""
    results = _results(stack)
    for setting in ("zero_shot", "enhancement"):
        curve = results.get("shipped", {}).get(setting, {}).get(target)
        if curve:
            return curve
    return None


def _results(stack: LanguageStack) -> dict:
    rel = stack.bundle.manifest.get("results")
    path = stack.bundle.path(rel) if rel else None
    if not path or not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


FALLBACK_TEXT = "Barack Obama visited Berlin and Paris with Angela Merkel in 2013."


def build_demo(stack: LanguageStack) -> gr.Blocks:
    bundle = stack.bundle
    task = bundle.task(None) if bundle.tasks else None
    kind = task.kind if task else None  # "classification", "tagging" (NER), or None: fill-mask only
    mask = stack.tokenizer.mask_token
    targets = [c for c in bundle.languages if not bundle.languages[c].has_adapter] + \
        [c for c in bundle.languages if bundle.languages[c].has_adapter]
    first = targets[0]
    first_text = (bundle.languages[first].examples or (FALLBACK_TEXT,))[0]
    adapter_codes = bundle.adapter_languages()
    qa_task = next((t for t in bundle.tasks.values() if t.kind == "extractive_qa"), None)
    text_title = task.title if kind in ("classification", "tagging") else "fill-mask"

    def guarded(fn):
        """Bad input becomes a red toast with the engine's message; the app stays up."""
        @on_gpu
        @functools.wraps(fn)  # Gradio reads the signature (gr.Progress parameters) through this
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except BAD_INPUT as e:
                raise gr.Error(str(e)) from None
        return wrapper

    @guarded
    def on_target(target: str, current: str | None = None, note: str | None = None):
        """A new target: suggested source, its examples, and the first example in the text box.
        A source restored from a link (``note``) is kept when it suits the target."""
        a = tasks.baseline_language(stack, target)
        source = tasks.suggested_source(stack, target)
        if (note or "").startswith("Restored") and current in adapter_codes and current != a:
            source = current
        ex = list(bundle.language(target).examples)
        text = ex[0] if ex else FALLBACK_TEXT
        setting = "zero-shot" if a != target else "enhancement"
        suggested = tasks.suggested_source(stack, target)
        info = f"Baseline A = **{a}** ({setting}); source B = **{source}**" + \
            (" (the suggested one)." if source == suggested else f" (suggested: {suggested}).")
        return (gr.update(value=source), gr.update(choices=ex, value=text if ex else None),
                text, tasks.mask_a_word(text, mask), info)

    def compare_outputs(target, source, lam, text, mask_text, recipe: share.Recipe | None):
        if kind != "classification":
            return hub_outputs(target, source, lam, text, mask_text, recipe)
        merge = recipe.merge(stack) if recipe is not None else None
        cmp = tasks.compare(stack, text, target, source, lam, task.name,
                            mask_text=mask_text if mask_text and mask_text.strip() else None,
                            merge=merge)
        rows = analysis.weight_geometry(stack, cmp.a, cmp.b, lam, merge=merge)
        probs = {w: dict(zip(cmp.labels, cmp.probs[w])) for w in cmp.probs}
        fm = {w: dict(v) for w, v in cmp.fill_mask.items()} or {w: {} for w in ("A", "merged", "B")}
        head = f"### `{cmp.formula}`"
        if cmp.notice:
            gr.Warning(cmp.notice)
            head += f"\n\n*{cmp.notice}*"
        shown_lam = lam if merge is None else cmp.lam
        return (head,
                gr.update(value=probs["A"], label=f"A = {cmp.a} alone"),
                gr.update(value=probs["merged"], label=f"merged (λ = {shown_lam:.2f})"),
                gr.update(value=probs["B"], label=f"B = {cmp.b} alone"),
                gr.update(value=fm["A"], label=f"fill-mask, {cmp.a}"),
                gr.update(value=fm["merged"], label="fill-mask, merged"),
                gr.update(value=fm["B"], label=f"fill-mask, {cmp.b}"),
                plots.geometry_figure(rows, cmp.a, cmp.b, shown_lam),
                plots.hidden_shift_figure(cmp.hidden_shift, cmp.a, shown_lam))

    def hub_outputs(target, source, lam, text, mask_text, recipe):
        """Profiles without a classification task: NER spans (tagging) and fill-mask."""
        from . import ner

        if recipe is not None and (recipe.method != "linear" or recipe.weights):
            raise InputError("this profile merges linearly only (λ·A + (1−λ)·B) for now")
        text, notice = tasks.clean_text(text)
        a, b = tasks.merge_pair(stack, target, source)
        weights = {a: float(lam), b: 1.0 - float(lam)}
        out = [f"### `{tasks.formula(weights)}`" + (f"\n\n*{notice}*" if notice else "")]
        if kind == "tagging":
            cmp = ner.compare_ner(stack, text, target, b, lam, task.name)
            out += [gr.update(value=cmp.highlighted("A"), label=f"A = {a} alone"),
                    gr.update(value=cmp.highlighted("merged"), label=f"merged (λ = {lam:.2f})"),
                    gr.update(value=cmp.highlighted("B"), label=f"B = {b} alone")]
        mtext = mask_text if mask_text and mask_text.strip() else tasks.mask_a_word(text, mask)
        for which, adapter in (("A", a), ("merged", weights), ("B", b)):
            name = {"A": a, "merged": "merged", "B": b}[which]
            out.append(gr.update(value=dict(tasks.fill_mask(stack, mtext, adapter)),
                                 label=f"fill-mask, {name}"))
        rows = analysis.weight_geometry(stack, a, b, lam)
        out += [plots.geometry_figure(rows, a, b, lam),
                plots.hidden_shift_figure(tasks.hidden_shift(stack, text, a, weights), a, lam)]
        return tuple(out)

    @guarded
    def on_compare(target: str, source: str, lam: float, text: str, mask_text: str):
        """The linear merge λ·A + (1−λ)·B: predictions beside A and B alone, and the plots."""
        return compare_outputs(target, source, lam, text, mask_text, None)

    @guarded
    def on_compare_recipe(target, source, lam, text, mask_text, method, weights_text, density,
                          seed, extrapolate, progress=gr.Progress(track_tqdm=True)):
        """Any merge method of the page's method panel. (A hub profile downloads a language's
        adapter the first time it is picked: its tqdm bar shows here.)"""
        if method == "linear" and not extrapolate:
            return compare_outputs(target, source, lam, text, mask_text, None)
        recipe = make_recipe(target, source, lam, method, weights_text, density, seed, extrapolate)
        return compare_outputs(target, source, lam, text, mask_text, recipe)

    @guarded
    def on_qa(target: str, source: str, lam: float, question: str, context: str):
        """Extractive QA (profiles with an ``extractive_qa`` task): A's, the merge's and B's answers."""
        from . import qa

        cmp = qa.compare_qa(stack, question, context, target, source, lam, qa_task.name)
        names = {"A": f"A = {cmp.a} alone", "merged": f"merged (λ = {cmp.lam:.2f})",
                 "B": f"B = {cmp.b} alone"}
        return (f"### `{cmp.formula}`" + (f"\n\n*{cmp.notice}*" if cmp.notice else ""),
                *(gr.update(value=cmp.answers[w]["text"],
                            label=f"{names[w]} · p = {cmp.answers[w]['score']:.3f}")
                  for w in ("A", "merged", "B")))

    @guarded
    def on_sweep_tab(target: str, source: str):
        if kind != "classification":
            return None, "This profile has no labelled eval set: sweeps need the embedded bundle."
        curve = precomputed_curve(stack, target)
        if curve and curve.get("b") == source:
            return plots.sweep_figure(curve, f"{target}: precomputed on the shipped eval set "
                                      f"(n = {curve['n_dev']} dev, {curve['n_test']} test)"), \
                _sweep_summary(curve)
        return None, "No precomputed curve for this pair: press **Run sweep**."

    @guarded
    def on_run_sweep(target: str, source: str, progress=gr.Progress()):
        """Evaluate the merge over 11 λ on the target's eval set (dev chooses λ, test reports)."""
        progress(0, desc="λ sweep")
        s = tasks.sweep(stack, target, source,
                        progress=lambda i, n, m: progress(i / n, desc=m))
        curve = {**s, "b": s["source"], "a_alone": s["baselines"]["A"]["test"],
                 "b_alone": s["baselines"]["B"]["test"]}
        return plots.sweep_figure(curve, f"{target}: computed now (n = {s['n_dev']} dev, "
                                  f"{s['n_test']} test)"), _sweep_summary(curve)

    sim_cache: dict = {"sim": analysis.similarity(stack)}  # adapters never change: compute once

    def similarity() -> dict:
        if "sim" not in sim_cache:
            sim_cache["sim"] = analysis.similarity(stack)
        return sim_cache["sim"]

    @guarded
    def on_similarity(row: str):
        sim = similarity()
        matrix = sim["overall"] if row == "all layers" else sim["per_row"][row]
        rel = "relative to the shared init" if sim["relative_to_init"] else "raw weights"
        fig = plots.similarity_figure(sim["languages"], matrix,
                                      f"cos between language vectors ({rel}), {row}")
        results = _results(stack).get("full", {})
        sweeps = {**results.get("zero_shot", {}), **results.get("enhancement", {})}
        scatter = plots.gain_figure(analysis.similarity_vs_gain(stack, sweeps, sim)) if sweeps else None
        return fig, scatter

    @guarded
    def on_rank(target: str, progress=gr.Progress()):
        progress(0, desc="scoring source languages")
        ranking = analysis.rank_sources(stack, target, similarity())
        lines = [f"| {i + 1} | {r['language']} | {r['score']:.3f} |" for i, r in enumerate(ranking)]
        measure = ranking[0]["measure"] if ranking else ""
        return (f"Sources for **{target}**, most similar first ({measure}); suggested: "
                f"**{ranking[0]['language']}**\n\n| rank | language | score |\n|---|---|---|\n"
                + "\n".join(lines)), gr.update(value=ranking[0]["language"])

    @guarded
    def on_export(target, source, lam, method, weights_text, density, seed, extrapolate):
        recipe = make_recipe(target, source, lam, method, weights_text, density, seed, extrapolate)
        out = Path(tempfile.mkdtemp(prefix="langarith-export-"))
        info = share.export(stack, recipe, out)
        link = share.to_query(recipe)
        return info["zip"], info["recipe"], f"Exported `{info['formula']}`. Link to this view: `{link}`"

    @guarded
    def on_load_recipe(file):
        if file is None:
            raise InputError("choose a recipe file first")
        path = Path(file if isinstance(file, str) else file.name)
        if path.stat().st_size > 100_000:
            raise InputError("that file is too large to be a recipe")
        r = share.Recipe.from_json(path.read_bytes())
        r.merge(stack)  # validates languages, method and weights against this bundle
        method = "nway" if r.weights else r.method
        weights_text = ", ".join(f"{c}: {w:g}" for c, w in r.weights.items())
        return (r.target, r.source or tasks.suggested_source(stack, r.target), r.lam, method,
                weights_text, r.density or 0.5, r.seed, r.allow_extrapolation,
                f"Loaded recipe for **{r.target}** ({method}).")

    def on_url(request: gr.Request):
        """``?target=pt&source=es&lam=0.7`` restores a view; a bad link says why and is ignored."""
        params = dict(request.query_params) if request else {}
        if "target" not in params:
            return gr.update(), gr.update(), gr.update(), ""
        try:
            r = share.from_query(params)
            bundle.language(r.target)
            if r.source:
                lang = bundle.language(r.source)
                if not lang.has_adapter:
                    raise InputError(f"{r.source} has no adapter")
            return r.target, r.source or gr.update(), r.lam, f"Restored from the link: {r.target}."
        except BAD_INPUT as e:
            gr.Warning(f"ignored the link's parameters: {e}")
            return gr.update(), gr.update(), gr.update(), f"Link ignored: {e}"

    # analytics_enabled=False: no version check / telemetry thread even without app.py's env setting
    with gr.Blocks(title="langarith: language arithmetic", analytics_enabled=False) as demo:
        gr.Markdown("# langarith: language arithmetic for MAD-X adapters")
        gr.Markdown(INTRO)
        gr.Markdown(f"Bundle: **{bundle.name}** · task: **{task.title if task else 'fill-mask only'}**"
                    f" · device: `{stack.device}`",
                    elem_id="bundle-info")
        with gr.Row():
            target = gr.Dropdown(language_choices(stack), value=first, label="Target language",
                                 elem_id="target")
            source = gr.Dropdown(language_choices(stack, with_adapter_only=True),
                                 value=tasks.suggested_source(stack, first),
                                 label="Source language B (related, with an adapter)", elem_id="source")
            lam = gr.Slider(0, 1, value=0.5, step=0.05, label="λ (weight of A)", elem_id="lam")
        setting = gr.Markdown(elem_id="setting")
        link_note = gr.Markdown(elem_id="link-note")

        with gr.Tabs():
            with gr.Tab("Merge", id="merge"):
                with gr.Accordion("Merge method", open=False):
                    with gr.Row():
                        method = gr.Radio(METHODS, value="linear", label="Method", elem_id="method")
                        density = gr.Slider(0.05, 1, value=0.5, step=0.05,
                                            label="density (TIES, DARE)", elem_id="density")
                        seed = gr.Number(0, precision=0, label="seed (DARE)", elem_id="seed")
                    with gr.Row():
                        weights_text = gr.Textbox(label="N-way weights (up to 4 languages)",
                                                  placeholder="en: 0.5, es: 0.3, it: 0.2",
                                                  elem_id="weights")
                        extrapolate = gr.Checkbox(False, label="allow extrapolation (λ outside [0, 1]); "
                                                  "results may be unreliable", elem_id="extrapolate")
                with gr.Row():
                    with gr.Column(scale=3):
                        text = gr.Textbox(value=first_text, label=f"Text ({text_title}) — "
                                          "Shift+Enter to run", lines=3, elem_id="text")
                        mask_text = gr.Textbox(value=tasks.mask_a_word(first_text, mask),
                                               label=f"Fill-mask probe (uses {mask})",
                                               elem_id="mask-text")
                    example = gr.Dropdown(list(bundle.languages[first].examples), value=first_text or None,
                                          label="Examples in the target language", scale=2,
                                          elem_id="example")
                head = gr.Markdown(elem_id="formula")
                preds = []
                if kind == "classification":
                    with gr.Row():
                        preds = [gr.Label(label=f"{w} alone" if w != "merged" else w, num_top_classes=3,
                                          elem_id=f"pred-{w.lower()}") for w in ("A", "merged", "B")]
                elif kind == "tagging":  # entities, with the spans the merge changed marked
                    preds = [gr.HighlightedText(label=f"{w} alone" if w != "merged" else w,
                                                elem_id=f"pred-{w.lower()}", combine_adjacent=True)
                             for w in ("A", "merged", "B")]
                with gr.Row():
                    fill_a = gr.Label(label="fill-mask, A", num_top_classes=5, elem_id="fill-a")
                    fill_m = gr.Label(label="fill-mask, merged", num_top_classes=5, elem_id="fill-merged")
                    fill_b = gr.Label(label="fill-mask, B", num_top_classes=5, elem_id="fill-b")
                geometry = gr.Plot(label="Per-layer weights", elem_id="geometry")
                hidden = gr.Plot(label="Per-layer hidden states", elem_id="hidden")
                linear_api = gr.Button(visible=False)

            if qa_task is not None:  # e.g. xlmr: M2QA, Stack(language or merged, domain, qa)
                with gr.Tab("Question answering", id="qa"):
                    gr.Markdown(f"{qa_task.title}: the answer span in the context under A alone, "
                                "the merge at the current λ, and B alone.")
                    qa_question = gr.Textbox(label="Question", elem_id="qa-question",
                                             placeholder="Who met whom?")
                    qa_context = gr.Textbox(value=first_text, label="Context", lines=4,
                                            elem_id="qa-context")
                    qa_run = gr.Button("Answer", elem_id="qa-run")
                    qa_head = gr.Markdown(elem_id="qa-formula")
                    with gr.Row():
                        qa_answers = [gr.Textbox(label=w, interactive=False, elem_id=f"qa-{w.lower()}")
                                      for w in ("A", "merged", "B")]

            with gr.Tab("λ sweep", id="sweep") as sweep_tab:
                gr.Markdown("Accuracy of the merged stack over λ on the target's labelled eval set; "
                            "λ is chosen on dev and reported on test, with both single adapters as "
                            "lines. The bundle's precomputed curve shows at once.")
                run_sweep = gr.Button("Run sweep on this machine (11 points)", elem_id="run-sweep")
                sweep_plot = gr.Plot(elem_id="sweep-plot")
                sweep_note = gr.Markdown(elem_id="sweep-note")

            with gr.Tab("Similarity", id="similarity") as sim_tab:
                gr.Markdown("Cosine similarity between language vectors τ = θ − init of every pair of "
                            "adapters; rank the sources for the current target.")
                with gr.Row():
                    sim_row = gr.Dropdown(["all layers"] + list(sim_cache["sim"]["per_row"]),
                                          value="all layers", label="Layer", elem_id="sim-row")
                    rank = gr.Button("Rank sources for the target", elem_id="rank")
                sim_plot = gr.Plot(elem_id="sim-plot")
                rank_note = gr.Markdown(elem_id="rank-note")
                gain_plot = gr.Plot(elem_id="gain-plot")

            with gr.Tab("Keep & share", id="share"):
                gr.Markdown("Download the merged adapter (a folder that `adapters`' `load_adapter` "
                            "loads) and its JSON recipe; load a recipe to restore the page. A link "
                            "`?target=pt&source=es&lam=0.7` reproduces a view.")
                export = gr.Button("Export the current merge", elem_id="export")
                with gr.Row():
                    zip_file = gr.File(label="merged adapter (zip)", elem_id="zip-file")
                    recipe_file = gr.File(label="recipe (JSON)", elem_id="recipe-file")
                export_note = gr.Markdown(elem_id="export-note")
                upload = gr.File(label="load a recipe", file_types=[".json"], elem_id="upload")
                load_note = gr.Markdown(elem_id="load-note")

        inputs = [target, source, lam, text, mask_text]
        method_inputs = [method, weights_text, density, seed, extrapolate]
        outputs = [head, *preds, fill_a, fill_m, fill_b, geometry, hidden]
        sweep_out = [sweep_plot, sweep_note]
        target_out = [source, example, text, mask_text, setting]
        # Events that only serve the page itself are "private"; the rest are API endpoints.
        page_only = dict(api_visibility="private")
        run = dict(fn=on_compare_recipe, inputs=inputs + method_inputs, outputs=outputs,
                   api_name="refresh", **page_only)

        target.change(on_target, [target, source, link_note], target_out,
                      api_name="set_target").then(**run)
        target.change(on_sweep_tab, [target, source], sweep_out, api_name="sweep_tab", **page_only)
        target.input(lambda: "", None, link_note, api_name="clear_link", **page_only)
        lam.release(on_compare_recipe, inputs + method_inputs, outputs, api_name="compare_recipe",
                    trigger_mode="always_last")
        linear_api.click(on_compare, inputs, outputs, api_name="compare")
        source.input(**run)
        source.input(on_sweep_tab, [target, source], sweep_out, api_name="sweep_tab", **page_only)
        for comp in (method, extrapolate):  # extrapolation widens the slider to [-1, 2]
            comp.change(lambda ext: gr.update(minimum=-1 if ext else 0, maximum=2 if ext else 1),
                        extrapolate, lam, api_name="lam_range", **page_only).then(**run)
        density.release(**run)
        weights_text.submit(**run)
        seed.submit(**run)
        example.input(lambda t: (t, tasks.mask_a_word(t or "", mask)), example, [text, mask_text],
                      api_name="pick_example", **page_only).then(**run)
        text.submit(lambda t: tasks.mask_a_word(t or "", mask), text, mask_text,
                    api_name="mask_probe", **page_only).then(**run)
        mask_text.submit(**run)
        if qa_task is not None:
            qa_inputs, qa_out = [target, source, lam, qa_question, qa_context], [qa_head, *qa_answers]
            qa_run.click(on_qa, qa_inputs, qa_out, api_name="qa")
            qa_question.submit(on_qa, qa_inputs, qa_out, api_name="qa_submit", **page_only)
        run_sweep.click(on_run_sweep, [target, source], sweep_out, api_name="sweep")
        sim_row.change(on_similarity, sim_row, [sim_plot, gain_plot], api_name="similarity")
        rank.click(on_rank, target, [rank_note, source], api_name="rank_sources")
        export.click(on_export, [target, source, lam] + method_inputs,
                     [zip_file, recipe_file, export_note], api_name="export")
        upload.upload(on_load_recipe, upload,
                      [target, source, lam, method, weights_text, density, seed, extrapolate, load_note],
                      api_name="load_recipe").then(**run)

        load = demo.load(on_url, None, [target, source, lam, link_note], api_name="from_link",
                         **page_only)
        load.then(on_target, [target, source, link_note], target_out, api_name="target_on_load",
                  **page_only).then(**run)
        # Plots in a tab draw when the tab is shown (filled while hidden, they stayed "pending").
        sweep_tab.select(on_sweep_tab, [target, source], sweep_out, api_name="sweep_tab", **page_only)
        sim_tab.select(on_similarity, sim_row, [sim_plot, gain_plot], api_name="similarity_tab",
                       **page_only)
    return demo


def _sweep_summary(curve: dict) -> str:
    best = curve["test_at_best"]["accuracy"]
    a, b = curve["a_alone"]["accuracy"], curve["b_alone"]["accuracy"]
    return (f"Best λ on dev: **{curve['best_lam']}** → test accuracy **{100 * best:.1f}** "
            f"(A = {curve['a']} alone {100 * a:.1f}, B = {curve.get('b') or curve.get('source')} "
            f"alone {100 * b:.1f}).")
