"""Issue 39: a phone is a first-class screen. At 390 × 844 and 360 × 640 with touch: λ, the formula
and the three predictions on the first screen; a touch drag on λ updates the predictions; a
scroll never moves λ, and λ's bar stays in reach down at the curve and the tour. Debian chromium
through playwright, touch input through the DevTools protocol (what a finger sends)."""

from __future__ import annotations

import re

import pytest

from langarith import tasks
from test_browser import TIMEOUT, browser, new_errors, watch_errors  # noqa: F401 - browser: the module's one

PHONES = [(390, 844), (360, 640)]


@pytest.fixture(scope="module", params=PHONES, ids=lambda v: f"{v[0]}x{v[1]}")
def phone(request, browser, app_url):  # noqa: F811
    """One touch page per phone size, loaded (the first comparison painted), shared by the
    module's tests in their order: first screen, drag, scroll."""
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=True,
                                   is_mobile=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(app_url, wait_until="domcontentloaded")
    page.wait_for_function("() => (document.querySelector('#formula')?.innerText || '').includes('merged =')")
    page.wait_for_selector("#pred-merged .confidence-set")
    watch_errors(page)
    try:
        yield page, width, height
    finally:
        context.close()


def rect(page, elem: str) -> dict:
    """The element's box in the viewport (CSS px), from the page itself."""
    return page.evaluate("""id => { const r = document.getElementById(id).getBoundingClientRect();
                                    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
                                            height: r.height}; }""", elem)


def inside(page, elem: str, width: int, height: int) -> dict:
    r = rect(page, elem)
    assert r["height"] > 0, f"#{elem} is not shown"
    assert r["top"] >= 0 and r["left"] >= 0 and r["right"] <= width + 0.5 and r["bottom"] <= height + 0.5, \
        f"#{elem} {r} is not wholly inside the {width}×{height} screen"
    return r


def lam(page) -> str:
    return page.locator("#lam input[type=range]").input_value()


def merged_text(page) -> str:
    return page.locator("#pred-merged").inner_text()


def test_first_screen_holds_lambda_the_formula_and_the_three_predictions(phone):
    page, width, height = phone
    assert page.evaluate("() => window.scrollY") == 0
    boxes = {e: inside(page, e, width, height) for e in ("lam", "formula", "pred-a", "pred-merged", "pred-b")}
    a, m, b = boxes["pred-a"], boxes["pred-merged"], boxes["pred-b"]
    assert a["right"] <= m["left"] + 1 and m["right"] <= b["left"] + 1  # A | merged | B, side by side
    assert boxes["lam"]["bottom"] <= m["top"]  # λ above what it moves
    # each column: its top label and its probability, readable (not cut off)
    for elem in ("pred-a", "pred-merged", "pred-b"):
        first = page.locator(f"#{elem} .confidence-set").first
        label = first.locator(".text").inner_text().strip()
        prob = first.locator(".confidence").inner_text().strip()
        assert label and re.fullmatch(r"\d+%", prob), (elem, label, prob)
        assert first.locator(".confidence").evaluate(
            "e => { const r = e.getBoundingClientRect(), p = e.closest('.block').getBoundingClientRect();"
            " return r.right <= p.right + 0.5 && r.width > 0; }"), f"{elem}'s probability is cut off"
    assert new_errors(page) == []


def touch_drag(page, x0: float, y0: float, x1: float, y1: float, steps: int = 10) -> None:
    """A finger put on the screen at (x0, y0), moved to (x1, y1), lifted."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for i in range(1, steps + 1):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
            {"x": x0 + (x1 - x0) * i / steps, "y": y0 + (y1 - y0) * i / steps}]})
        page.wait_for_timeout(20)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_a_touch_drag_on_lambda_changes_the_merged_prediction(stack, phone):
    page, width, height = phone
    text = page.locator("#text textarea").input_value()
    before = merged_text(page)
    r = rect(page, "lam")
    rng = page.locator("#lam input[type=range]").bounding_box()
    y = rng["y"] + rng["height"] / 2
    touch_drag(page, rng["x"] + rng["width"] / 2, y, rng["x"] + 2, y)  # to the left end: λ = 0, the merge is B
    page.wait_for_function("() => document.querySelector('#lam input[type=range]').value === '0'")
    page.wait_for_function("() => (document.querySelector('#formula')?.innerText || '').includes('merged = 0.00·en')")
    ref = tasks.compare(stack, text, "pt", "es", 0.0)
    top = ref.prediction("merged")
    want = f"{round(100 * max(ref.probs['merged']))}%"
    page.wait_for_function("w => (document.querySelector('#pred-merged')?.innerText || '').includes(w)", arg=want)
    after = merged_text(page)
    assert after != before and top in after, (before, after)
    assert rect(page, "lam")["top"] == pytest.approx(r["top"], abs=1)  # the drag did not scroll the page
    assert new_errors(page) == []


def test_a_scroll_never_moves_lambda_and_its_bar_stays_in_reach(phone):
    page, width, height = phone
    page.evaluate("() => window.scrollTo(0, 0)")
    before = lam(page)
    rng = page.locator("#lam input[type=range]").bounding_box()
    # a finger put down on the slider, far from its thumb, and swiped up: the page scrolls and
    # λ stays (a range input jumps to where a finger lands)
    x, y = rng["x"] + rng["width"] * 0.8, rng["y"] + rng["height"] / 2
    touch_drag(page, x, y, x, y - 300)
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.scrollY") > 100, "the swipe did not scroll the page"
    assert lam(page) == before
    inside(page, "lam", width, height)  # the λ bar stuck to the top
    for elem in ("mlm-heldout", "tour"):  # down at the curve and the tour, λ is still in reach
        page.locator(f"#{elem}").evaluate("e => e.scrollIntoView({block: 'end'})")
        page.wait_for_timeout(200)
        bar = inside(page, "lam", width, height)
        part = rect(page, elem)
        assert part["top"] >= bar["bottom"] - 1 or part["bottom"] > bar["bottom"], (elem, part, bar)
        assert lam(page) == before
    page.evaluate("() => window.scrollTo(0, 0)")


def test_the_flips_table_reads_on_a_phone(phone):
    """Its labels never break inside a word ("Wri / ter"); the table scrolls sideways instead."""
    page, width, height = phone
    page.wait_for_selector("#flips tbody tr")
    broken = page.evaluate("""() => [...document.querySelectorAll('#flips td.label, #flips th')]
        .filter(td => { const r = document.createRange(); r.selectNodeContents(td);
                        return r.getClientRects().length > 1; }).map(td => td.innerText)""")
    assert broken == []
    wrap = page.locator("#flips .flips-wrap")
    assert wrap.get_attribute("tabindex") == "0"  # a scrolling region a keyboard reaches
