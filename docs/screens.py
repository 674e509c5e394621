"""Screenshots of the page's first screen and of each tour step, for a reader who wants to see what
a class sees (issue 20): the embedded bundle, Debian chromium through playwright.

    python docs/screens.py [--out DIR] [--size 1400x1000[,1280x720,...]]
    python docs/screens.py --size 1280x720 --no-tour --phone docs/phone-first-screen.png

writes ``<size>/first-<target>[-<task>].png`` (the viewport only: what is on screen without
scrolling) and ``<size>/tour-<n>.png``, and prints, per size and shot, the page's elements that are
fully inside the viewport, top to bottom, and the bottom edge (px) of the predictions and the
held-out curve, as JSON on stdout (logs on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 180_000
# The first screen's parts, by elem_id, in the order a reader meets them.
PARTS = ["title", "target", "source", "lam", "label-free", "task", "premise", "setting", "tour",
         "text", "formula", "pred-a", "pred-merged", "pred-b", "spans-a", "spans-merged", "spans-b",
         "mlm-heldout", "flips-note"]
# The parts a lesson needs on the first screen (issue 27): their bottom edges are reported.
EDGES = ["pred-merged", "spans-merged", "mlm-heldout", "tour-note"]
SHOTS = [("pt", None), ("sl", None), ("pt", "libreoffice_spans"), ("nl@100k", None),
         ("nl@100k-conv", None)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_screen(page) -> list[str]:
    """The PARTS that are visible and wholly inside the viewport, top to bottom."""
    return page.evaluate("""parts => {
      const h = window.innerHeight, out = [];
      for (const id of parts) {
        const el = document.getElementById(id);
        if (!el || el.offsetParent === null) continue;
        const r = el.getBoundingClientRect();
        if (r.height > 0 && r.top >= 0 && r.bottom <= h) out.push([r.top, id]);
      }
      return out.sort((a, b) => a[0] - b[0]).map(x => x[1]);
    }""", PARTS)


def bottoms(page) -> dict[str, int]:
    """The bottom edge (px from the top of the page) of each visible part in EDGES."""
    return page.evaluate("""parts => {
      const out = {};
      for (const id of parts) {
        const el = document.getElementById(id);
        if (el && el.offsetParent !== null) out[id] = Math.round(el.getBoundingClientRect().bottom);
      }
      return out;
    }""", EDGES)


def settled(page, lam: str | None = None) -> None:
    """The comparison and the held-out curve drawn (at ``lam`` when given)."""
    page.wait_for_function("() => (document.querySelector('#formula')?.innerText || '').includes('merged =')")
    page.wait_for_selector("#mlm-heldout svg.main-svg")
    if lam is not None:
        page.wait_for_function("v => (document.querySelector('#formula')?.innerText || '').includes('merged = ' + v)",
                               arg=lam)
    page.wait_for_timeout(1500)  # let the follow-up events (fill-mask, flips) paint


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/langarith-screens")
    ap.add_argument("--size", default="1400x1000", help="one or more WxH, comma-separated")
    ap.add_argument("--no-tour", action="store_true", help="the first screens only")
    ap.add_argument("--card", metavar="PNG", help="also write the first size's first screen of pt here, "
                    "small (the README's picture: docs/first-screen.png)")
    ap.add_argument("--phone", metavar="PNG", help="also write the first screen of pt on a 390 × 844 touch "
                    "phone here, small (docs/phone-first-screen.png)")
    args = ap.parse_args(argv)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.size.split(",")]

    from playwright.sync_api import sync_playwright

    from langarith import hosting
    from langarith.model import LanguageStack
    from langarith.page import LAUNCH, build_demo

    stack = LanguageStack(REPO / "assets" / "bundle")
    port = free_port()
    demo = build_demo(stack).queue(**hosting.QUEUE)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **LAUNCH)
    report: dict = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            for width, height in sizes:
                size = f"{width}x{height}"
                out = Path(args.out) / size
                out.mkdir(parents=True, exist_ok=True)
                page = browser.new_page(viewport={"width": width, "height": height})
                page.set_default_timeout(TIMEOUT_MS)
                report[size] = shoot(page, stack, f"http://127.0.0.1:{port}", out, tour=not args.no_tour)
                page.close()
            if args.phone:
                report["phone 390x844"] = phone(browser, f"http://127.0.0.1:{port}", Path(args.out), Path(args.phone))
            browser.close()
    finally:
        with contextlib.redirect_stdout(sys.stderr):  # Gradio prints "Closing server ..." there
            demo.close()
    if args.card:
        card(Path(args.out) / f"{sizes[0][0]}x{sizes[0][1]}" / "first-pt.png", Path(args.card))
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


def phone(browser, url: str, out: Path, png: Path) -> dict:
    """The first screen of pt as a phone shows it (390 × 844, touch, 2 device pixels a CSS px)."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                  device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/?target=pt", wait_until="domcontentloaded")
    settled(page)
    shot = out / "phone-first-pt.png"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    report = {"on_screen": on_screen(page), "bottom": bottoms(page)}
    context.close()
    card(shot, png)
    return report


def card(shot: Path, out: Path) -> None:
    """The README's picture: the screenshot in 128 colours (a third of the bytes; text stays sharp)."""
    from PIL import Image

    Image.open(shot).convert("RGB").quantize(colors=128).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1000:.0f} kB)", file=sys.stderr)


def shoot(page, stack, url: str, out: Path, tour: bool) -> dict:
    """Every first screen of SHOTS, then the tour's steps, at the page's viewport."""
    report: dict = {"first_screen": {}, "tour": {}}
    for target, task in SHOTS:
        if target not in stack.bundle.languages:
            print(f"skipped {target}: not in this bundle", file=sys.stderr)
            continue
        page.goto(f"{url}/?target={target}" + (f"&task={task}" if task else ""), wait_until="domcontentloaded")
        settled(page)
        if task:
            page.wait_for_selector("#spans-merged", state="visible")
            settled(page)
        name = f"first-{target}" + (f"-{task}" if task else "")
        page.screenshot(path=str(out / f"{name}.png"))
        report["first_screen"][name] = {"on_screen": on_screen(page), "bottom": bottoms(page)}
        print(f"wrote {out / name}.png", file=sys.stderr)
    if not tour:
        return report
    page.goto(f"{url}/?target=pt", wait_until="domcontentloaded")
    settled(page)
    for i in range(1, 6):
        page.locator(f"#tour-{i}").click()
        page.wait_for_function("i => (document.querySelector('#tour-note')?.innerText || '').startsWith(i + ' ·')",
                               arg=str(i))
        settled(page)
        page.screenshot(path=str(out / f"tour-{i}.png"))
        report["tour"][i] = {"note": page.locator("#tour-note").inner_text().strip(),
                             "lam": page.locator("#lam input[type=number]").input_value(),
                             "on_screen": on_screen(page)}
    return report


if __name__ == "__main__":
    raise SystemExit(main())
