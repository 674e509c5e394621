"""Predict, then reveal, in a real browser: a class room with two students and a teacher, and a
student without a room (Chromium via playwright, as tests/test_browser.py drives it)."""

from __future__ import annotations

import re

import pytest

from test_browser import TIMEOUT, browser  # noqa: F401 - the module's one browser

from langarith.page import room

ROOM_WAIT = 60_000  # ms: a page polls its room every few seconds (on 2 shared cores)


def open_page(browser, url: str):  # noqa: F811
    """A page of its own, once its room is read (the load hides the guess row): the questions
    need the pickers only, not the first comparison, so the test does not wait for the model."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#guess-row")  # laid out (visible) ...
    page.wait_for_selector("#guess-row", state="hidden")  # ... and hidden by the room's load
    return page


def wait_text(page, selector: str, text: str, timeout: int = ROOM_WAIT):
    from playwright.sync_api import TimeoutError as Late

    try:
        page.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)",
                               arg=[selector, text], timeout=timeout)
    except Late:
        raise AssertionError(f"{selector} never said {text!r}; it says "
                             f"{page.locator(selector).inner_text()!r}") from None
    return page.locator(selector).inner_text()


def guess_lam(page, lam: str):
    page.click("#ask-lam")
    wait_text(page, "#question", "lowest masked-LM loss")
    assert not page.locator("#mlm-heldout").is_visible()  # the curve waits for the answer
    box = page.locator("#guess-lam input[type=number]")
    box.fill(lam)
    box.press("Tab")
    page.click("#commit")


@pytest.fixture(scope="module")
def measured(stack):
    """The λ question's measured answer, from the stored curve (not from the page)."""
    q = room.question(stack, room.ask_id(stack, "lam", "pt", None, None))
    return q


def test_a_room_two_students_and_a_teacher(browser, app_url, measured):  # noqa: F811
    teacher = open_page(browser, app_url)
    teacher.get_by_role("tab", name="Keep & share").click()
    teacher.click("#open-room")
    note = wait_text(teacher, "#open-room-note", "Room open")
    links = re.findall(r"(http\S+room=[\w-]+(?:&key=[\w-]+)?)", note)
    students_link, teachers_link = links[0], links[1]
    assert "key=" not in students_link and teachers_link.startswith(students_link + "&key=")
    teacher.wait_for_selector("#reveal", state="visible")  # this page is the teacher's now

    pages = [open_page(browser, students_link) for _ in range(2)]
    for page in pages:
        wait_text(page, "#room-line", "you are in the class room")
        assert not page.locator("#reveal").is_visible()  # only the teacher's page reveals
    for page, lam in zip(pages, ("0.2", "0.8")):
        guess_lam(page, lam)
        wait_text(page, "#answer", f"Your guess is in (λ = {lam})")
        assert "lowest loss is at" not in page.locator("#answer").inner_text()  # not yet revealed

    teacher.click("#ask-lam")
    wait_text(teacher, "#room-dist", "2 answered (λ from 0.2 to 0.8")
    for page in pages:
        wait_text(page, "#room-line", "2 answered this question (yours is in)")
    teacher.click("#reveal")
    best = f"lowest loss is at λ = {measured['answer']:g}"
    for page, lam in zip(pages, ("0.2", "0.8")):
        said = wait_text(page, "#answer", "Revealed")
        assert f"You guessed λ = {lam}" in said and best in said
        page.wait_for_selector("#class-guesses svg.main-svg")
        assert "n = 2" in page.locator("#class-guesses").inner_text()
        assert page.locator("#mlm-heldout").is_visible()
    for page in [teacher, *pages]:
        page.close()


def test_without_a_room_the_answer_comes_at_once(browser, app_url, measured):  # noqa: F811
    page = open_page(browser, app_url)
    guess_lam(page, "0.3")
    said = wait_text(page, "#answer", "You guessed λ = 0.3")
    assert f"lowest loss is at λ = {measured['answer']:g}" in said
    assert page.locator("#mlm-heldout").is_visible()
    page.click("#ask-fix")
    wait_text(page, "#question", "get this dev item right where A gets it wrong")
    page.locator("#guess-yes label", has_text="no").click()
    page.click("#commit")
    said = wait_text(page, "#answer", "You guessed no")
    assert "the merge at λ" in said
    assert not page.locator("#class-guesses").is_visible()  # no room: no class, no histogram
    page.close()


def test_a_bad_room_code_gets_one_line_and_the_page_works(browser, app_url):  # noqa: F811
    page = open_page(browser, app_url + "?target=pt&room=not-a-room")
    wait_text(page, "#room-line", "unknown or has expired")
    guess_lam(page, "0.5")
    wait_text(page, "#answer", "You guessed λ = 0.5")
    page.close()
