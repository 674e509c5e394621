"""Layer 4: the Gradio page. Thin: handlers are plain functions of (stack, inputs) that call the
tasks / results / analysis / share layers and draw; ``build_demo`` binds them to the layout.

Tabs: Merge (the live slider, where the merge matters, how well it models the language), λ sweep,
Similarity, Keep & share (and Question answering for profiles with a QA task). Nothing per person
lives on the server: every event carries its own inputs, and the engine merges under a lock.
"""

from __future__ import annotations

import functools
import inspect
import os
import tempfile
from pathlib import Path

import gradio as gr

from . import analysis, plots, results, share, tasks
from . import ui_typology  # issue 13: typology beside the adapters' similarity
from .arithmetic import MergeError
from .model import BundleError, InputError, LanguageStack

INTRO = """\
**Language arithmetic** builds a language adapter without training: it takes two trained MAD-X
language adapters and mixes them parameter by parameter, `merged = λ·A + (1−λ)·B`
([Klimaszewski et al., COLING 2025](https://arxiv.org/abs/2404.15737)).
Pick a target language (one without an adapter of its own is marked *zero-shot*), a related source
language and λ: the page shows the task predictions of the merged stack beside each adapter alone,
the eval items whose prediction the merge changes, how well the merge models the target language
(masked-LM loss: no labels needed), and how it moved the weights.
"""

BAD_INPUT = (InputError, MergeError, BundleError)
FALLBACK_TEXT = "Barack Obama visited Berlin and Paris with Angela Merkel in 2013."
METHODS = [("linear: λ·A + (1−λ)·B", "linear"), ("N-way weighted sum", "nway"),
           ("task arithmetic (may extrapolate)", "task_arithmetic"), ("TIES", "ties"),
           ("DARE (seeded)", "dare"), ("per-layer λ (gradient over depth)", "layer_gradient"),
           ("output ensemble (λ·A-stack + (1−λ)·B-stack)", tasks.ENSEMBLE),
           ("typology-weighted (URIEL, top k)", "typology")]
FLIP_COLUMNS = ["gold", "A", "merged", "B", "text"]  # short columns first: the text wraps

try:  # Hugging Face ZeroGPU: GPU work must run inside spaces.GPU; elsewhere a no-op
    import spaces

    on_gpu = spaces.GPU
except ImportError:
    def on_gpu(fn):
        return fn


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


# --- small helpers ------------------------------------------------------------------------------


def language_choices(stack: LanguageStack, with_adapter_only: bool = False) -> list[tuple[str, str]]:
    out = []
    for code, lang in stack.bundle.languages.items():
        if with_adapter_only and (not lang.has_adapter or lang.is_variant):
            continue  # a low-resource variant is never a source
        tag = "" if lang.has_adapter else " · zero-shot, no adapter"
        if lang.is_variant:
            tag = " · low-resource variant"
        out.append((f"{lang.name} ({code}, {lang.family}){tag}", code))
    return out


def task_choices(stack: LanguageStack) -> list[tuple[str, str]]:
    """The page's tasks: classification (topic) and tagging (spans); QA has its own tab."""
    return [(t.title, t.name) for t in stack.bundle.tasks.values()
            if t.kind in ("classification", "tagging")]


def task_kind(stack: LanguageStack, task_name: str | None) -> str | None:
    """"classification", "tagging", or None (a fill-mask-only profile)."""
    if not task_choices(stack):
        return None
    return stack.bundle.task(task_name or task_choices(stack)[0][1]).kind


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


def make_recipe(target, source, lam, method, weights_text, density, seed, extrapolate,
                lam_layers: str = "", lam_inv: float | None = None, typology_set: str | None = None,
                typology_k: float | None = None, typology_t: float | None = None) -> share.Recipe:
    nway = method == "nway"
    layered = method == "layer_gradient"
    if method == tasks.ENSEMBLE:  # nothing is merged: its recipe is the linear one at the same λ
        method = "linear"
    return share.Recipe(target=target, source=source or None, lam=lam,
                        method="linear" if nway else method,
                        density=float(density) if method in ("ties", "dare") else None,
                        seed=int(seed or 0), weights=parse_weights(weights_text) if nway else {},
                        allow_extrapolation=bool(extrapolate),
                        lam_layers=share.parse_anchors(lam_layers) if layered else None,
                        lam_inv=lam_inv if layered else None,
                        **(dict(typology=typology_set or None,
                                k=None if typology_k is None else int(typology_k),
                                temperature=None if typology_t is None else float(typology_t))
                           if method == "typology" else {}))


def _pts(x: float) -> str:
    return f"{x:+.1f}"


def gain_line(name: str, g: dict) -> str:
    """``+0.4 points [−1.1, +1.9] (P(gain > 0) = 0.71)``, and whether that is a win at all."""
    lo, hi = g["ci95"]
    verdict = ("a gain" if lo > 0 else "a loss" if hi < 0 else "inside its interval: not a clear gain")
    return (f"{name}: **{_pts(g['points'])}** points, 95 % CI [{_pts(lo)}, {_pts(hi)}], "
            f"share of resamples with a gain {g['p_positive']:.2f} — {verdict}")


def sweep_summary(curve: dict) -> str:
    """The sweep in words: dev-chosen λ, test scores, gains with their bootstrap intervals."""
    metric = plots.metric_of(curve)
    best = curve["test_at_best"]
    best = best[metric] if isinstance(best, dict) else best / 100
    a = curve["a_alone"][metric] if isinstance(curve["a_alone"], dict) else curve["a_alone"] / 100
    b = curve["b_alone"][metric] if isinstance(curve["b_alone"], dict) else curve["b_alone"] / 100
    out = [f"Best λ on dev: **{curve['best_lam']}** → test {metric} **{100 * best:.1f}** "
           f"(A = {curve['a']} alone {100 * a:.1f}, B = {curve.get('b') or curve.get('source')} "
           f"alone {100 * b:.1f}; n = {curve['n_dev']} dev, {curve['n_test']} test)."]
    if "gain_vs_better" in curve:
        over_a = f"gain over A = {curve['a']}"
        out += ["", "Paired bootstrap over items, λ re-chosen on every resampled dev set "
                f"({(curve.get('bootstrap') or {}).get('n_resamples', 2000)} resamples):",
                "", f"- {gain_line('gain over the better single adapter', curve['gain_vs_better'])}",
                f"- {gain_line(over_a, curve['gain_vs_a'])}",
                f"- {gain_line('gain over B', curve['gain_vs_b'])}"]
    return "\n".join(out)


def premise_note(stack: LanguageStack, task_name: str | None) -> str:
    """What a reader must know before reading any gain: how much this task depends on the
    language adapter at all (own adapter vs the English one, on each language's test set)."""
    prem = results.bundle_results(stack).get("premise") or {}
    if task_kind(stack, task_name) != "classification" or not prem:
        return ""
    diffs = {c: v["own_minus_en"] for c, v in prem.items()}
    lo = min(d["points"] for d in diffs.values())
    hi = max(d["points"] for d in diffs.values())
    clear = [c for c, d in diffs.items() if d["ci95"][0] > 0]
    n = next(iter(prem.values()))["n"]
    return (f"**Read this first.** On this task, a language's own adapter scores {_pts(lo)} to "
            f"{_pts(hi)} accuracy points against the English adapter on that language's test set "
            f"(n = {n} each; clearly better, 95 % CI above 0, for "
            f"{', '.join(clear) if clear else 'none'} of {len(diffs)}). The topic of a help "
            "paragraph barely depends on the language adapter, so no mix of two adapters can move "
            "accuracy much: small gains below are read with their intervals. What the merge does "
            "to the language itself shows in the masked-LM curve, which needs no labels.")


# --- handlers: plain functions of (stack, inputs) --------------------------------------------


@guarded
def on_target(stack: LanguageStack, target: str, current: str | None = None, note: str | None = None):
    """A new target: the suggested source, its examples, a first text on which the merge changes
    the prediction (from the dev set), and whether this is zero-shot or enhancement. A source
    restored from a link (``note``) is kept when it suits the target."""
    bundle = stack.bundle
    a = tasks.baseline_language(stack, target)
    source = tasks.suggested_source(stack, target)
    if (note or "").startswith("Restored") and current in bundle.adapter_languages() and current != a:
        source = current
    ex = list(bundle.language(target).examples)
    first = results.first_example(stack, target)
    where = ""
    if first:
        where = " The first text is **from the dev set; the merge changes this prediction.**"
        ex = [first] + [e for e in ex if e != first]
    text = ex[0] if ex else FALLBACK_TEXT
    lang = bundle.language(target)
    setting = "zero-shot" if a != target else "enhancement"
    if lang.is_variant:
        setting = (f"low-resource: this {bundle.language(lang.text_language).name} adapter saw only "
                   f"{lang.tokens:,} tokens of text; the full one is `{lang.text_language}`")
    suggested = tasks.suggested_source(stack, target)
    info = f"Baseline A = **{a}** ({setting}); source B = **{source}**" + \
        (" (the suggested one)." if source == suggested else f" (suggested: {suggested}).") + where
    return (gr.update(value=source), gr.update(choices=ex, value=text if ex else None),
            text, tasks.mask_a_word(text, stack.tokenizer.mask_token), info)


def _merge_of(stack, target, source, lam, method, weights_text, density, seed, extrapolate,
              lam_layers="", lam_inv=None, *typology):
    if method in ("linear", tasks.ENSEMBLE) and not extrapolate:
        return None
    return make_recipe(target, source, lam, method, weights_text, density, seed, extrapolate,
                       lam_layers, lam_inv, *typology).merge(stack)


@guarded
def on_layer_plot(stack: LanguageStack, lam, lam_layers, lam_inv, extrapolate=False):
    """The λ-per-layer plot of the panel's anchors (empty anchors: λ everywhere)."""
    from .arithmetic import layer_lambdas

    anchors = share.parse_anchors(lam_layers) or [lam]
    lams = layer_lambdas(anchors, stack.n_layers, allow_extrapolation=bool(extrapolate))
    return plots.layer_lambda_figure(lams, lam if lam_inv is None else lam_inv)


def _compare_ensemble(stack, target, source, lam, text, mask_text, task_name, full: bool):
    """The output ensemble's predictions beside A and B (the middle column), like the merge's."""
    mtext = mask_text if mask_text and mask_text.strip() else tasks.mask_a_word(
        tasks.clean_text(text)[0], stack.tokenizer.mask_token)
    cmp = tasks.compare_ensemble(stack, text, target, source, lam, task_name,
                                 mask_text=mtext if full else None)
    names = {"A": f"A = {cmp.a} alone", "merged": f"output ensemble (λ = {cmp.lam:.2f})",
             "B": f"B = {cmp.b} alone"}
    labels = [gr.update(value=dict(zip(cmp.labels, cmp.probs[w])), label=names[w], visible=True)
              for w in ("A", "merged", "B")]
    merged_says = cmp.labels[max(range(len(cmp.labels)), key=cmp.probs["weight_merge"].__getitem__)]
    head = (f"### `{cmp.formula}`\n\nThe weight merge at the same λ predicts **{merged_says}**; "
            f"the ensemble runs the encoder twice (A's stack and B's).")
    spans = [gr.update(visible=False) for _ in range(3)]  # one dict each: Gradio consumes them
    if not full:
        return (head, *labels, *spans)
    fill = [gr.update(value=dict(cmp.fill_mask[w]), label=f"fill-mask, {n}")
            for w, n in (("A", cmp.a), ("merged", "ensemble"), ("B", cmp.b))]
    weights = {cmp.a: cmp.lam, cmp.b: 1.0 - cmp.lam}  # plots: the weight merge at this λ
    rows = analysis.weight_geometry(stack, cmp.a, cmp.b, cmp.lam)
    shift = tasks.hidden_shift(stack, tasks.clean_text(text)[0], cmp.a, weights)
    return (head, *labels, *spans, *fill, plots.geometry_figure(rows, cmp.a, cmp.b, cmp.lam),
            plots.hidden_shift_figure(shift, cmp.a, cmp.lam))


def _compare(stack: LanguageStack, target, source, lam, text, mask_text, method, weights_text,
             density, seed, extrapolate, task_name, full: bool, lam_layers="", lam_inv=None,
             typology=()):
    """The page's comparison: the formula and the task predictions of A, the merge and B
    (labels or spans); with ``full``, also fill-mask and the weight and hidden-state plots."""
    kind = task_kind(stack, task_name)
    if method == tasks.ENSEMBLE and kind != "classification":
        raise InputError("the output ensemble is shown for classification tasks only for now")
    if method == tasks.ENSEMBLE:
        return _compare_ensemble(stack, target, source, lam, text, mask_text, task_name, full)
    merge = _merge_of(stack, target, source, lam, method, weights_text, density, seed, extrapolate,
                      lam_layers, lam_inv, *typology)
    if merge is not None and kind != "classification":
        raise InputError("this task merges linearly only (λ·A + (1−λ)·B) for now")
    text, notice = tasks.clean_text(text)
    a, b = tasks.merge_pair(stack, target, source)
    labels = [gr.update(visible=kind == "classification") for _ in range(3)]
    spans = [gr.update(visible=kind == "tagging") for _ in range(3)]
    shift = None
    if kind == "classification":
        cmp = tasks.compare(stack, text, target, b, lam, task_name, merge=merge)
        shown_lam, formula, shift = (lam if merge is None else cmp.lam), cmp.formula, cmp.hidden_shift
        names = {"A": f"A = {a} alone", "merged": f"merged (λ = {shown_lam:.2f})", "B": f"B = {b} alone"}
        labels = [gr.update(value=dict(zip(cmp.labels, cmp.probs[w])), label=names[w], visible=True)
                  for w in ("A", "merged", "B")]
    else:
        lam = tasks.check_lambda(lam)
        shown_lam, formula = lam, tasks.formula({a: lam, b: 1.0 - lam})
        if kind == "tagging":
            from . import ner

            cmp = ner.compare_ner(stack, text, target, b, lam, task_name)
            notice = cmp.notice or notice
            names = {"A": f"A = {a} alone", "merged": f"merged (λ = {lam:.2f})", "B": f"B = {b} alone"}
            spans = [gr.update(value=cmp.highlighted(w), label=names[w], visible=True)
                     for w in ("A", "merged", "B")]
    head = f"### `{formula}`"
    if notice:
        head += f"\n\n*{notice}*"
    if not full:
        return (head, *labels, *spans)
    if notice:
        gr.Warning(notice)
    weights = merge if merge is not None else {a: shown_lam, b: 1.0 - shown_lam}
    if shift is None:
        shift = tasks.hidden_shift(stack, text, a, weights)
    mtext = mask_text if mask_text and mask_text.strip() else tasks.mask_a_word(text, stack.tokenizer.mask_token)
    mtext, _ = tasks.clean_text(mtext)
    fill = [gr.update(value=dict(tasks.fill_mask(stack, mtext, adapter)), label=f"fill-mask, {name}")
            for adapter, name in ((a, a), (weights, "merged"), (b, b))]
    rows = analysis.weight_geometry(stack, a, b, shown_lam, merge=merge)
    return (head, *labels, *spans, *fill, plots.geometry_figure(rows, a, b, shown_lam),
            plots.hidden_shift_figure(shift, a, shown_lam))


@guarded
def on_compare(stack: LanguageStack, target: str, source: str, lam: float, text: str,
               mask_text: str, method: str = "linear", weights_text: str = "", density: float = 0.5,
               seed: int = 0, extrapolate: bool = False, task_name: str | None = None,
               lam_layers: str = "", lam_inv: float | None = None, typology_set: str | None = None,
               typology_k: float | None = None, typology_t: float | None = None,
               progress=gr.Progress(track_tqdm=True)):
    """The merge (linear by default, or any method of the panel) beside A and B alone: task
    predictions (labels or spans), fill-mask, the weight and hidden-state plots. (A hub profile
    downloads a language's adapter the first time it is picked: its tqdm bar shows here.)"""
    return _compare(stack, target, source, lam, text, mask_text, method, weights_text, density,
                    seed, extrapolate, task_name, full=True, lam_layers=lam_layers, lam_inv=lam_inv,
                    typology=(typology_set, typology_k, typology_t))


@guarded
def on_drag(stack: LanguageStack, target: str, source: str, lam: float, text: str, mask_text: str,
            method: str = "linear", weights_text: str = "", density: float = 0.5, seed: int = 0,
            extrapolate: bool = False, task_name: str | None = None, lam_layers: str = "",
            lam_inv: float | None = None, typology_set: str | None = None,
            typology_k: float | None = None, typology_t: float | None = None):
    """While the slider is dragged: the formula and the three predictions only (A's and B's are
    cached, so one forward); fill-mask and the plots follow on release."""
    return _compare(stack, target, source, lam, text, mask_text, method, weights_text, density,
                    seed, extrapolate, task_name, full=False, lam_layers=lam_layers, lam_inv=lam_inv,
                    typology=(typology_set, typology_k, typology_t))


@guarded
def on_flips(stack: LanguageStack, target: str, source: str, lam: float, task_name: str | None = None):
    """Where the merge matters at this λ: counts of items the merge fixes and breaks against A and
    against B, and the items whose prediction differs between A, the merge and B."""
    empty = gr.update(value=[], headers=FLIP_COLUMNS)
    if task_kind(stack, task_name) == "tagging":
        return _tagging_flips(stack, target, source, lam, task_name)
    if task_kind(stack, task_name) != "classification":
        return "No labelled eval set in this profile (see the λ sweep tab).", empty
    try:
        f = results.flips(stack, target, source, lam, "dev")
    except InputError as e:
        return f"*{e}*", empty
    shown = f"λ = {f['lam']:g}" + ("" if abs(f["lam"] - lam) < 1e-9 else
                                   f" (the precomputed grid's nearest point to {lam:.2f})")
    md = (f"On the **{f['n']} {target} dev items** at {shown}: the merge gets "
          f"**{f['fixed_vs_a']}** right that A = {f['a']} alone gets wrong and **{f['broken_vs_a']}** "
          f"the reverse (net {f['fixed_vs_a'] - f['broken_vs_a']:+d}); against B = {f['b']}: "
          f"**{f['fixed_vs_b']}** fixed, **{f['broken_vs_b']}** broken "
          f"(net {f['fixed_vs_b'] - f['broken_vs_b']:+d}). {f['n_differ']} items get different labels "
          f"from A, the merge and B; {len(f['rows'])} are listed, the merge's wins first. "
          "Pick a row to try its text.")
    return md, gr.update(value=[[r[c] for c in FLIP_COLUMNS] for r in f["rows"]], headers=FLIP_COLUMNS)


def _tagging_flips(stack, target, source, lam, task_name):
    from . import ner

    empty = gr.update(value=[], headers=FLIP_COLUMNS)
    try:
        rows = ner.flips(stack, target, lam, task_name, limit=50)
    except InputError as e:
        return f"*{e}*", empty
    table = [[_spans_of(r["words"], r["gold"]),
              *(_spans_of(r["words"], r["tags"][w]) for w in ("A", "merged", "B")),
              " ".join(r["words"])[:140]] for r in rows]
    md = (f"{len(rows)} {target} test sentences whose spans differ between A, the merge at "
          f"λ = {round(lam, 1):g} and B, the merge's biggest wins over A first. Pick a row to try it.")
    return md, gr.update(value=table, headers=FLIP_COLUMNS)


def _spans_of(words: list[str], tags: list[str]) -> str:
    """BIO tags as ``TYPE: words; ...`` (a cell of the flips table)."""
    spans, cur = [], None
    for w, t in zip(words, tags):
        if t.startswith("B-") or (t.startswith("I-") and (cur is None or cur[0] != t[2:])):
            cur = [t[2:], [w]]
            spans.append(cur)
        elif t.startswith("I-"):
            cur[1].append(w)
        else:
            cur = None
    return "; ".join(f"{k}: {' '.join(ws)}" for k, ws in spans) or "—"


@guarded
def on_pick_flip(stack: LanguageStack, target: str, source: str, lam: float,
                 task_name: str | None, evt: gr.SelectData):
    """A picked row of the flips table: its full text (the table shows it cut short) into the
    text box, with a fill-mask probe."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if task_kind(stack, task_name) == "tagging":
        from . import ner

        rows = ner.flips(stack, target, lam, task_name, limit=50)
        full = " ".join(rows[row]["words"]) if row is not None and row < len(rows) else None
    else:
        f = results.flips(stack, target, source, lam, "dev")
        full = f["texts"][f["rows"][row]["key"]] if row is not None and row < len(f["rows"]) else None
    if full is None:
        return gr.update(), gr.update()
    return full, tasks.mask_a_word(full, stack.tokenizer.mask_token)


@guarded
def on_mlm_heldout(stack: LanguageStack, target: str, source: str, lam: float):
    """The precomputed masked-LM curve of held-out target-language text, shown at once."""
    b = source or tasks.suggested_source(stack, target)
    curve = results.mlm_summary(stack, target, b)
    if curve is None:
        return None, (f"No precomputed masked-LM curve for {target} with B = {b}; "
                      "the live curve for the text in the box is beside it.")
    h = curve["halves"]
    s = h["second"]
    best = min(s["a"], s["b"])
    verdict = ("lower than both single adapters" if s["merged"] < best else
               "not lower than the better single adapter")
    md = (f"Held-out {target} text ({curve['n_texts']} paragraphs no adapter was trained on, "
          f"{curve['n_tokens']} masked tokens). λ chosen on the first half: **{h['best_lam_first']:g}**; "
          f"on the second half ({s['n_tokens']} tokens) the merge's loss is **{s['merged']:.3f}** vs "
          f"A = {curve['a']} {s['a']:.3f} and B = {curve['b']} {s['b']:.3f}: {verdict} "
          f"({s['merged'] - best:+.3f}).")
    return plots.mlm_figure(curve, f"Masked-LM loss of held-out {target} text over λ", lam), md


@guarded
def on_mlm_live(stack: LanguageStack, target: str, source: str, lam: float, text: str,
                progress=gr.Progress()):
    """The masked-LM loss of the text in the box at 5 λ values and the current one (A and B
    alone are cached per text, so a new λ costs one scoring pass)."""
    texts, _ = tasks.mlm_text(text)
    a, b = tasks.merge_pair(stack, target, source)
    lam = tasks.check_lambda(lam)
    grid = sorted({*tasks.MLM_LIVE_LAMBDAS, round(lam, 6)})
    progress(0, desc="masked-LM loss over λ")
    curve = tasks.mlm_curve(stack, texts, a, b, grid,
                            progress=lambda i, n, m: progress(i / n, desc=m))
    loss = {p["lam"]: p["loss"] for p in curve["points"]}
    md = (f"Masked-LM loss of this text ({curve['n_tokens']} tokens, every 5th masked in turn): "
          f"A = {a} **{loss[1.0]:.3f}** · merged (λ = {lam:.2f}) **{loss[round(lam, 6)]:.3f}** · "
          f"B = {b} **{loss[0.0]:.3f}** (lower: the stack predicts the text's own words better).")
    return plots.mlm_figure(curve, f"Masked-LM loss of this text over λ", lam), md


@guarded
def on_mlm_ensemble(stack: LanguageStack, target: str, source: str, lam: float, text: str):
    """Masked-LM loss of the text over λ: weight merge vs output ensemble (mixed distributions)."""
    texts, _ = tasks.mlm_text(text)
    a, b = tasks.merge_pair(stack, target, source)
    lam = tasks.check_lambda(lam)
    grid = sorted({*tasks.MLM_LIVE_LAMBDAS, round(lam, 6)})
    merge = tasks.mlm_curve(stack, texts, a, b, grid)
    ens = tasks.ensemble_mlm_curve(stack, texts, a, b, grid)
    at = {p["lam"]: p["loss"] for p in ens["points"]}[round(lam, 6)]
    mt = {p["lam"]: p["loss"] for p in merge["points"]}[round(lam, 6)]
    md = (f"At λ = {lam:.2f}: weight merge **{mt:.3f}**, output ensemble **{at:.3f}** "
          f"(equal at λ = 0 and 1, where both are one adapter).")
    return plots.merge_vs_ensemble_mlm_figure(merge, ens, "Masked-LM loss of this text: merge vs "
                                              "ensemble", lam), md


@guarded
def on_ensemble_sweep(stack: LanguageStack, target: str, source: str, task_name: str | None = None,
                      progress=gr.Progress()):
    """The output ensemble over λ on the eval set, with the same intervals as the merge's sweep."""
    if task_kind(stack, task_name) != "classification":
        raise InputError("the output-ensemble sweep needs a classification task with eval sets")
    progress(0, desc="A's and B's stacks on the eval set")
    c = tasks.ensemble_sweep(stack, target, source, task=task_name,
                             progress=lambda i, n, m: progress(i / n, desc=m))
    return (plots.sweep_figure(c, f"{target}: output ensemble λ·p(A) + (1−λ)·p(B), computed here "
                               f"(n = {c['n_dev']} dev, {c['n_test']} test)"), sweep_summary(c))


def _sweep_results_for_profile(stack: LanguageStack, target: str) -> dict | None:
    """A hub profile's ``reproduce`` results for a target, when that command has run."""
    from . import reproduce

    res = reproduce.find_results(stack.bundle.name, os.environ.get("LANGARITH_RESULTS"))
    if not res:
        return None
    for setting in ("zero_shot", "enhancement"):
        c = res.get("full", {}).get(setting, {}).get(target)
        if c:
            return c
    return None


@guarded
def on_sweep_tab(stack: LanguageStack, target: str, source: str, task_name: str | None = None):
    """The precomputed sweep, with a 95 % interval at each λ and the gains in words."""
    kind = task_kind(stack, task_name)
    if kind == "classification":
        curve = results.sweep_summary(stack, target, source)
        if curve:
            return plots.sweep_figure(curve, f"{target}: precomputed by the build on the shipped eval "
                                      f"set (n = {curve['n_dev']} dev, {curve['n_test']} test)"), \
                sweep_summary(curve)
        return None, "No precomputed curve for this pair: press **Run sweep**."
    if kind == "tagging" and not stack.bundle.manifest.get("lazy_languages"):
        from . import ner

        pre = ner.precomputed(stack, task_name)
        for group in results.SETTINGS:
            c = (pre or {}).get(group, {}).get(target)
            if c and c["b"] == source:
                return plots.sweep_figure(c, f"{target}: span F1, precomputed (n = {c['n_dev']} dev, "
                                          f"{c['n_test']} test sentences)"), sweep_summary(c)
        return None, "No precomputed span-F1 curve for this pair: press **Run sweep**."
    if stack.bundle.manifest.get("lazy_languages"):  # a hub profile: the reproduce command's results
        c = _sweep_results_for_profile(stack, target)
        if c:
            return plots.sweep_figure(c, f"{target}: reproduce results"), sweep_summary(c)
        return None, (f"No results for {target} yet. On a machine with the Hub (a GPU helps), run "
                      f"`python -m langarith reproduce --profile {stack.bundle.name} --targets {target}` "
                      "and start the app with `LANGARITH_RESULTS` pointing at its output folder.")
    return None, "This profile has no labelled eval set."


def _ci_words(g: dict, unit: str = "points", digits: int = 1) -> str:
    lo, hi = g["ci95"]
    verdict = "clear" if lo > 0 or hi < 0 else "inside its interval"
    return f"**{g['points']:+.{digits}f}** {unit} [{lo:+.{digits}f}, {hi:+.{digits}f}] ({verdict})"


def measured_note(stack: LanguageStack, target: str) -> str:
    """What the bundle measured beyond the single-λ merge for this target, in words with 95 %
    intervals: per-layer gradients, the output ensemble, the typology-weighted merge."""
    lines = []
    be = (results.measured(stack, "beyond") or {}).get(target)
    if be:
        g = be["best_gradient"]
        lines.append(f"- **Per-layer λ** (gradient {g[0]:g} → {g[-1]:g} chosen on dev) − single λ "
                     f"({be['best_lam']:g}): {_ci_words(be['gradient_vs_single'])} on test "
                     f"(n = {be['n_test']}).")
        lines.append(f"- **Output ensemble** (λ = {be['best_ensemble_lam']:g}) − weight merge: "
                     f"{_ci_words(be['ensemble_vs_merge'])}; it runs the encoder twice.")
        m = be.get("mlm") or {}
        if "ensemble_vs_merge" in m:
            lines.append(f"- Held-out masked LM, loss drop of the ensemble over the merge: "
                         f"{_ci_words(m['ensemble_vs_merge'], 'nats/token', 3)} (negative: the "
                         "weight merge models the text better).")
    ty = ((results.measured(stack, "typology") or {}).get("targets") or {}).get(target)
    if ty:
        w = ", ".join(f"{c} {x:.2f}" for c, x in ty["weights"].items())
        lines.append(f"- **Typology merge** (k = {ty['k']}, T = {ty['temperature']:g}: {w}) − two-way "
                     f"merge: {_ci_words(ty['typology_minus_two_way'])} on test (n = {ty['n_test']}).")
    if not lines:
        return ""
    return "**Measured by the bundle for this target** (chosen on dev, reported on test):\n\n" + \
        "\n".join(lines)


@guarded
def on_measured(stack: LanguageStack, target: str):
    """The measured comparisons for the target, and the low-resource plot (gain vs data)."""
    low = results.measured(stack, "lowres")
    fig = plots.lowres_figure(low) if low and low.get("languages") else None
    note = ""
    if low:
        shipped = ", ".join(low.get("shipped", [])) or "none"
        note = ("**Under-trained adapters:** each point is a language adapter trained on that many "
                "tokens of its own text (A), merged with a related full adapter (B); the y axis is the "
                "merge's gain over the better of the two, with 95 % intervals (0 = no gain). "
                f"Selectable as targets on this page: {shipped}.")
    return measured_note(stack, target), fig, note


@guarded
def on_run_sweep(stack: LanguageStack, target: str, source: str, task_name: str | None = None,
                 progress=gr.Progress()):
    """Evaluate the merge over 11 λ on the target's eval set (dev chooses λ, test reports)."""
    progress(0, desc="λ sweep")
    report = lambda i, n, m: progress(i / n, desc=m)  # noqa: E731
    if task_kind(stack, task_name) == "tagging":
        from . import ner

        s = ner.tagging_sweep(stack, target, source, task=task_name, use_precomputed=False,
                              progress=report)
    else:
        s = tasks.sweep(stack, target, source, task=task_name, progress=report)
    return plots.sweep_figure(s, f"{target}: computed now (n = {s['n_dev']} dev, "
                              f"{s['n_test']} test)"), sweep_summary(s)


@functools.lru_cache(maxsize=4)
def _similarity(stack: LanguageStack) -> dict:
    return analysis.similarity(stack)  # adapters never change: once per stack


@guarded
def on_similarity(stack: LanguageStack, row: str):
    sim = _similarity(stack)
    matrix = sim["overall"] if row == "all layers" else sim["per_row"][row]
    rel = "relative to the shared init" if sim["relative_to_init"] else "raw weights"
    fig = plots.similarity_figure(sim["languages"], matrix,
                                  f"cos between language vectors ({rel}), {row}")
    res = results.bundle_results(stack)
    sweeps = {**res.get("zero_shot", {}), **res.get("enhancement", {})}
    scatter = plots.gain_figure(analysis.similarity_vs_gain(stack, sweeps, sim)) if sweeps else None
    return fig, scatter


@guarded
def on_rank(stack: LanguageStack, target: str, progress=gr.Progress()):
    progress(0, desc="scoring source languages")
    ranking = analysis.rank_sources(stack, target, _similarity(stack))
    lines = [f"| {i + 1} | {r['language']} | {r['score']:.3f} |" for i, r in enumerate(ranking)]
    measure = ranking[0]["measure"] if ranking else ""
    return (f"Sources for **{target}**, most similar first ({measure}); suggested: "
            f"**{ranking[0]['language']}**\n\n| rank | language | score |\n|---|---|---|\n"
            + "\n".join(lines)), gr.update(value=ranking[0]["language"])


@guarded
def on_export(stack: LanguageStack, target, source, lam, method, weights_text, density, seed,
              extrapolate, lam_layers="", lam_inv=None, typology_set=None, typology_k=None,
              typology_t=None):
    recipe = make_recipe(target, source, lam, method, weights_text, density, seed, extrapolate,
                         lam_layers, lam_inv, typology_set, typology_k, typology_t)
    out = Path(tempfile.mkdtemp(prefix="langarith-export-"))
    info = share.export(stack, recipe, out)
    link = share.to_query(recipe)
    return info["zip"], info["recipe"], f"Exported `{info['formula']}`. Link to this view: `{link}`"


@guarded
def on_load_recipe(stack: LanguageStack, file):
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
            ", ".join(f"{t:g}" for t in r.lam_layers or ()),
            r.lam if r.lam_inv is None else r.lam_inv,
            f"Loaded recipe for **{r.target}** ({method}).")


@guarded
def on_qa(stack: LanguageStack, target: str, source: str, lam: float, question: str, context: str):
    """Extractive QA (profiles with an ``extractive_qa`` task): A's, the merge's and B's answers."""
    from . import qa

    qa_task = next(t for t in stack.bundle.tasks.values() if t.kind == "extractive_qa")
    cmp = qa.compare_qa(stack, question, context, target, source, lam, qa_task.name)
    names = {"A": f"A = {cmp.a} alone", "merged": f"merged (λ = {cmp.lam:.2f})",
             "B": f"B = {cmp.b} alone"}
    return (f"### `{cmp.formula}`" + (f"\n\n*{cmp.notice}*" if cmp.notice else ""),
            *(gr.update(value=cmp.answers[w]["text"],
                        label=f"{names[w]} · p = {cmp.answers[w]['score']:.3f}")
              for w in ("A", "merged", "B")))


def on_url(stack: LanguageStack, request: gr.Request):
    """``?target=pt&source=es&lam=0.7`` restores a view (``&lam_layers=0.2,0.8&lam_inv=0.5`` the
    per-layer method with its anchors); a bad link says why and is ignored."""
    params = dict(request.query_params) if request else {}
    keep = (gr.update(),) * 6
    if "target" not in params:
        return (*keep, "")
    try:
        r = share.from_query(params)
        stack.bundle.language(r.target)
        if r.source and not stack.bundle.language(r.source).has_adapter:
            raise InputError(f"{r.source} has no adapter")
        layered = r.method == "layer_gradient"
        if layered:
            from .arithmetic import layer_lambdas

            layer_lambdas(r.lam_layers, stack.n_layers)  # bad anchors: refused here, with the reason
        return (r.target, r.source or gr.update(), r.lam,
                "layer_gradient" if layered else gr.update(),
                ", ".join(f"{t:g}" for t in r.lam_layers) if layered else gr.update(),
                r.lam_inv if layered and r.lam_inv is not None else gr.update(),
                f"Restored from the link: {r.target}.")
    except BAD_INPUT as e:
        gr.Warning(f"ignored the link's parameters: {e}")
        return (*keep, f"Link ignored: {e}")


def lam_range(extrapolate: bool):
    """Extrapolation widens the slider to [-1, 2]."""
    return gr.update(minimum=-1 if extrapolate else 0, maximum=2 if extrapolate else 1)


# --- the page -----------------------------------------------------------------------------------


def bind(fn, stack: LanguageStack):
    """``fn(stack, ...)`` as an event handler of the other inputs. A real function with the
    signature minus ``stack``: Gradio reads it for gr.Progress, gr.Request and gr.SelectData."""
    @functools.wraps(fn)
    def handler(*args, **kwargs):
        return fn(stack, *args, **kwargs)

    sig = inspect.signature(fn)
    handler.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    return handler


def build_demo(stack: LanguageStack) -> gr.Blocks:
    bundle = stack.bundle
    on = {name: bind(fn, stack) for name, fn in (
        ("target", on_target), ("compare", on_compare), ("drag", on_drag), ("flips", on_flips),
        ("pick_flip", on_pick_flip), ("mlm_heldout", on_mlm_heldout),
        ("mlm_live", on_mlm_live), ("sweep_tab", on_sweep_tab), ("run_sweep", on_run_sweep),
        ("similarity", on_similarity), ("rank", on_rank), ("export", on_export),
        ("load_recipe", on_load_recipe), ("qa", on_qa), ("url", on_url),
        ("layer_plot", on_layer_plot), ("mlm_ensemble", on_mlm_ensemble),
        ("ensemble_sweep", on_ensemble_sweep), ("measured", on_measured))}
    mask = stack.tokenizer.mask_token
    targets = [c for c in bundle.languages if not bundle.languages[c].has_adapter] + \
        [c for c in bundle.languages if bundle.languages[c].has_adapter]
    first = targets[0]
    first_text = (bundle.languages[first].examples or (FALLBACK_TEXT,))[0]
    tasks_shown = task_choices(stack)
    first_task = tasks_shown[0][1] if tasks_shown else None
    has_qa = any(t.kind == "extractive_qa" for t in bundle.tasks.values())
    sim_rows = ["all layers"] + list(_similarity(stack)["per_row"])

    # analytics_enabled=False: no version check / telemetry thread even without app.py's env setting
    with gr.Blocks(title="langarith: language arithmetic", analytics_enabled=False) as demo:
        gr.Markdown("# langarith: language arithmetic for MAD-X adapters")
        gr.Markdown(INTRO)
        gr.Markdown(f"Bundle: **{bundle.name}** · device: `{stack.device}`", elem_id="bundle-info")
        with gr.Row():
            target = gr.Dropdown(language_choices(stack), value=first, label="Target language",
                                 elem_id="target")
            source = gr.Dropdown(language_choices(stack, with_adapter_only=True),
                                 value=tasks.suggested_source(stack, first),
                                 label="Source language B (related, with an adapter)", elem_id="source")
            lam = gr.Slider(0, 1, value=0.5, step=0.05, label="λ (weight of A)", elem_id="lam")
        task = gr.Radio(tasks_shown, value=first_task, label="Task", elem_id="task",
                        visible=len(tasks_shown) > 1)
        setting = gr.Markdown(elem_id="setting")
        premise = gr.Markdown(premise_note(stack, first_task), elem_id="premise")
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
                    with gr.Row():  # per-layer λ: anchors from the bottom layer to the top
                        lam_layers = gr.Textbox("", label=f"per-layer λ anchors, bottom → top "
                                                f"({stack.n_layers} layers; Enter to apply)",
                                                placeholder="0.2, 0.5, 0.8", elem_id="lam-layers")
                        lam_inv = gr.Slider(0, 1, value=0.5, step=0.05, label="λ_inv (invertible "
                                            "adapter, per-layer λ)", elem_id="lam-inv")
                        layer_plot = gr.Plot(label="λ per layer", elem_id="layer-plot")
                    typology_in = ui_typology.fill_panel(stack, target, method, weights_text)
                with gr.Row():
                    with gr.Column(scale=3):
                        text = gr.Textbox(value=first_text, label="Text — Shift+Enter to run", lines=3,
                                          elem_id="text")
                        mask_text = gr.Textbox(value=tasks.mask_a_word(first_text, mask),
                                               label=f"Fill-mask probe (uses {mask})",
                                               elem_id="mask-text")
                    example = gr.Dropdown(list(bundle.languages[first].examples), value=first_text or None,
                                          label="Examples in the target language", scale=2,
                                          elem_id="example")
                head = gr.Markdown(elem_id="formula")
                # Both kinds of prediction are rendered when the bundle has the task: the first
                # comparison hides the other kind (a component first rendered hidden did not
                # reliably come back in Gradio 6.17 when the task picker switched).
                kinds = {t.kind for t in bundle.tasks.values()}
                with gr.Row():
                    labels = [gr.Label(label=f"{w} alone" if w != "merged" else w, num_top_classes=3,
                                       elem_id=f"pred-{w.lower()}", visible="classification" in kinds
                                       or not kinds) for w in ("A", "merged", "B")]
                with gr.Row():  # entities, with the spans the merge changed marked
                    spans = [gr.HighlightedText(label=f"{w} alone" if w != "merged" else w,
                                                elem_id=f"spans-{w.lower()}", combine_adjacent=True,
                                                visible="tagging" in kinds) for w in ("A", "merged", "B")]
                with gr.Row():
                    fills = [gr.Label(label=f"fill-mask, {w}", num_top_classes=5, elem_id=f"fill-{e}")
                             for w, e in (("A", "a"), ("merged", "merged"), ("B", "b"))]
                mlm_live_note = gr.Markdown(elem_id="mlm-live-note")
                gr.Markdown("### Where the merge matters")
                flips_note = gr.Markdown(elem_id="flips-note")
                flips_table = gr.Dataframe(headers=FLIP_COLUMNS, interactive=False, wrap=True,
                                           max_height=320, elem_id="flips")
                gr.Markdown("### How well the merge models the language (masked-LM loss, no labels)")
                with gr.Row():
                    mlm_heldout = gr.Plot(label="held-out text", elem_id="mlm-heldout")
                    mlm_live = gr.Plot(label="this text", elem_id="mlm-live")
                mlm_heldout_note = gr.Markdown(elem_id="mlm-heldout-note")
                mlm_ens_run = gr.Button("Masked-LM loss of this text: weight merge vs output ensemble",
                                        elem_id="mlm-ensemble-run")
                mlm_ens = gr.Plot(label="merge vs ensemble", elem_id="mlm-ensemble")
                mlm_ens_note = gr.Markdown(elem_id="mlm-ensemble-note")
                geometry = gr.Plot(label="Per-layer weights", elem_id="geometry")
                hidden = gr.Plot(label="Per-layer hidden states", elem_id="hidden")
                linear_api = gr.Button(visible=False)

            if has_qa:  # e.g. xlmr: M2QA, Stack(language or merged, domain, qa)
                with gr.Tab("Question answering", id="qa"):
                    gr.Markdown("Extractive QA: the answer span in the context under A alone, the "
                                "merge at the current λ, and B alone (\"no answer\" when the null "
                                "score wins, as in SQuAD 2.0).")
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
                gr.Markdown("The task metric of the merged stack over λ on the target's labelled eval "
                            "set, with a 95 % bootstrap interval at each λ; λ is chosen on dev and "
                            "reported on test, both single adapters as lines. The bundle's "
                            "precomputed curve (the same items as the README's tables) shows at once.")
                run_sweep = gr.Button("Run sweep on this machine (11 points)", elem_id="run-sweep")
                run_ens_sweep = gr.Button("Run the output-ensemble sweep (two passes per item)",
                                          elem_id="run-ensemble-sweep")
                sweep_plot = gr.Plot(elem_id="sweep-plot")
                sweep_note = gr.Markdown(elem_id="sweep-note")
                measured = gr.Markdown(elem_id="measured-note")
                lowres_note = gr.Markdown(elem_id="lowres-note")
                lowres_plot = gr.Plot(elem_id="lowres-plot")

            with gr.Tab("Similarity", id="similarity") as sim_tab:
                gr.Markdown("Cosine similarity between language vectors τ = θ − init of every pair of "
                            "adapters; rank the sources for the current target.")
                with gr.Row():
                    sim_row = gr.Dropdown(sim_rows, value="all layers", label="Layer", elem_id="sim-row")
                    rank = gr.Button("Rank sources for the target", elem_id="rank")
                sim_plot = gr.Plot(elem_id="sim-plot")
                rank_note = gr.Markdown(elem_id="rank-note")
                gain_plot = gr.Plot(elem_id="gain-plot")
                ui_typology.similarity_panel(stack, target, sim_tab)

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

        # --- events ---------------------------------------------------------------------------
        pair = [target, source, lam]
        method_inputs = [method, weights_text, density, seed, extrapolate]
        compare_in = [*pair, text, mask_text, *method_inputs, task, lam_layers, lam_inv, *typology_in]
        compare_out = [head, *labels, *spans, *fills, geometry, hidden]
        flips_io = dict(fn=on["flips"], inputs=[*pair, task], outputs=[flips_note, flips_table])
        live_io = dict(fn=on["mlm_live"], inputs=[*pair, text], outputs=[mlm_live, mlm_live_note])
        heldout_io = dict(fn=on["mlm_heldout"], inputs=pair, outputs=[mlm_heldout, mlm_heldout_note])
        sweep_io = dict(fn=on["sweep_tab"], inputs=[target, source, task], outputs=[sweep_plot, sweep_note])
        measured_io = dict(fn=on["measured"], inputs=target, outputs=[measured, lowres_plot, lowres_note])
        target_io = dict(fn=on["target"], inputs=[target, source, link_note],
                         outputs=[source, example, text, mask_text, setting])
        # Events that only serve the page itself are "private"; the rest are API endpoints.
        private = dict(api_visibility="private")
        run = dict(fn=on["compare"], inputs=compare_in, outputs=compare_out, api_name="refresh", **private)

        def everything(event):
            """After a new pair or text: predictions, then flips and both masked-LM views."""
            event.then(**run).then(**flips_io, **private).then(**live_io, **private) \
                .then(**heldout_io, **private)

        everything(target.change(**target_io, api_name="set_target"))
        target.change(**sweep_io, api_name="sweep_tab", **private)
        target.change(**measured_io, api_name="measured", **private)
        target.input(lambda: "", None, link_note, api_name="clear_link", **private)
        everything(source.input(lambda: None, None, None, api_name="source_changed", **private))
        source.input(**sweep_io, api_name="sweep_tab", **private)
        task.change(lambda t: premise_note(stack, t), task, premise, api_name="task_note", **private)
        everything(task.change(**target_io, api_name="task_target", **private))
        task.change(**sweep_io, api_name="sweep_tab", **private)
        # The slider: predictions and flips follow it while dragging (only the latest pending
        # update runs: no queue of stale work); the masked-LM views on release.
        quiet = dict(trigger_mode="always_last", show_progress="hidden")
        lam.input(on["drag"], compare_in, compare_out[:7], api_name="compare_drag", **quiet,
                  **private).then(**flips_io, api_name="flips_drag", **private)
        lam.release(on["compare"], compare_in, compare_out, api_name="compare_recipe", **quiet) \
            .then(**flips_io, api_name="flips") \
            .then(**live_io, api_name="mlm_live") \
            .then(**heldout_io, api_name="mlm_heldout", **private)
        linear_api.click(on["compare"], compare_in[:5], compare_out, api_name="compare")
        for comp in (method, extrapolate):
            comp.change(lam_range, extrapolate, lam, api_name="lam_range", **private).then(**run)
        density.release(**run)
        typology_in[0].change(**run)  # the typology method's feature set, k and T
        for comp in typology_in[1:]:
            comp.release(**run)
        layer_in = [lam, lam_layers, lam_inv, extrapolate]
        lam_layers.submit(on["layer_plot"], layer_in, layer_plot, api_name="layer_plot").then(**run)
        lam_inv.release(on["layer_plot"], layer_in, layer_plot, api_name="layer_plot_inv",
                        **private).then(**run)
        mlm_ens_run.click(on["mlm_ensemble"], [*pair, text], [mlm_ens, mlm_ens_note],
                          api_name="mlm_ensemble")
        run_ens_sweep.click(on["ensemble_sweep"], [target, source, task], [sweep_plot, sweep_note],
                            api_name="ensemble_sweep")
        weights_text.submit(**run)
        seed.submit(**run)
        everything(example.input(lambda t: (t, tasks.mask_a_word(t or "", mask)), example,
                                 [text, mask_text], api_name="pick_example", **private))
        everything(text.submit(lambda t: tasks.mask_a_word(t or "", mask), text, mask_text,
                               api_name="mask_probe", **private))
        mask_text.submit(**run)
        everything(flips_table.select(on["pick_flip"], [*pair, task], [text, mask_text],
                                      api_name="pick_flip", **private))
        if has_qa:
            qa_inputs, qa_out = [*pair, qa_question, qa_context], [qa_head, *qa_answers]
            qa_run.click(on["qa"], qa_inputs, qa_out, api_name="qa")
            qa_question.submit(on["qa"], qa_inputs, qa_out, api_name="qa_submit", **private)
        run_sweep.click(on["run_sweep"], [target, source, task], [sweep_plot, sweep_note],
                        api_name="sweep")
        sim_row.change(on["similarity"], sim_row, [sim_plot, gain_plot], api_name="similarity")
        rank.click(on["rank"], target, [rank_note, source], api_name="rank_sources")
        export.click(on["export"], [*pair, *method_inputs, lam_layers, lam_inv, *typology_in],
                     [zip_file, recipe_file, export_note],
                     api_name="export")
        upload.upload(on["load_recipe"], upload,
                      [target, source, lam, method, weights_text, density, seed, extrapolate,
                       lam_layers, lam_inv, load_note],
                      api_name="load_recipe").then(**run)

        load = demo.load(on["url"], None, [target, source, lam, method, lam_layers, lam_inv, link_note],
                         api_name="from_link", **private)
        everything(load.then(**target_io, api_name="target_on_load", **private))
        # Plots in a tab draw when the tab is shown (filled while hidden, they stayed "pending").
        sweep_tab.select(**sweep_io, api_name="sweep_tab", **private)
        sweep_tab.select(**measured_io, api_name="measured_tab", **private)
        sim_tab.select(on["similarity"], sim_row, [sim_plot, gain_plot], api_name="similarity_tab",
                       **private)
    return demo
