"""Issue 39: accessible to every student. axe-core (the copy the pinned ``axe-playwright-python``
bundles) on the loaded page, Gradio's own components included, at a 1280 × 720 projector and a
390 × 844 touch phone: no critical and no serious violation; the λ slider says its value in words;
the page has one level-one heading; the per-layer plots carry their numbers in a caption."""

from __future__ import annotations

import re

import pytest

from test_browser import TIMEOUT, browser  # noqa: F401 - the module's one browser

SCREENS = [(1280, 720, False), (390, 844, True)]

# Violations that cannot be avoided by choosing or configuring a component, each with its
# Gradio issue and the reason: none today. (What axe-core found in Gradio 6.17's components,
# NOTES.md section 5, is avoided: the flips table is plain HTML, the tabs' hidden measuring copy
# is invisible, the tabs fit a phone's line, the footer's and the selected tab's colours, the
# ensemble plot starts with a figure that says what it will show.)
ACCEPTED: dict[str, str] = {}


@pytest.fixture(scope="module", params=SCREENS, ids=lambda v: f"{v[0]}x{v[1]}")
def loaded(request, browser, app_url):  # noqa: F811
    """The page with everything its first load sends painted: predictions, the held-out curve,
    the flips and the details step's plots."""
    width, height, touch = request.param
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=touch,
                                   is_mobile=touch)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(app_url, wait_until="domcontentloaded")
    page.wait_for_function("() => (document.querySelector('#formula')?.innerText || '').includes('merged =')")
    for sel in ("#mlm-heldout svg.main-svg", "#geometry svg.main-svg", "#hidden svg.main-svg",
                "#mlm-live svg.main-svg", "#flips tbody tr"):
        page.wait_for_selector(sel)
    page.wait_for_timeout(500)
    try:
        yield page
    finally:
        context.close()


def test_axe_finds_no_critical_or_serious_violation(loaded):
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(loaded).response["violations"]
    bad = [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}" for v in found
           if v["impact"] in ("critical", "serious") and v["id"] not in ACCEPTED]
    assert bad == [], "\n".join(bad)


def test_one_level_one_heading(loaded):
    assert loaded.locator("h1").count() == 1
    assert "language arithmetic" in loaded.locator("h1").inner_text()


def valuetext(page) -> str:
    return page.locator("#lam input[type=range]").get_attribute("aria-valuetext") or ""


def test_the_slider_says_lambda_in_words_and_follows_it(loaded):
    page = loaded
    rng = page.locator("#lam input[type=range]")
    lam = float(rng.input_value())
    assert valuetext(page) == f"λ {lam:.2f}: {round(100 * lam)} % en, {100 - round(100 * lam)} % es"
    box = page.locator("#lam input[type=number]")  # set by typing: the page sets the range
    box.fill("0.7")
    box.press("Tab")
    page.wait_for_function("() => (document.querySelector('#formula')?.innerText || '').includes('merged = 0.70')")
    page.wait_for_function("w => document.querySelector('#lam input[type=range]').getAttribute('aria-valuetext') === w",
                           arg="λ 0.70: 70 % en, 30 % es")
    rng.focus()  # by the keyboard: the words change with the key, before any answer
    rng.press("ArrowLeft")
    page.wait_for_function("w => document.querySelector('#lam input[type=range]').getAttribute('aria-valuetext') === w",
                           arg="λ 0.65: 65 % en, 35 % es")
    page.wait_for_function("() => (document.querySelector('#formula')?.innerText || '').includes('merged = 0.65')")


def test_each_drawn_plot_has_its_numbers_in_words_beside_it(loaded):
    """The per-layer plots' captions, the curves' lines: a sentence with the numbers the plot shows."""
    page = loaded
    page.wait_for_function("() => (document.querySelector('#geometry')?.innerText || '').includes('Weights at λ')")
    for plot, words in (("geometry", "#geometry label"), ("hidden", "#hidden label"),
                        ("mlm-heldout", "#mlm-heldout-note"), ("mlm-live", "#mlm-live-note")):
        text = page.locator(words).first.inner_text()
        assert len(re.findall(r"\d\.\d\d", text)) >= 2, (plot, text)
