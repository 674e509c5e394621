"""The page in a real browser: Debian chromium driven by playwright (never `playwright install`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from langarith import tasks

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SCREENSHOT = "/tmp/langarith-page.png"
TIMEOUT = 60_000  # ms; the first load runs set_target then compare on 2 shared cores


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    """A page of its own (no state from another test), loaded: the first comparison painted,
    and from then on every error toast recorded (``new_errors``)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function("() => (document.querySelector('#formula')?.innerText || '').includes('merged =')")
    watch_errors(page)
    return page


@pytest.fixture
def page(browser, app_url):
    page = open_page(browser, app_url)
    yield page
    page.close()


def formula(page) -> str:
    return page.locator("#formula").inner_text().strip()


def wait_formula(page, lam_a: str, lam_b: str):
    want = f"merged = {lam_a}·en + {lam_b}·es"
    page.wait_for_function("want => (document.querySelector('#formula')?.innerText || '').includes(want)",
                           arg=want)
    return want


def merged_probs(page) -> dict[str, float]:
    """The merged gr.Label's confidence rows: {label: probability}."""
    text = page.locator("#pred-merged").inner_text()
    return {m.group(1): float(m.group(2)) / 100 for m in re.finditer(r"(calc|writer|draw)\s+(\d+(?:\.\d+)?)%", text)}


def watch_errors(page) -> None:
    """Record every error toast that appears from now on (a toast comes and goes on its own
    timer, so counting them at one instant is not a measure)."""
    page.evaluate("""() => {
      window.__errors = [];
      new MutationObserver(ms => ms.forEach(m => m.addedNodes.forEach(n => {
        if (n.nodeType !== 1) return;
        const hits = n.matches('.toast-body.error') ? [n] : [...n.querySelectorAll('.toast-body.error')];
        hits.forEach(e => window.__errors.push(e.innerText));
      }))).observe(document.body, {subtree: true, childList: true});
    }""")


def new_errors(page) -> list[str]:
    return page.evaluate("() => window.__errors")


def svg_title(page, elem: str) -> str:
    page.wait_for_selector(f"#{elem} svg.main-svg")
    return page.locator(f"#{elem} .gtitle").first.text_content() or ""


def test_page_loads_and_follows_the_slider(stack, page):
    # first load: target pt (zero-shot), source es, λ 0.5 — the load event runs a comparison
    wait_formula(page, "0.50", "0.50")
    assert formula(page) == "merged = 0.50·en + 0.50·es"
    assert "zero-shot" in page.locator("#setting").inner_text()
    text = page.locator("#text textarea").input_value()
    # the first text is a dev item whose prediction the merge changes (checked independently)
    assert {r["text"]: r["split"] for r in tasks.load_eval(stack, "pt")}[text] == "dev"
    ref = tasks.compare(stack, text, "pt", "es", 0.5)
    assert len({ref.prediction(w) for w in ("A", "merged", "B")}) > 1
    assert "the merge changes this prediction" in page.locator("#setting").inner_text()
    # where the merge matters, and the masked-LM curves, at once
    page.wait_for_function("() => (document.querySelector('#flips-note')?.innerText || '').includes('at λ = 0.5')")
    assert page.locator("#flips tbody tr").count() >= 1
    # the curve is drawn, and its legend names the text it is the loss of
    page.wait_for_function("() => (document.querySelector('#mlm-heldout')?.innerText || '').includes('held-out pt text')")
    page.wait_for_function("() => (document.querySelector('#mlm-live')?.innerText || '').includes('λ = 0.50')")
    page.wait_for_selector("#pred-merged .label")  # the top label heading is rendered
    assert ref.prediction("merged") in page.locator("#pred-merged").inner_text()
    probs = merged_probs(page)
    assert probs, page.locator("#pred-merged").inner_text()
    for label, p in probs.items():
        assert p == pytest.approx(ref.probs["merged"][ref.labels.index(label)], abs=0.006)
    assert "λ=0.50" in svg_title(page, "geometry")
    assert "λ=0.50" in svg_title(page, "hidden")

    # type λ into the slider's number box; leaving the box fires the slider's release event
    box = page.locator("#lam input[type=number]")
    box.fill("0.8")
    box.press("Tab")
    wait_formula(page, "0.80", "0.20")
    page.wait_for_function("() => (document.querySelector('#geometry .gtitle')?.textContent || '').includes('λ=0.80')")
    assert "λ=0.80" in svg_title(page, "hidden")
    assert page.locator("#lam input[type=range]").input_value() == "0.8"
    # the flips table and the live masked-LM curve follow the slider
    page.wait_for_function("() => (document.querySelector('#flips-note')?.innerText || '').includes('nearest point to 0.80')")
    page.wait_for_function("() => (document.querySelector('#mlm-live')?.innerText || '').includes('λ = 0.80')")
    assert "merged (λ = 0.80)" in page.locator("#mlm-live-note").inner_text()
    ref8 = tasks.compare(stack, text, "pt", "es", 0.8)
    page.wait_for_function(
        "want => (document.querySelector('#pred-merged')?.innerText || '').includes(want)",
        arg=ref8.prediction("merged"))
    probs8 = merged_probs(page)
    for label, p in probs8.items():
        assert p == pytest.approx(ref8.probs["merged"][ref8.labels.index(label)], abs=0.006)
    # fill-mask, an event of its own after the comparison, follows λ too (the merged column)
    probe = page.locator("#mask-text textarea").input_value()
    fill8 = tasks.compare(stack, text, "pt", "es", 0.8, mask_text=probe).fill_mask["merged"]
    page.wait_for_function("want => (document.querySelector('#fill-merged')?.innerText || '').includes(want)",
                           arg=fill8[0][0].strip())

    # drag the range input to its left end and release: λ = 0, the merge is B
    rng = page.locator("#lam input[type=range]")
    box_ = rng.bounding_box()
    y = box_["y"] + box_["height"] / 2
    page.mouse.move(box_["x"] + box_["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box_["x"] + 1, y, steps=5)
    page.mouse.move(box_["x"] - 20, y, steps=2)
    page.mouse.up()
    wait_formula(page, "0.00", "1.00")
    page.wait_for_function("() => (document.querySelector('#hidden .gtitle')?.textContent || '').includes('λ=0.00')")
    assert page.locator("#lam input[type=number]").input_value() == "0"
    page.wait_for_selector("#pred-a .label")
    assert new_errors(page) == []
    page.screenshot(path=SCREENSHOT, full_page=True)

    # empty text: one error toast, and the page keeps working afterwards
    area = page.locator("#text textarea")
    area.fill("")
    area.press("Shift+Enter")  # a multi-line gr.Textbox submits on Shift+Enter (Enter adds a line)
    page.wait_for_function("() => window.__errors.length > 0")
    assert len(new_errors(page)) == 1 and "text is empty" in new_errors(page)[0]
    area.fill(text)
    box.fill("0.3")
    box.press("Tab")
    wait_formula(page, "0.30", "0.70")


def test_tabs_draw_their_plots(page):
    """The λ sweep runs from its button with progress and draws its curve; the similarity tab
    draws the heatmap when it is shown (plots filled while hidden used to stay 'pending')."""
    page.get_by_role("tab", name="Similarity").click()
    page.wait_for_selector("#sim-plot g.hm, #sim-plot .heatmaplayer")
    assert "cos between language vectors" in (page.locator("#sim-plot .gtitle").first.text_content() or "")
    page.get_by_role("tab", name="λ sweep").click()
    # the precomputed curve at once, with its intervals in words
    page.wait_for_function("() => (document.querySelector('#sweep-note')?.innerText || '').includes('95 % CI')")
    assert "precomputed" in svg_title(page, "sweep-plot")
    page.locator("#run-sweep").click()
    page.wait_for_function("() => (document.querySelector('#sweep-plot .gtitle')?.textContent || '').includes('computed now')")
    assert "Best λ on dev" in page.locator("#sweep-note").inner_text()
    page.get_by_role("tab", name="Merge").click()


def test_task_picker_shows_the_spans_of_a_merge_and_b(stack, page):
    """The tagging task next to the topic task: spans of A, the merge and B on the text."""
    page.get_by_role("tab", name="Merge").click()
    page.get_by_label("Help spans (UI, CODE)").check()
    page.wait_for_selector("#spans-merged", state="visible")
    page.wait_for_function("() => (document.querySelector('#spans-merged')?.innerText || '').includes('merged (λ')")
    text = page.locator("#text textarea").input_value()
    from langarith import ner

    ref = ner.compare_ner(stack, text, "pt", "es", float(page.locator("#lam input[type=number]").input_value()),
                          task="spans")
    shown = page.locator("#spans-merged").inner_text()
    for seg, label in ref.highlighted("merged"):
        if label:
            assert seg.strip() in shown
    assert not page.locator("#pred-merged").is_visible()  # the topic labels give way
    page.get_by_label("Help paragraph → application").check()
    page.wait_for_selector("#pred-merged", state="visible")


def _marker(page) -> str:
    """The held-out curve's marker of the slider's λ (its legend entry)."""
    return page.locator("#mlm-heldout").inner_text()


def test_tour_walks_its_steps_and_the_curve_marker_follows_the_slider(stack, page):
    """Issue 20: each tour step sets λ and says what to look at; the held-out curve's marker
    moves with the slider (a CPU-only event: it does not wait for the model)."""
    from langarith import results

    page.get_by_role("tab", name="Merge").first.click()
    page.get_by_label("Help paragraph → application").check()
    best = results.sweep_summary(stack, "pt", "es")["best_lam"]
    page.wait_for_function("() => (document.querySelector('#text textarea')?.value || '').length > 0")
    for i, lam in ((1, 1.0), (2, 0.0), (3, best), (4, best), (5, None)):
        page.locator(f"#tour-{i}").click()
        page.wait_for_function("i => (document.querySelector('#tour-note')?.innerText || '').startsWith(i + ' ·')",
                               arg=str(i))
        if lam is not None:
            want = f"{lam:.2f}"
            page.wait_for_function("v => document.querySelector('#lam input[type=number]').value == v",
                                   arg=f"{lam:g}")
            page.wait_for_function("v => (document.querySelector('#mlm-heldout')?.innerText || '').includes('current λ = ' + v)",
                                   arg=want)
            page.wait_for_function("v => (document.querySelector('#formula')?.innerText || '').includes('merged = ' + v)",
                                   arg=want)
    box = page.locator("#lam input[type=number]")
    for v in ("0.35", "0.7"):
        box.fill(v)
        box.press("Tab")
        page.wait_for_function("v => (document.querySelector('#mlm-heldout')?.innerText || '').includes('current λ = ' + v)",
                               arg=f"{float(v):.2f}")
    assert new_errors(page) == []


def test_the_label_free_lambda_moves_the_slider_and_says_how_it_did(stack, page):
    """Issue 22: the button beside λ sets the masked-LM minimum of the target's unlabelled text;
    the comparison and the curve's marker follow, and one line compares it with the dev λ."""
    from langarith import lambda_rules

    page.get_by_label("Help paragraph → application").check()  # the topic task
    task = next(t.name for t in stack.bundle.tasks.values() if t.kind == "classification")
    want = lambda_rules.label_free_lambda(stack, "pt", "es", task)
    assert want["ok"], want["message"]
    box = page.locator("#lam input[type=number]")
    start = 0.85 if want["lam"] != 0.85 else 0.15
    box.fill(f"{start:g}")
    box.press("Tab")
    # the release's comparison first: the click must not race it (a late answer for 0.85
    # would otherwise land after the label-free λ and look like the button's)
    page.wait_for_function("v => (document.querySelector('#formula')?.innerText || '').includes('merged = ' + v)",
                           arg=f"{start:.2f}")
    page.locator("#label-free").click()
    page.wait_for_function("() => (document.querySelector('#label-free-note')?.innerText || '').includes('Label-free λ')")
    assert page.locator("#label-free-note").inner_text().strip() == want["message"].replace("**", "")
    page.wait_for_function("v => document.querySelector('#lam input[type=number]').value == v", arg=f"{want['lam']:g}")
    lam = f"{want['lam']:.2f}"
    page.wait_for_function("v => (document.querySelector('#formula')?.innerText || '').includes('merged = ' + v)", arg=lam)
    page.wait_for_function("v => (document.querySelector('#mlm-heldout')?.innerText || '').includes('current λ = ' + v)",
                           arg=lam)
    assert new_errors(page) == []


# --- the first screen of the embedded bundle, at the sizes the README promises ----------------

# A classroom projector (1280 × 720, 1366 × 768), a laptop, a desktop (issue 27).
FIRST_SCREEN_SIZES = [(1280, 720), (1366, 768), (1400, 1000), (1920, 1080)]
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "bundle" / "manifest.json"


def box(page, elem: str) -> dict:
    b = page.locator(f"#{elem}").bounding_box()
    assert b is not None and b["width"] > 0 and b["height"] > 0, f"#{elem} is not shown"
    return b


def on_screen(page, elems, width: int, height: int) -> dict:
    """The boxes of ``elems``, each asserted wholly inside the viewport."""
    boxes = {e: box(page, e) for e in elems}
    for elem, b in boxes.items():
        assert b["x"] >= 0 and b["y"] >= 0, elem
        assert b["x"] + b["width"] <= width and b["y"] + b["height"] <= height, \
            f"#{elem} ends at y = {b['y'] + b['height']:.0f}, below the {width}×{height} screen"
    return boxes


@pytest.mark.parametrize("width,height", FIRST_SCREEN_SIZES, ids=lambda v: str(v))
def test_the_first_screen_holds_the_predictions_beside_the_heldout_curve(browser, shipped_app_url,
                                                                        width, height):
    """``python app.py`` opened at a screen size the README names: without scrolling, the three
    predictions (A | merged | B), the held-out masked-LM curve and the tour's sentence are wholly
    on screen, the predictions side by side in one row and the curve beside them, not below; the
    predictions read as the applications' names, not their codes."""
    page = open_page(browser, shipped_app_url, width, height)
    try:
        page.wait_for_selector("#pred-merged .label")
        page.wait_for_selector("#mlm-heldout svg.main-svg")
        assert page.evaluate("() => window.scrollY") == 0
        boxes = on_screen(page, ("pred-a", "pred-merged", "pred-b", "mlm-heldout", "tour-note"), width, height)
        a, m, b_, curve = (boxes[e] for e in ("pred-a", "pred-merged", "pred-b", "mlm-heldout"))
        assert a["x"] + a["width"] <= m["x"] + 1 and m["x"] + m["width"] <= b_["x"] + 1  # A | merged | B
        assert abs(a["y"] - m["y"]) < 5 and abs(m["y"] - b_["y"]) < 5  # one row
        beside = curve["x"] >= b_["x"] + b_["width"] - 1 or curve["x"] + curve["width"] <= a["x"] + 1
        overlap = min(m["y"] + m["height"], curve["y"] + curve["height"]) - max(m["y"], curve["y"])
        assert beside and overlap > 0, f"the curve {curve} is not beside the predictions {m}"
        shown = page.locator("#pred-merged").inner_text()
        task = json.loads(SHIPPED.read_text())["tasks"][0]
        names = set(task["label_names"].values())
        assert sum(n in shown.split() for n in names) == 3, shown  # its top three, by name
        assert not any(code in shown for code in task["labels"]), shown
        assert new_errors(page) == []
    finally:
        page.close()


@pytest.mark.parametrize("width,height", FIRST_SCREEN_SIZES, ids=lambda v: str(v))
def test_the_tagging_task_first_screen_holds_the_three_span_columns(browser, shipped_app_url, width, height):
    """The span-tagging task opened by its link: the tagged spans of A, the merge and B, the
    curve and the tour's sentence wholly on screen, the spans as readable type names."""
    task = next(t for t in json.loads(SHIPPED.read_text())["tasks"] if t["kind"] == "tagging")
    page = open_page(browser, f"{shipped_app_url}?target=pt&task={task['name']}", width, height)
    try:
        page.wait_for_selector("#spans-merged", state="visible")
        page.wait_for_function("() => (document.querySelector('#spans-merged')?.innerText || '').includes('merged (λ')")
        page.wait_for_selector("#mlm-heldout svg.main-svg")
        assert page.evaluate("() => window.scrollY") == 0
        on_screen(page, ("spans-a", "spans-merged", "spans-b", "mlm-heldout", "tour-note"), width, height)
        shown = page.locator("#spans-merged").inner_text().lower()
        assert any(n.lower() in shown for n in task["label_names"].values()), shown
        assert new_errors(page) == []
    finally:
        page.close()


def class_view(page) -> dict:
    """What a class link sets: the task checked, the text, λ, the tour's sentence."""
    return page.evaluate("""() => ({
      task: document.querySelector('#task input:checked')?.parentElement?.innerText.trim(),
      text: document.querySelector('#text textarea').value,
      lam: document.querySelector('#lam input[type=number]').value,
      note: document.querySelector('#tour-note').innerText.trim(),
      link: document.querySelector('#link-note').innerText.trim()})""")


def test_a_class_link_opens_every_page_on_its_text_task_and_tour_step(browser, shipped_app_url):
    """Issue 27: ``?target=..&task=..&example=..&step=..`` opens the page on that task, that
    example's text and that tour step (its λ and sentence); "Link for my class" on that page
    gives a link that opens the same view again; a tour step the tour lacks is ignored, saying so."""
    manifest = json.loads(SHIPPED.read_text())
    pt = next(lang for lang in manifest["languages"] if lang["code"] == "pt")
    spans = next(t for t in manifest["tasks"] if t["kind"] == "tagging")
    link = f"{shipped_app_url}?target=pt&source=es&lam=0.7&task={spans['name']}&example=1&step=2"
    page = open_page(browser, link, 1280, 720)
    try:
        page.wait_for_function("() => (document.querySelector('#tour-note')?.innerText || '').startsWith('2 ·')")
        page.wait_for_selector("#spans-merged", state="visible")
        page.wait_for_function("() => (document.querySelector('#formula')?.innerText || '').includes('merged = 0.00·en')")
        view = class_view(page)
        assert view["task"] == spans["title"] and view["text"] == pt["examples"][1]
        assert float(view["lam"]) == 0.0  # step 2: B alone, whatever λ the link said
        assert view["link"].startswith("Restored from the link: pt") and "tour step 2" in view["link"]
        page.get_by_role("tab", name="Keep & share").click()
        page.locator("#class-link").click()
        page.wait_for_function("() => (document.querySelector('#class-link-note')?.innerText || '').includes('?target=')")
        shared = page.locator("#class-link-note code").inner_text().strip()
        assert shared.startswith(shipped_app_url) and "example=1" in shared and "step=2" in shared, shared
        assert new_errors(page) == []
    finally:
        page.close()
    again = open_page(browser, shared, 1280, 720)
    try:
        again.wait_for_function("() => (document.querySelector('#tour-note')?.innerText || '').startsWith('2 ·')")
        again.wait_for_selector("#spans-merged", state="visible")
        assert {k: v for k, v in class_view(again).items() if k != "link"} == \
            {k: v for k, v in view.items() if k != "link"}
    finally:
        again.close()
    stale = open_page(browser, f"{shipped_app_url}?target=pt&example=1&step=9", 1280, 720)
    try:
        stale.wait_for_function("() => (document.querySelector('#link-note')?.innerText || '').includes('step')")
        view = class_view(stale)
        assert "tour step is ignored" in view["link"] and view["text"] == pt["examples"][1]
        assert view["note"].startswith("Tour for a class")  # no step taken
    finally:
        stale.close()
