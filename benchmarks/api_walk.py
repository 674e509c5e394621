"""Every door tried (issue 41): each named endpoint of the app's own API description
(``/gradio_api/info``), each parameter in turn given hostile values while the others keep their
defaults, through Gradio's plain HTTP API (POST ``/gradio_api/call/<name>``, then its event
stream); then the server's memory before and after three walks.

    PYTHONPATH=. .venv/bin/python benchmarks/api_walk.py [--walks 3] [--bundle DIR]

Prints the count of calls, endpoints and outcomes of each walk and the server's RSS (``python
app.py`` on the shipped bundle, its own process) after start, after three ordinary requests and
after each walk. ``tests/test_api_walk.py`` runs ``walk`` on the tiny bundle.

Outcomes: ``refused`` (an error with a message), ``answered`` (a result), ``generic`` (an error
without a message of the app's own: ``null`` or Gradio's "upstream Gradio app has raised an
exception"), ``unnamed`` (a refusal that names neither the parameter's label nor its name).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
HUGE = "a" * (1 << 20)  # 1 MB
GENERIC = ("upstream Gradio app has raised an exception", "Error", "")


def hostile_values(param: dict) -> list[tuple[str, object]]:
    """What a hostile caller sends for one parameter, by the kind its API description gives."""
    t = param.get("type") or {}
    kind = t.get("type")
    common = [("null", None), ("a list", [1, 2]), ("an object", {"a": 1})]
    files = [("/etc/passwd", "/etc/passwd"), ("{path: /etc/passwd}", {"path": "/etc/passwd"}),
             ("FileData /etc/passwd", {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}})]
    if kind in ("number", "integer"):
        return common + [("text", "abc"), ("true", True), ("NaN", float("nan")), ("inf", float("inf")),
                         ("-inf", float("-inf")), ("1e308", 1e308), ("-1e308", -1e308), ("0.5", 0.5),
                         ("-1", -1), ("2", 2)]
    if kind == "boolean":
        return common + [("text", "yes"), ("2", 2), ("NaN", float("nan"))]
    if kind == "string" or "enum" in t:
        return common + [("number", 12345), ("NaN", float("nan")), ("empty", ""), ("unknown choice", "xx-no-such"),
                         ("1 MB", HUGE), ("control characters", "a\x00b\x1bc"), ("lone surrogate", "a\ud800b"),
                         files[0]]
    return common + [("text", "abc"), ("NaN", float("nan"))] + files  # files and the rest


@dataclass
class Outcome:
    endpoint: str
    param: str
    what: str
    kind: str  # answered | refused | generic | unnamed
    message: str


def call(http: httpx.Client, url: str, endpoint: str, data: list) -> tuple[str, str]:
    """('answered', '') or ('error', message-or-'') of one call through the plain HTTP API."""
    body = json.dumps({"data": data}, allow_nan=True)  # NaN and ±inf as JS literals, as a caller may
    r = http.post(f"{url}gradio_api/call{endpoint}", content=body,
                  headers={"content-type": "application/json"})
    if r.status_code != 200:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text
        if isinstance(detail, list):  # Gradio's validation answer (HTTP 422): one line per input
            detail = "; ".join(d.get("message", "") for d in detail if isinstance(d, dict))
        return "error", detail if isinstance(detail, str) else json.dumps(detail)
    event_id = r.json()["event_id"]
    kind, payload = None, None
    with http.stream("GET", f"{url}gradio_api/call{endpoint}/{event_id}") as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = line.split(":", 1)[1].strip()
                break
    if kind == "complete":
        return "answered", ""
    try:
        msg = json.loads(payload) if payload else None
    except ValueError:
        msg = payload
    if isinstance(msg, dict):  # Gradio's error event: {"error": message or null, "title": ...}
        msg = msg.get("error")
    return "error", msg if isinstance(msg, str) else ""


def defaults(param: dict):
    if param.get("parameter_has_default"):
        return param.get("parameter_default")
    return param.get("example_input")


def plan(info: dict) -> list[tuple]:
    """(endpoint, parameter, what, data, parameter's description, its index) for every hostile call."""
    out = []
    for endpoint, ep in info["named_endpoints"].items():
        params = ep["parameters"]
        base = [defaults(p) for p in params]
        for i, p in enumerate(params):
            for what, value in hostile_values(p):
                data = list(base)
                data[i] = value
                out.append((endpoint, p["parameter_name"], what, data, p, i))
    return out


def classify(endpoint: str, p: dict, what: str, value, result: tuple[str, str], baseline: str) -> Outcome:
    """A refusal is named when it names the parameter (its name or label), quotes the refused
    value back, or is the refusal the endpoint gives its defaults too (``baseline``: e.g. a
    class room's guess before a question is open)."""
    kind, msg = result
    if kind == "answered":
        return Outcome(endpoint, p["parameter_name"], what, "answered", "")
    if not msg or msg.strip() in GENERIC or "upstream Gradio app" in msg:
        return Outcome(endpoint, p["parameter_name"], what, "generic", msg or "null")
    quoted = repr(value)[:20] if isinstance(value, str) and value else None
    names = [p["parameter_name"], p["parameter_name"].replace("_", " "), str(p.get("label") or ""),
             quoted, baseline]
    named = any(n and n in msg for n in names)
    return Outcome(endpoint, p["parameter_name"], what, "refused" if named else "unnamed", msg)


def walk(url: str, workers: int = 8) -> list[Outcome]:
    """Every named endpoint, every parameter, the hostile values; calls ``workers`` at a time."""
    url = url if url.endswith("/") else url + "/"
    with httpx.Client(timeout=120) as http:
        info = http.get(f"{url}gradio_api/info").json()
        calls = plan(info)
        baseline = {}
        for endpoint, ep in info["named_endpoints"].items():
            kind, msg = call(http, url, endpoint, [defaults(p) for p in ep["parameters"]])
            baseline[endpoint] = msg if kind == "error" else ""

        def one(c):
            endpoint, _, what, data, p, i = c
            return classify(endpoint, p, what, data[i], call(http, url, endpoint, data), baseline[endpoint])

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, calls))


def summary(outcomes: list[Outcome]) -> str:
    counts = Counter(o.kind for o in outcomes)
    endpoints = len({o.endpoint for o in outcomes})
    return (f"{len(outcomes)} calls, {endpoints} endpoints: " +
            ", ".join(f"{counts[k]} {k}" for k in ("refused", "answered", "generic", "unnamed")))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--walks", type=int, default=3)
    ap.add_argument("--bundle", default=str(ROOT / "assets" / "bundle"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.classroom import start_app  # noqa: E402
    import tempfile

    os.environ["LANGARITH_BUNDLE"] = args.bundle
    proc, url = start_app(Path(tempfile.mkdtemp(prefix="api_walk")))
    try:
        print(f"app: python app.py, bundle {args.bundle}; RSS after start {rss_mb(proc.pid):.0f} MB")
        with httpx.Client(timeout=120) as http:
            info = http.get(f"{url}gradio_api/info").json()
            ordinary = {e: [defaults(p) for p in ep["parameters"]] for e, ep in info["named_endpoints"].items()
                        if e in ("/compare", "/flips", "/details")}
            for e, data in ordinary.items():
                print(f"ordinary request {e}: {call(http, url, e, data)[0]}")
        print(f"RSS after three ordinary requests: {rss_mb(proc.pid):.0f} MB")
        for w in range(args.walks):
            t = time.perf_counter()
            out = walk(url)
            print(f"walk {w + 1}: {summary(out)} in {time.perf_counter() - t:.0f} s; "
                  f"RSS {rss_mb(proc.pid):.0f} MB")
            for o in out:
                if o.kind in ("generic", "unnamed"):
                    print(f"   {o.kind}: {o.endpoint} {o.param} = {o.what}: {o.message[:160]!r}")
        with httpx.Client(timeout=120) as http:
            for e, data in ordinary.items():
                print(f"ordinary request {e} afterwards: {call(http, url, e, data)[0]}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
