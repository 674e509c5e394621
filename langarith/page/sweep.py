"""The λ sweep tab: the task metric over λ on the target's labelled eval set, dev and test, with a
95 % bootstrap interval at each λ and the gains in words — the bundle's precomputed curve at
once, *Run sweep* to recompute here — and what the bundle measured beyond one λ."""

from __future__ import annotations

import os

import gradio as gr

from .. import plots, results, tasks
from ..loading import InputError
from ..model import LanguageStack
from .common import (Controls, ci_words, event, gain_line, guarded, model_handler, page_kind, page_task,
                     served_stack)

SWEEP_POINTS = 11
ITEMS_PER_GPU_SECOND = 200  # a conservative rate for short items on a shared GPU


def _sweep_seconds(passes: int):
    """A sweep's GPU time from its inputs: every eval item at every λ, ``passes`` encoder runs."""
    def seconds(target, source, task_name=None, *_, **__):
        try:
            n = sum(len(tasks.load_eval(served_stack(), target, task_name, s)) for s in ("dev", "test"))
        except Exception:  # noqa: BLE001 - an estimate only; the handler reports real errors
            n = 1000
        return int(min(300, 15 + passes * SWEEP_POINTS * n / ITEMS_PER_GPU_SECOND))
    return seconds


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


def _profile_results(stack: LanguageStack, target: str) -> dict | None:
    """A hub profile's ``reproduce`` results for a target, when that command has run."""
    from .. import reproduce

    res = reproduce.find_results(stack.bundle.name, os.environ.get("LANGARITH_RESULTS"))
    if not res:
        return None
    for setting in ("zero_shot", "enhancement"):
        c = res.get("full", {}).get(setting, {}).get(target)
        if c:
            return c
    return None


def _reproduced(stack, target, source, task_name):
    c = _profile_results(stack, target)
    if c:
        return plots.sweep_figure(c, f"{target}: reproduce results"), sweep_summary(c)
    return None, (f"No results for {target} yet. On a machine with the Hub (a GPU helps), run "
                  f"`python -m langarith reproduce --profile {stack.bundle.name} --targets {target}` "
                  "and start the app with `LANGARITH_RESULTS` pointing at its output folder.")


@guarded
def on_sweep_tab(stack: LanguageStack, target: str, source: str, task_name: str | None = None):
    """The precomputed sweep, with a 95 % interval at each λ and the gains in words (a hub
    profile: the reproduce command's results)."""
    kind = page_kind(stack, task_name)
    if kind is None or kind.sweep is None:
        return None, "This profile has no labelled eval set."
    a, b = tasks.merge_pair(stack, target, source)
    curve = kind.shipped_sweep(stack, target, a, b, page_task(stack, task_name))
    if curve:
        metric = "span F1" if plots.metric_of(curve) == "f1" else plots.metric_of(curve)
        return plots.sweep_figure(curve, f"{target}: {metric}, precomputed by the build (n = "
                                  f"{curve['n_dev']} dev, {curve['n_test']} test)"), sweep_summary(curve)
    if stack.bundle.manifest.get("lazy_languages"):
        return _reproduced(stack, target, source, task_name)
    return None, "No precomputed curve for this pair: press **Run sweep**."


@model_handler(duration=_sweep_seconds(passes=1))
@guarded
def on_run_sweep(stack: LanguageStack, target: str, source: str, task_name: str | None = None,
                 progress=gr.Progress()):
    """Evaluate the merge over 11 λ on the target's eval set (dev chooses λ, test reports)."""
    progress(0, desc="λ sweep")
    report = lambda i, n, m: progress(i / n, desc=m)  # noqa: E731
    kind = page_kind(stack, task_name)
    if kind is None:
        raise InputError("this profile has no labelled eval set to sweep")
    s = kind.run_sweep(stack, target, tasks.merge_pair(stack, target, source)[1], tasks.DEFAULT_LAMBDAS,
                       page_task(stack, task_name), report, recompute=True)
    return plots.sweep_figure(s, f"{target}: computed now (n = {s['n_dev']} dev, "
                              f"{s['n_test']} test)"), sweep_summary(s)


@model_handler(duration=_sweep_seconds(passes=2))
@guarded
def on_ensemble_sweep(stack: LanguageStack, target: str, source: str, task_name: str | None = None,
                      progress=gr.Progress()):
    """The output ensemble over λ on the eval set, with the same intervals as the merge's sweep."""
    kind = page_kind(stack, task_name)
    if kind is None or not kind.all_methods:  # the ensemble mixes label probabilities
        raise InputError("the output-ensemble sweep needs a classification task with eval sets")
    progress(0, desc="A's and B's stacks on the eval set")
    c = tasks.ensemble_sweep(stack, target, source, task=task_name,
                             progress=lambda i, n, m: progress(i / n, desc=m))
    return (plots.sweep_figure(c, f"{target}: output ensemble λ·p(A) + (1−λ)·p(B), computed here "
                               f"(n = {c['n_dev']} dev, {c['n_test']} test)"), sweep_summary(c))


def measured_note(stack: LanguageStack, target: str) -> str:
    """What the bundle measured beyond the single-λ merge for this target, in words with 95 %
    intervals: per-layer gradients, the output ensemble, the typology-weighted merge."""
    lines = []
    be = (results.measured(stack, "beyond") or {}).get(target)
    if be:
        g = be["best_gradient"]
        lines.append(f"- **Per-layer λ** (gradient {g[0]:g} → {g[-1]:g} chosen on dev) − single λ "
                     f"({be['best_lam']:g}): {ci_words(be['gradient_vs_single'])} on test "
                     f"(n = {be['n_test']}).")
        lines.append(f"- **Output ensemble** (λ = {be['best_ensemble_lam']:g}) − weight merge: "
                     f"{ci_words(be['ensemble_vs_merge'])}; it runs the encoder twice.")
        m = be.get("mlm") or {}
        if "ensemble_vs_merge" in m:
            lines.append(f"- Held-out masked LM, loss drop of the ensemble over the merge: "
                         f"{ci_words(m['ensemble_vs_merge'], 'nats/token', 3)} (negative: the "
                         "weight merge models the text better).")
    ty = ((results.measured(stack, "typology") or {}).get("targets") or {}).get(target)
    if ty:
        w = ", ".join(f"{c} {x:.2f}" for c, x in ty["weights"].items())
        lines.append(f"- **Typology merge** (k = {ty['k']}, T = {ty['temperature']:g}: {w}) − two-way "
                     f"merge: {ci_words(ty['typology_minus_two_way'])} on test (n = {ty['n_test']}).")
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
        note = ("**Low-resource adapters:** each point is a language adapter trained on that many "
                "tokens of its own text (A), merged with a related full adapter (B); the y axis is the "
                "merge's gain over the better of the two, with 95 % intervals (0 = no gain). Solid: "
                "trained to convergence on its little text (the paper's setting); dotted: little "
                "training (200 steps). "
                f"Selectable as targets on this page: {shipped}.")
    return measured_note(stack, target), fig, note


def layout() -> dict:
    gr.Markdown("The task metric of the merged stack over λ on the target's labelled eval "
                "set, with a 95 % bootstrap interval at each λ; λ is chosen on dev and "
                "reported on test, both single adapters as lines. The bundle's "
                "precomputed curve (the same items as the README's tables) shows at once.")
    run = gr.Button(f"Run sweep on this machine ({SWEEP_POINTS} points)", elem_id="run-sweep")
    run_ens = gr.Button("Run the output-ensemble sweep (two passes per item)",
                        elem_id="run-ensemble-sweep")
    plot = gr.Plot(elem_id="sweep-plot")
    note = gr.Markdown(elem_id="sweep-note")
    measured = gr.Markdown(elem_id="measured-note")
    lowres_note = gr.Markdown(elem_id="lowres-note")
    lowres_plot = gr.Plot(elem_id="lowres-plot")
    return dict(run=run, run_ens=run_ens, plot=plot, note=note, measured=measured,
                lowres_note=lowres_note, lowres_plot=lowres_plot)


def _shipped(stack: LanguageStack, c: Controls, p: dict) -> dict:
    return event(on_sweep_tab, [c.target, c.source, c.task], [p["plot"], p["note"]],
                 api_name="sweep_tab", api_visibility="private")


def _measured(stack: LanguageStack, c: Controls, p: dict) -> dict:
    return event(on_measured, c.target, [p["measured"], p["lowres_plot"], p["lowres_note"]],
                 api_visibility="private")


def shipped_events(stack: LanguageStack, c: Controls, p: dict) -> list[dict]:
    """After a new pair (once its source is set): the shipped curve and the measurements."""
    return [_shipped(stack, c, p), {**_measured(stack, c, p), "api_name": "measured"}]


def wire(stack: LanguageStack, c: Controls, p: dict, tab) -> None:
    # Plots in a tab draw when the tab is shown (filled while hidden, they stayed "pending").
    tab.select(**_shipped(stack, c, p))
    tab.select(**_measured(stack, c, p), api_name="measured_tab")
    sweep_in = [c.target, c.source, c.task]
    p["run"].click(**event(on_run_sweep, sweep_in, [p["plot"], p["note"]]), api_name="sweep")
    p["run_ens"].click(**event(on_ensemble_sweep, sweep_in, [p["plot"], p["note"]]),
                       api_name="ensemble_sweep")
