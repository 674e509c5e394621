"""Issue 4, part 2: the page under load. 16 concurrent gradio_client clients send 200 /compare
requests with distinct (target, source, λ) to an app launched as ``cli.launch_app`` launches it
(queue with 4 workers) on the tiny bundle, over loopback only. Every answer must equal the answer
to the same request made alone (computed first, serially, through the same API); no errors.
p50/p95 latency are printed and written to ``load.json`` in the test's tmp dir."""

from __future__ import annotations

import json
import statistics
import threading
import time

from langarith import tasks

N_CLIENTS = 16
N_REQUESTS = 200
TIMEOUT_S = 60  # per request: the loop is bounded even if the server stalls
PAIRS = [("pt", "es"), ("pt", "de"), ("nl", "de"), ("nl", "es"), ("es", "en"), ("es", "de"),
         ("de", "en"), ("de", "es"), ("en", "es"), ("en", "de")]


def workload(stack) -> list[tuple]:
    """200 requests, no two alike: 10 (target, source) pairs × 20 λ, λ distinct over all 200."""
    out = []
    for i in range(N_REQUESTS):
        target, source = PAIRS[i % len(PAIRS)]
        text = stack.bundle.language(target).examples[0]
        lam = round(i / (N_REQUESTS - 1), 4)
        out.append((target, source, lam, text, tasks.mask_a_word(text)))
    assert len(set(out)) == N_REQUESTS and len({r[2] for r in out}) == N_REQUESTS
    return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def same_answer(got, want, tol: float = 1e-5) -> bool:
    """Two /compare answers equal: every string and label exactly, every probability to ``tol``
    (a batched pass pads rows to one length, which moves probabilities by ~1e-8)."""
    if isinstance(want, float) and isinstance(got, float):
        return abs(got - want) <= tol
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(same_answer(got[k], want[k], tol) for k in want)
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(want) and all(same_answer(g, w, tol) for g, w in zip(got, want))
    if isinstance(want, str) and isinstance(got, str) and want[:1] in "{[" and got != want:
        try:  # a plot's figure travels as a JSON string: its numbers to the same tolerance
            return same_answer(json.loads(got), json.loads(want), tol)
        except ValueError:
            return False
    return got == want


def first_difference(got, want, tol: float = 1e-5, path: str = "") -> str | None:
    """Where two answers differ beyond ``same_answer``'s tolerance (for a report), or None."""
    if same_answer(got, want, tol):
        return None
    if isinstance(want, str) and isinstance(got, str) and want[:1] in "{[":
        try:
            got, want = json.loads(got), json.loads(want)
        except ValueError:
            pass
    if isinstance(want, dict) and isinstance(got, dict) and got.keys() == want.keys():
        return next(d for k in want if (d := first_difference(got[k], want[k], tol, f"{path}.{k}")))
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)) and len(got) == len(want):
        return next(d for i, (g, w) in enumerate(zip(got, want))
                    if (d := first_difference(g, w, tol, f"{path}[{i}]")))
    return f"{path}: {str(got)[:80]!r} vs {str(want)[:80]!r}"


def test_sixteen_clients_two_hundred_requests(stack, app_url, tmp_path):
    from gradio_client import Client

    assert app_url.startswith("http://127.0.0.1:")
    reqs = workload(stack)

    # 1. each request alone, serially, through the same API
    alone = Client(app_url, verbose=False)
    t0 = time.perf_counter()
    serial_lat, refs = [], []
    for r in reqs:
        t = time.perf_counter()
        refs.append(alone.submit(*r, api_name="/compare").result(timeout=TIMEOUT_S))
        serial_lat.append(time.perf_counter() - t)
    serial_s = time.perf_counter() - t0
    # a mix-up between requests would show: the merged predictions of the same pair differ by λ
    merged = {json.dumps(ref[2], sort_keys=True) for ref in refs}
    assert len(merged) == N_REQUESTS, "references must be distinct for the comparison to mean anything"

    # 2. the same requests from 16 clients at once (client t sends requests t, t+16, t+32...),
    # computed again: the merged answers the serial pass left in the stack's memo are forgotten
    tasks.clear_cache(stack, "merged")
    clients = [Client(app_url, verbose=False) for _ in range(N_CLIENTS)]
    answers: dict[int, tuple] = {}
    latency: dict[int, float] = {}
    errors: list[str] = []
    start = threading.Barrier(N_CLIENTS, timeout=60)

    def worker(t: int):
        try:
            start.wait()
            for i in range(t, N_REQUESTS, N_CLIENTS):
                s = time.perf_counter()
                answers[i] = clients[t].submit(*reqs[i], api_name="/compare").result(timeout=TIMEOUT_S)
                latency[i] = time.perf_counter() - s
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"client {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(N_CLIENTS)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=N_REQUESTS * TIMEOUT_S / N_CLIENTS)
    wall_s = time.perf_counter() - t0
    assert not any(th.is_alive() for th in threads), "a client hung"
    assert errors == []
    assert sorted(answers) == list(range(N_REQUESTS))

    for i, r in enumerate(reqs):  # to float tolerance: under load a request shares a batched pass
        assert same_answer(answers[i], refs[i]), f"request {i} {r[:3]} answered differently under load"

    lat = [latency[i] for i in range(N_REQUESTS)]
    report = {
        "clients": N_CLIENTS, "requests": N_REQUESTS, "endpoint": "/compare",
        "bundle": stack.bundle.name, "device": str(stack.device), "queue_workers": 4,
        "p50_s": round(statistics.median(lat), 4), "p95_s": round(percentile(lat, 0.95), 4),
        "max_s": round(max(lat), 4), "wall_s": round(wall_s, 2),
        "throughput_rps": round(N_REQUESTS / wall_s, 2),
        "alone_p50_s": round(statistics.median(serial_lat), 4),
        "alone_p95_s": round(percentile(serial_lat, 0.95), 4), "alone_wall_s": round(serial_s, 2),
    }
    (tmp_path / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nload: {N_CLIENTS} clients x {N_REQUESTS} /compare requests: p50 {report['p50_s']:.3f} s, "
          f"p95 {report['p95_s']:.3f} s, max {report['max_s']:.3f} s, {report['throughput_rps']} req/s "
          f"(alone: p50 {report['alone_p50_s']:.3f} s, p95 {report['alone_p95_s']:.3f} s) "
          f"-> {tmp_path / 'load.json'}")
