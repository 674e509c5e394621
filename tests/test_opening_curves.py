"""The opening texts' live masked-LM curves shipped with the bundle: they cover what the page
opens on, equal a fresh computation, and once seeded a release on them costs no scoring pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from langarith import opening_curves, tasks
from langarith.model import LanguageStack

BUNDLE = Path(__file__).resolve().parent.parent / "assets" / "bundle"


@pytest.fixture(scope="module")
def shipped_stack():
    return LanguageStack(BUNDLE, device="cpu")


def test_the_shipped_curves_cover_each_target_the_page_opens_on(shipped_stack):
    from langarith.page.common import LAM_GRID

    assert opening_curves.SLIDER_GRID == LAM_GRID  # the grid the page's slider sends
    shipped = json.loads((BUNDLE / "results" / f"{opening_curves.FILE}.json").read_text())
    for target, curves in shipped.items():
        assert [c["text"] for c in curves] == opening_curves.opening_texts(shipped_stack, target)
        a, b = tasks.merge_pair(shipped_stack, target, None)
        assert all(c["a"] == a and c["b"] == b for c in curves)
        assert all(c["lambdas"] == list(opening_curves.SLIDER_GRID) for c in curves)
    zero_shot = [t for t, lang in shipped_stack.bundle.languages.items() if not lang.has_adapter]
    assert zero_shot and set(zero_shot) <= set(shipped)  # every zero-shot target a class opens on


def test_a_shipped_curve_equals_a_fresh_computation_and_seeding_makes_it_free(shipped_stack, monkeypatch):
    shipped = json.loads((BUNDLE / "results" / f"{opening_curves.FILE}.json").read_text())
    target = sorted(shipped)[0]
    c = shipped[target][0]
    tasks.clear_cache(shipped_stack)
    requests = tasks.mlm_curve_requests([c["text"]], c["a"], c["b"], c["lambdas"])
    for i in (0, 7, 20):  # B alone, a merge, A alone: computed again, one request at a time
        adapter = requests[i][1]
        sums, counts = tasks.mlm_token_losses(shipped_stack, [([c["text"]], adapter)])[0]
        np.testing.assert_allclose(sums, c["sums"][i], rtol=1e-4)
        assert counts.tolist() == c["counts"][i]
    tasks.clear_cache(shipped_stack)
    n = opening_curves.seed(shipped_stack)
    assert n == sum(len(cs) * len(opening_curves.SLIDER_GRID) for cs in shipped.values())

    def no_pass(*a, **k):
        raise AssertionError("a seeded curve ran a scoring pass")

    monkeypatch.setattr(tasks, "masked_logits", no_pass)
    curve = tasks.mlm_curve(shipped_stack, [c["text"]], c["a"], c["b"], c["lambdas"])
    want = [float(np.sum(s) / max(np.sum(k), 1)) for s, k in zip(c["sums"], c["counts"])]
    assert [p["loss"] for p in curve["points"]] == pytest.approx(want)
    with pytest.raises(AssertionError, match="scoring pass"):  # an unseeded text still computes
        tasks.mlm_curve(shipped_stack, [c["text"] + " x"], c["a"], c["b"], [0.0, 0.5, 1.0])
