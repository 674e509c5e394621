"""Issue 41: every door tried. The app's own API description (``/gradio_api/info``) lists the
endpoints, so a new one is walked without anyone listing it here: each parameter in turn gets
hostile values while the others keep their defaults (``benchmarks/api_walk.py``). No call may end
in Gradio's generic error, every refusal names what it refuses, the hostile kinds below are
refused, private events cannot be called by name, and the app answers normally afterwards with
no session left behind by the walk."""

from __future__ import annotations

import math

import httpx
import pytest

import conftest
from benchmarks.api_walk import Outcome, call, summary, walk
from langarith.page import checks

# Never a value a parameter can take, whatever its kind: each must be refused, with its line.
ALWAYS_REFUSED = {"a list", "an object", "NaN", "inf", "-inf", "1e308", "-1e308", "1 MB",
                  "control characters", "lone surrogate", "FileData /etc/passwd", "{path: /etc/passwd}"}


@pytest.fixture(scope="module")
def page(stack):
    """The page as ``cli.launch_app`` serves it (its own launch: the test reads its sessions)."""
    from langarith import hosting
    from langarith.page import CSS, build_demo

    demo = hosting.queue(build_demo(stack))
    port = conftest.free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, share=False,
                quiet=True, css=CSS)
    try:
        yield demo, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def walked(page) -> list[Outcome]:
    return walk(page[1])


def served(url: str) -> None:
    from gradio_client import Client

    out = Client(url, verbose=False).predict("pt", "es", 0.45, "insira uma fórmula na célula",
                                             "insira uma <mask> na célula", api_name="/compare")
    assert out[0] == "### `merged = 0.45·en + 0.55·es`"


def test_every_endpoint_and_parameter_is_walked(page, walked):
    info = httpx.get(f"{page[1]}gradio_api/info").json()["named_endpoints"]
    assert {o.endpoint for o in walked} == {e for e, ep in info.items() if ep["parameters"]}
    assert {(o.endpoint, o.param) for o in walked} == {
        (e, p["parameter_name"]) for e, ep in info.items() for p in ep["parameters"]}
    print(summary(walked))


def test_no_generic_error_and_every_refusal_names_its_parameter(walked):
    bad = [o for o in walked if o.kind in ("generic", "unnamed")]
    assert not bad, "\n".join(f"{o.kind}: {o.endpoint} {o.param} = {o.what}: {o.message[:120]!r}" for o in bad)


def test_hostile_values_are_refused(walked):
    taken = [o for o in walked if o.what in ALWAYS_REFUSED and o.kind != "refused"]
    assert not taken, "\n".join(f"{o.endpoint} {o.param} = {o.what}: {o.kind}" for o in taken)
    assert sum(o.kind == "refused" for o in walked) > len(walked) // 2


def test_a_refusal_is_one_short_line_naming_the_label(page):
    kind, msg = call(httpx.Client(timeout=60), page[1], "/compare", ["pt", "es", "abc", "x", "y"])
    assert kind == "error"
    assert msg == "λ (weight of A), parameter lam: must be a number between 0 and 1; got 'abc'"
    kind, msg = call(httpx.Client(timeout=60), page[1], "/compare", ["pt", "es", 0.5, "a" * 1_000_000, "y"])
    assert "\n" not in msg and len(msg) < 200 and "1,000,000" in msg


def test_the_app_answers_normally_after_the_walk(page, walked):
    served(page[1])


def test_private_events_cannot_be_called_by_name(page):
    demo, url = page
    private = [f.api_name for f in demo.fns.values() if f.api_visibility == "private" and f.fn and f.inputs]
    assert "details_step" in private
    with httpx.Client(timeout=60) as http:
        for name in ("details_step", "refresh", private[-1]):
            r = http.post(f"{url}gradio_api/call/{name}", json={"data": []})
            assert r.status_code in (404, 422) and "no public endpoint" in r.text, (name, r.text)
            r = http.post(f"{url}gradio_api/run/{name}", json={"data": []})
            assert r.status_code >= 400, (name, r.text)


def test_sessionless_calls_leave_no_session_behind(page, walked):
    """Each API call's session copies the page's config (~240 kB); a walk of a thousand calls
    kept a thousand of them. Now at most the last few stay."""
    demo, url = page
    assert len(walked) > 500
    assert len(demo.state_holder.session_data) <= checks.THROWAWAY_SESSIONS + 8


def test_checks_come_from_the_components():
    import gradio as gr

    with gr.Blocks():
        lam = gr.Slider(0, 1, label="λ")
        seed = gr.Number(0, precision=0, label="seed")
        pick = gr.Dropdown([("English", "en"), ("Spanish", "es")], value="en", label="language")
        text = gr.Textbox(label="text")
    assert checks.problem(lam, "lam", 0.5) is None
    assert "between 0 and 1" in checks.problem(lam, "lam", 1.5)
    assert checks.problem(lam, "lam", math.nan) and checks.problem(lam, "lam", True)
    assert checks.problem(seed, "seed", 3) is None and checks.problem(seed, "seed", None) is None
    assert "whole number" in checks.problem(seed, "seed", 2.5)
    assert checks.problem(seed, "seed", 1e308)
    assert checks.problem(pick, "target", "es") is None and checks.problem(pick, "target", "Spanish")
    assert checks.problem(text, "text", "two\nlines\tok") is None
    assert "control" in checks.problem(text, "text", "a\x07b")
    assert "surrogate" in checks.problem(text, "text", "a\ud800")
    assert "100,000" in checks.problem(text, "text", "a" * 100_001)
