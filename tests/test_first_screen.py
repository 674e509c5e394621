"""Issue 20 at the handler level: the four defects a visitor hit, the tour, the held-out curve's
marker at the slider's λ."""

from __future__ import annotations

import types

import pytest

from langarith import plots, tasks


def _tagging_curve():
    pts = [{"lam": x, "dev": {"f1": 60 + 10 * x}, "test": {"f1": 55 + 10 * x}} for x in (0.0, 0.5, 1.0)]
    return {"a": "en", "b": "es", "points": pts, "best_lam": 0.5, "a_alone": 65.0, "b_alone": 55.0,
            "test_at_best": 60.0, "n_dev": 10, "n_test": 10,
            "bootstrap": {"test_ci95": [[50.0, 60.0], [55.0, 65.0], [60.0, 70.0]]},
            "own": 64.0, "own_label": "full nl adapter (test)"}


def test_span_f1_sweep_is_drawn_in_points_not_times_100():
    fig = plots.sweep_figure(_tagging_curve(), "spans")
    ys = [y for tr in fig.data for y in (tr.y or ())]
    assert max(ys) <= 100 and min(ys) >= 50  # F1 is already in points (the old plot: 5,500–6,500)
    topic = {**_tagging_curve(), "a_alone": {"accuracy": 0.65}}  # fractions: drawn × 100
    topic["points"] = [{"lam": p["lam"], "dev": {"accuracy": p["dev"]["f1"] / 100},
                        "test": {"accuracy": p["test"]["f1"] / 100}} for p in topic["points"]]
    assert max(topic["points"][-1]["test"].values()) < 1
    assert max(plots.sweep_figure(topic, "t").data[1].y) == pytest.approx(65.0)  # test, in points


def test_sweep_reference_lines_are_named_in_the_legend_not_printed_over_each_other():
    fig = plots.sweep_figure(_tagging_curve(), "spans")
    names = [tr.name for tr in fig.data]
    assert {"en alone (test)", "es alone (test)", "full nl adapter (test)"} <= set(names)
    texts = [a.text for a in fig.layout.annotations]
    assert texts == ["best λ on dev = 0.5"]  # no level label printed on the plot


def test_mlm_curve_marks_the_current_lambda_on_the_curve(stack):
    from langarith.page import mlm

    for lam in (0.3, 0.8):
        fig, _ = mlm.on_mlm_heldout(stack, "pt", "es", lam)
        marker = [tr for tr in fig.data if (tr.name or "").startswith("current λ")]
        assert len(marker) == 1 and marker[0].name == f"current λ = {lam:.2f}"
        curve = fig.data[0]
        assert marker[0].x[0] == lam
        lo = max(x for x in curve.x if x <= lam)
        hi = min(x for x in curve.x if x >= lam)
        y = dict(zip(curve.x, curve.y))
        want = y[lo] if lo == hi else y[lo] + (y[hi] - y[lo]) * (lam - lo) / (hi - lo)
        assert marker[0].y[0] == pytest.approx(want)


def test_a_link_without_a_source_takes_the_targets_suggested_source(stack):
    from langarith.page import header

    req = types.SimpleNamespace(query_params={"target": "nl", "lam": "0.4"})
    target, source, lam, *_, note = header.on_url(stack, req)
    assert (target, lam) == ("nl", 0.4) and note.startswith("Restored")
    assert source == tasks.suggested_source(stack, "nl") == "de"  # was: the previous target's (es)
    # the target event that follows keeps it (it is the link's) and says it is the suggested one
    out = header.on_target(stack, "nl", source, note)
    assert out[0]["value"] == "de" and "(the suggested one)" in out[4]


def test_tagging_flips_table_gives_every_column_a_share_of_the_width(stack):
    from langarith.page import flips

    assert len(flips.COLUMN_WIDTHS) == len(flips.FLIP_COLUMNS)
    shares = [float(w.rstrip("%")) for w in flips.COLUMN_WIDTHS]
    assert sum(shares) == pytest.approx(100) and min(shares[1:4]) >= 12  # A, merged, B all visible


def test_tour_steps_set_lambda_and_say_what_to_look_at(stack):
    from langarith import results
    from langarith.page import tour

    best = results.sweep_summary(stack, "pt", "es")["best_lam"]
    lams, notes = [], []
    for i in range(len(tour.STEPS)):
        lam, text, mask, note, shown = tour.on_step(stack, i, "pt", "es", "topic")
        assert shown == i + 1  # the step a class link carries
        lams.append(lam)
        notes.append(note)
        if tour.STEPS[i].changed_item:  # a dev item on which A, the merge and B disagree
            assert text in {r["text"] for r in tasks.load_eval(stack, "pt", None, "dev")}
            cmp = tasks.compare(stack, text, "pt", "es", lam)
            assert len({cmp.prediction(w) for w in ("A", "merged", "B")}) > 1
    assert lams[:4] == [1.0, 0.0, best, best]
    assert "A = en alone" in notes[0] and "B = es alone" in notes[1] and f"λ = {best:g}" in notes[2]
    assert "held-out pt text" in notes[4]
    assert all(n.count(". ") + n.count("; ") <= 3 for n in notes)  # short: a sentence or so


def test_animate_walks_lambda_from_0_to_1(stack, monkeypatch):
    from langarith.page import compare
    from langarith.page.common import LINEAR

    monkeypatch.setattr(compare, "ANIMATE_PAUSE_S", 0)
    text = stack.bundle.language("pt").examples[0]
    frames = list(compare.on_animate(stack, "pt", "es", text, "", LINEAR, "topic"))
    assert [f[0] for f in frames] == compare.ANIMATE_LAMBDAS
    assert frames[3][1] == f"### `{tasks.compare(stack, text, 'pt', 'es', 0.3).formula}`"
