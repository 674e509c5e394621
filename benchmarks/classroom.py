"""A class on one Space, and a soak: the app (``python app.py`` on the shipped bundle, its own
process) under N students and under many events.

    PYTHONPATH=. .venv/bin/python benchmarks/classroom.py [--students 1,30,100] [--releases 4]
        [--soak 10000] [--out benchmarks/RESULTS_class.md]

- class: each configuration on a fresh app (a cold memo; each student's λ drawn anew); each
  student is a ``gradio_client`` client (or a plain HTTP one) that, on every release, sends what the page
  sends on a release (the predictions ``/compare_recipe``; then the details step ``/details`` and
  the flips ``/flips`` at once) for one of five zero-shot pairs with its own text, then thinks
  1-2 s. λ on the slider's grid (what the page sends) or anywhere in [0, 1] (API callers).
  Reported: release → predictions and → whole chain, p50/p95/max, errors, and the answers that
  differ from the same request computed alone afterwards in a fresh stack (probabilities to 1e-5).
- soak: 4 clients send ``/flips`` (CPU-only) and, every 10th, ``/compare``; median latency of each
  per block of events served, and the server's RSS.
- room (``--room 30``): a class room (``/room_open``) where 30 students each commit guesses to the
  tour's two questions (``/room_guess``, then a second thought) and poll it as the page does
  (``/room_poll`` every 3 s) while as many others slide λ (the class's chain, plain HTTP clients):
  a guess's answer p50/p95 and the sliders' predictions p95 against the same class without the
  room, in the same app; then the server's RSS before and after 10,000 guesses across 200 rooms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.run import free_port, log, percentile, proc_memory, wait_http  # noqa: E402

PAIRS = ("pt", "pt-br", "gl", "ca", "sl")  # the shipped bundle's zero-shot targets (B: suggested)


def start_app(logdir: Path, profiling: bool = False) -> tuple[subprocess.Popen, str]:
    """``python app.py`` on the shipped bundle; ``profiling``: with Gradio's per-event traces
    (``GRADIO_PROFILING``: queue wait and function time of every event), for the class only (the
    traces are kept in memory, which a soak would count)."""
    port = free_port()
    env = dict(os.environ, LANGARITH_BUNDLE=str(ROOT / "assets" / "bundle"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), GRADIO_SERVER_PORT=str(port),
               GRADIO_PROFILING="1" if profiling else "")
    logf = open(logdir / f"app-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    wait_http(url, proc)
    return proc, url


def texts_of_pairs() -> dict[str, str]:
    """Each pair's text: the one the page opens the target on (its first dev text, as shipped in
    ``results/opening_curves.json``), else the target's first example."""
    from langarith import opening_curves
    from langarith.loading import Bundle

    b = Bundle.load(ROOT / "assets" / "bundle")
    path = b.path("results") / f"{opening_curves.FILE}.json"
    opening = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {t: (opening[t][0]["text"] if opening.get(t) else b.language(t).examples[0])
            for t in PAIRS if t in b.languages}


def shown_pair() -> tuple[dict[str, str], str]:
    """Each pair's source B and the task, as the page's pickers send them (the door refuses a
    missing value of a picker that always holds one)."""
    from langarith.loading import Bundle

    b = Bundle.load(ROOT / "assets" / "bundle")
    return {t: b.language(t).source for t in PAIRS if t in b.languages}, b.default_task


SOURCES, TASK = shown_pair()


def lambdas_of(mode: str, rng: random.Random) -> float:
    """A student's λ: on the slider's grid (what the page sends: multiples of its step, 0.05), or
    anywhere in [0, 1] to two decimals (what an API caller may send)."""
    return round(rng.randrange(21) * 0.05, 2) if mode == "slider" else round(rng.random(), 2)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GradioClient:
    """A student through ``gradio_client`` (as the issue's first measurement was made)."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False)

    def call(self, api: str, **inputs):
        return self.client.predict(**inputs, api_name=f"/{api}")


class HttpClient:
    """A student through Gradio's plain HTTP API (``POST /gradio_api/call/v2/<api>`` with the
    inputs by name, then its event stream): what a browser costs the server, with far less CPU
    on this machine than ``gradio_client`` (its threads and parsing), which shares the 2 cores."""

    def __init__(self, url: str):
        import httpx

        self.url, self.http = url, httpx.Client(timeout=300)

    def call(self, api: str, **inputs):
        r = self.http.post(f"{self.url}gradio_api/call/v2/{api}", json=inputs)
        r.raise_for_status()
        kind = None
        with self.http.stream("GET", f"{self.url}gradio_api/call/v2/{api}/{r.json()['event_id']}") as s:
            for line in s.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: "):]
                elif line.startswith("data: ") and kind in ("complete", "error"):
                    data = json.loads(line[len("data: "):])
                    if kind == "error":
                        raise RuntimeError(f"/{api}: {data}")
                    return data
        raise RuntimeError(f"/{api}: the event stream ended without an answer")


CLIENTS = {"gradio": GradioClient, "http": HttpClient}


def run_class(url: str, server_pid: int, students: int, releases: int, texts: dict[str, str],
              mode: str = "slider", client: str = "gradio", seed: int = 0) -> dict:
    """N students releasing the slider R times each; every release is the page's chain: the
    predictions (``/compare_recipe``, the release event itself), then the details step
    (``/details``: fill-mask, the text's masked-LM loss, the per-layer plots) and the flips
    (``/flips``, a CPU-only event) at once, as the page sends them."""
    from langarith import tasks

    rng = random.Random(seed)
    plan = [[(t, lambdas_of(mode, rng), rng.uniform(1.0, 2.0)) for t in
             [list(texts)[(s + r) % len(texts)] for r in range(releases)]] for s in range(students)]
    clients = [CLIENTS[client](url) for _ in range(students)]
    to_pred, to_chain, errors, answers = [], [], [], []
    lock = threading.Lock()
    barrier = threading.Barrier(students, timeout=120)

    def student(s: int):
        c = clients[s]
        try:
            barrier.wait()
            for target, lam, think in plan[s]:
                text = texts[target]
                pair = dict(target=target, source=SOURCES[target], lam=lam)
                shown = dict(pair, text=text, mask_text=tasks.mask_a_word(text, "<mask>"))
                t0 = time.perf_counter()
                got = c.call("compare_recipe", **shown)
                t1 = time.perf_counter()
                flips_error: list = []

                def flips_call():
                    try:
                        c.call("flips", **pair, task_name=TASK)
                    except Exception as e:  # noqa: BLE001 - the student's error, raised below
                        flips_error.append(e)

                flips = threading.Thread(target=flips_call)
                flips.start()  # the page sends the details and the flips at once
                c.call("details", **shown)
                flips.join()
                if flips_error:
                    raise flips_error[0]
                t2 = time.perf_counter()
                with lock:
                    to_pred.append(t1 - t0)
                    to_chain.append(t2 - t0)
                    answers.append(((target, lam, text, shown["mask_text"]), got))
                time.sleep(think)
        except Exception as e:  # noqa: BLE001 - counted
            with lock:
                errors.append(f"student {s}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=student, args=(s,), daemon=True) for s in range(students)]
    cpu0 = cpu_seconds(server_pid), time.process_time()
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(900)
    wall = time.perf_counter() - t0
    # Both sides share this machine's cores: the students' clients take CPU a real class's
    # browsers would take on their own machines.
    cpu = {"server_cpu_s": cpu_seconds(server_pid) - cpu0[0], "clients_cpu_s": time.process_time() - cpu0[1]}

    def stat(xs):
        return {"n": len(xs), "p50": statistics.median(xs), "p95": percentile(xs, 0.95), "max": max(xs)} if xs else {}

    return {"students": students, "releases": releases, "lambdas": mode, "client": client,
            "to_predictions": stat(to_pred),
            "to_chain": stat(to_chain), "errors": len(errors), "error_examples": errors[:3],
            "answers": answers, "wall_s": wall, **cpu}


def model_floor(releases: list[tuple], batch: int, details_batch: int) -> dict:
    """The model work of a class's releases without the server: the page's own predictions and
    details handlers on a fresh stack in this process (batches as the queue makes them at best:
    ``batch`` predictions, ``details_batch`` details), CPU seconds per release. What the app
    spends beyond this per release is serving (HTTP, queue, pre/postprocessing, JSON)."""
    from langarith import opening_curves
    from langarith.model import LanguageStack
    from langarith.page import common, compare
    from langarith.page import demo as page_demo

    stack = LanguageStack(ROOT / "assets" / "bundle")
    common.serve(stack)
    opening_curves.seed(stack)  # as the page does at start-up
    cols = list(zip(*[(t, SOURCES[t], lam, text, probe) for t, lam, text, probe in releases]))
    t0 = time.process_time()
    for i in range(0, len(releases), batch):
        compare.on_predict_rows(stack, *[list(c[i:i + batch]) for c in cols])
    t1 = time.process_time()
    for i in range(0, len(releases), details_batch):
        page_demo.on_details_rows(stack, *[list(c[i:i + details_batch]) for c in cols])
    t2 = time.process_time()
    n = max(len(releases), 1)
    return {"releases": len(releases), "predictions_cpu_per_release": (t1 - t0) / n,
            "details_cpu_per_release": (t2 - t1) / n, "cpu_per_release": (t2 - t0) / n}


def where_time_goes(url: str) -> dict:
    """Gradio's traces of the events served since the last call, by event: how many calls (a
    batch is one), the time waiting in the queue and in the function (p50/p95, ms), and the
    function's total time (the model lane's busy time, for the model events)."""
    import httpx

    traces = httpx.get(url + "gradio_api/profiling/traces", timeout=60).json()
    httpx.post(url + "gradio_api/profiling/clear", timeout=60)
    out = {}
    for name in sorted({t["fn_name"] for t in traces}):
        mine = [t for t in traces if t["fn_name"] == name]
        # total: pre- and postprocessing and the function (fn_call_ms is not traced for batches)
        wait, call = [t["queue_wait_ms"] for t in mine], [t["total_ms"] for t in mine]
        out[name] = {"calls": len(mine), "queue_wait_p50": statistics.median(wait),
                     "queue_wait_p95": percentile(wait, 0.95), "fn_p50": statistics.median(call),
                     "fn_p95": percentile(call, 0.95), "fn_total_s": sum(call) / 1000}
    return out


def warm_up(url: str) -> None:
    """The app's first calls (lazy imports, first batches) on a text no student sends, so that
    the class meets a started app with a cold memo for its own texts."""
    c = HttpClient(url)
    t = PAIRS[0]
    text = "Warm-up: a sentence that no student of the benchmark sends."
    shown = dict(target=t, source=SOURCES[t], lam=0.5, text=text, mask_text=text.replace("sentence", "<mask>"))
    c.call("compare_recipe", **shown)
    c.call("details", **shown)
    where_time_goes(url)


def check_alone(runs: list[dict]) -> None:
    """Each class answer against the same request alone, computed afresh in this process (its
    own stack and memo, one request per call): the three prediction columns to 1e-5."""
    from langarith.model import LanguageStack
    from langarith.page import compare
    from test_load import first_difference

    stack = LanguageStack(ROOT / "assets" / "bundle")
    for run in runs:
        diffs = []
        for (target, lam, text, probe), got in run.pop("answers"):
            want = compare.on_predict_rows(stack, [target], [SOURCES[target]], [lam], [text], [probe])
            got = _labels(got[:4])
            # a gr.Label sends its top classes only (num_top_classes): compare those
            want = [want[0][0]] + [dict(sorted(col[0]["value"].items(), key=lambda kv: -kv[1])[:len(g)])
                                   for col, g in zip(want[1:4], got[1:])]
            diffs.append(first_difference(got, want))
        run["differing"] = sum(d is not None for d in diffs)
        run["checked"] = len(diffs)
        run["difference_examples"] = [d for d in diffs if d][:3]


def _labels(out: list) -> list:
    """A predictions answer as (formula, {label: probability} × 3) for comparing."""
    def value(o):  # an update dict from the API carries the Label's value under "value"
        return o["value"] if isinstance(o, dict) and "__type__" in o else o or {}

    return [out[0]] + [{c["label"]: c["confidence"] for c in value(o).get("confidences", [])} for o in out[1:4]]


def run_soak(url: str, pid: int, events: int, block: int = 1000) -> dict:
    from gradio_client import Client

    texts = texts_of_pairs()
    target, text = next(iter(texts.items()))
    clients = [Client(url, verbose=False) for _ in range(4)]
    rows, lock, served = [], threading.Lock(), [0]

    def work(c):
        while True:
            with lock:
                if served[0] >= events:
                    return
                served[0] += 1
                i = served[0]
            kind = "compare" if i % 10 == 0 else "flips"
            lam = round((i % 97) / 96, 3)
            t = time.perf_counter()
            if kind == "compare":
                c.predict(target, SOURCES[target], lam, text, "", api_name="/compare")
            else:
                c.predict(target, SOURCES[target], lam, TASK, api_name="/flips")
            with lock:
                rows.append((i, kind, time.perf_counter() - t))

    rss = [(0, proc_memory(pid)["VmRSS"])]
    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        time.sleep(5)
        rss.append((served[0], proc_memory(pid)["VmRSS"]))
        log(f"soak: {served[0]} events, RSS {rss[-1][1] / 2**20:.0f} MB")
    blocks = []
    for start in range(0, events, block):
        part = [r for r in rows if start < r[0] <= start + block]
        blocks.append({"events": start + block,
                       "flips_p50": statistics.median([r[2] for r in part if r[1] == "flips"] or [0]),
                       "compare_p50": statistics.median([r[2] for r in part if r[1] == "compare"] or [0])})
    return {"events": events, "blocks": blocks, "rss": rss}


def room_questions() -> list[str]:
    """The ids of the tour's two questions for the first pair, as the page makes them."""
    from langarith.model import LanguageStack
    from langarith.page import room

    stack = LanguageStack(ROOT / "assets" / "bundle")
    return [room.ask_id(stack, kind, PAIRS[0], None, None) for kind in ("lam", "fix")]


def stat(xs: list[float]) -> dict:
    return {"n": len(xs), "p50": statistics.median(xs), "p95": percentile(xs, 0.95), "max": max(xs)} if xs else {}


def run_room(url: str, pid: int, students: int, releases: int, texts: dict[str, str],
             questions: list[str], seed: int = 0) -> dict:
    """``students`` in one room guessing while as many slide λ; the sliders' run alone first."""
    alone = run_class(url, pid, students, releases, texts, "slider", "http", seed=seed)
    alone.pop("answers")
    code = HttpClient(url).call("room_open")[0]
    rng = random.Random(seed + 1)
    took, errors, polls, lock = [], [], [0], threading.Lock()
    barrier = threading.Barrier(students, timeout=120)

    def guesser(s: int):
        c, token, seen = HttpClient(url), f"bench-{s}", None
        plan = [(q, round(rng.randrange(21) * 0.05, 2) if q.startswith("lam") else None,
                 rng.choice(("yes", "no")), rng.uniform(1.0, 3.0)) for q in questions for _ in range(2)]
        try:
            barrier.wait()
            for qid, lam, yes_no, think in plan:  # each question twice: a second thought replaces the first
                end = time.perf_counter() + think
                while time.perf_counter() < end:  # the page's poll while the student thinks
                    out = c.call("room_poll", code=code, key="", token=token, qid=qid, seen=seen)
                    seen = out[4] if isinstance(out[4], (int, float)) else seen
                    with lock:
                        polls[0] += 1
                    time.sleep(min(3.0, max(0.0, end - time.perf_counter())))
                t0 = time.perf_counter()
                c.call("room_guess", code=code, token=token, qid=qid, lam_guess=lam if lam is not None else 0.5,
                       yes_no=yes_no)
                with lock:
                    took.append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - counted
            with lock:
                errors.append(f"guesser {s}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=guesser, args=(s,), daemon=True) for s in range(students)]
    for th in threads:
        th.start()
    with_room = run_class(url, pid, students, releases, texts, "slider", "http", seed=seed)
    with_room.pop("answers")
    for th in threads:
        th.join(600)
    return {"students": students, "releases": releases, "guess": stat(took), "guess_errors": len(errors),
            "guess_error_examples": errors[:3], "polls": polls[0],
            "sliders_alone": alone["to_predictions"], "sliders_with_room": with_room["to_predictions"],
            "slider_errors": alone["errors"] + with_room["errors"]}


def run_room_flood(url: str, pid: int, questions: list[str], rooms: int = 199, guesses: int = 10_000,
                   threads: int = 8) -> dict:
    """Server RSS before and after ``guesses`` guesses spread over ``rooms`` new rooms (beside the
    class's room: 200, the store's most; the tour's two questions, a new student token per
    guess): the store is bounded, so is the memory."""
    opener = HttpClient(url)
    before = proc_memory(pid)["VmRSS"]
    codes, refused = [], 0
    for _ in range(rooms):
        try:
            codes.append(opener.call("room_open")[0])
        except RuntimeError:
            refused += 1
    work = iter(range(guesses))
    lock, took, errors = threading.Lock(), [], []

    def flood():
        c = HttpClient(url)
        while True:
            with lock:
                i = next(work, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                c.call("room_guess", code=codes[i % len(codes)], token=f"flood-{i}",
                       qid=questions[i % 2], lam_guess=round((i % 21) * 0.05, 2), yes_no="yes")
            except RuntimeError as e:
                with lock:
                    errors.append(str(e)[:200])
            with lock:
                took.append(time.perf_counter() - t0)

    ts = [threading.Thread(target=flood, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(1800)
    return {"rooms": len(codes), "rooms_refused": refused, "guesses": guesses, "guess": stat(took),
            "errors": len(errors), "error_examples": errors[:3],
            "rss_before": before, "rss_after": proc_memory(pid)["VmRSS"]}


def render_room(res: dict) -> list[str]:
    r, f = res.get("room"), res.get("room_flood")
    out = []
    if r:
        g, a, w = r["guess"], r["sliders_alone"], r["sliders_with_room"]
        out += ["", f"## A class room: {r['students']} students guessing while {r['students']} slide λ", "",
                f"{r['students']} students in one room each commit guesses to the tour's two questions "
                "(each twice: a second thought replaces the first; `/room_guess`), polling the room "
                f"as the page does (`/room_poll` every 3 s: {r['polls']} polls), while {r['students']} "
                f"others release the slider {r['releases']} times each (the class's chain, plain HTTP "
                "clients, λ on the slider's grid). The same sliders alone first, in the same app.", "",
                "| | n | p50 (s) | p95 (s) | max (s) | errors |", "|---|---|---|---|---|---|",
                f"| a guess's answer (`/room_guess`) | {g.get('n', 0)} | {g.get('p50', 0):.3f} | "
                f"{g.get('p95', 0):.3f} | {g.get('max', 0):.3f} | {r['guess_errors']} |",
                f"| sliders' predictions, alone | {a.get('n', 0)} | {a.get('p50', 0):.2f} | {a.get('p95', 0):.2f} | "
                f"{a.get('max', 0):.2f} | |",
                f"| sliders' predictions, with the room | {w.get('n', 0)} | {w.get('p50', 0):.2f} | "
                f"{w.get('p95', 0):.2f} | {w.get('max', 0):.2f} | {r['slider_errors']} (both runs) |"]
    if f:
        out += ["", f"Flood: {f['guesses']:,} guesses (8 clients, a new student each) across {f['rooms']} "
                f"new rooms and the class's ({f['rooms_refused']} opens refused; the store holds at most 200): "
                "a guess's answer p50 "
                f"{f['guess'].get('p50', 0):.3f} s, p95 {f['guess'].get('p95', 0):.3f} s, {f['errors']} refused "
                f"(a room holds at most 400 guesses). Server RSS {f['rss_before'] / 2**20:.0f} MB before → "
                f"{f['rss_after'] / 2**20:.0f} MB after ({(f['rss_after'] - f['rss_before']) / 2**20:+.0f} MB)."]
    return out


def render(res: dict) -> str:
    out = ["# A class on one Space (benchmarks/classroom.py)", "",
           f"Command: `{res['command']}`; {res['date']}; {os.cpu_count()} cores; the app in its own process "
           "(`python app.py`, shipped bundle, CPU).", "",
           "Each release is the page's chain: predictions (`/compare_recipe`), then the details step "
           "(`/details`) and the flips (`/flips`) at once. λ: `slider` = the slider's 0.05 grid (what the page "
           "sends), `any` = anywhere in [0, 1] (API callers). Each configuration runs on a fresh app (a cold "
           "memo: only the opening texts' masked-LM curves shipped with the bundle are in it; each "
           "student's λ drawn anew); the texts are the ones the page opens each target on.", "",
           "Clients: `gradio` = each student a `gradio_client` client (as the issue measured it; on "
           "this machine the clients take as much CPU as the server), `http` = Gradio's plain HTTP "
           "API (`/gradio_api/call/v2/...`), about as light as a browser's requests.", "",
           "| students × releases, λ, clients | release → predictions p50 / p95 / max (s) | whole chain "
           "p50 / p95 (s) | errors | answers differing from alone | server / clients CPU-s in wall s "
           "| server CPU-s per release |",
           "|---|---|---|---|---|---|---|"]
    for c in res.get("class", []):
        p, w = c["to_predictions"], c["to_chain"]
        out.append(f"| {c['students']} × {c['releases']}, {c['lambdas']}, {c.get('client', 'gradio')} | "
                   f"{p.get('p50', 0):.2f} / {p.get('p95', 0):.2f} / {p.get('max', 0):.2f} | "
                   f"{w.get('p50', 0):.2f} / {w.get('p95', 0):.2f} | {c['errors']} | "
                   f"{c['differing']} of {c['checked']} | {c['server_cpu_s']:.1f} / {c['clients_cpu_s']:.1f} "
                   f"in {c['wall_s']:.1f} | {c.get('server_cpu_per_release', 0):.3f} |")
    floors = [c for c in res.get("class", []) if c.get("floor")]
    if floors:
        out += ["", "The limit: the same releases' model work alone (the page's predictions and details "
                "handlers on a fresh stack in one process, no server; predictions in batches of up to 32, "
                "details of 8), CPU seconds per release, against what the server spent per release:", "",
                "| students, λ | model work alone: predictions + details = total (CPU-s per release) "
                "| server (CPU-s per release) | server / model work |", "|---|---|---|---|"]
        for c in floors:
            f = c["floor"]
            out.append(f"| {c['students']}, {c['lambdas']} | {f['predictions_cpu_per_release']:.3f} + "
                       f"{f['details_cpu_per_release']:.3f} = {f['cpu_per_release']:.3f} | "
                       f"{c['server_cpu_per_release']:.3f} | "
                       f"{c['server_cpu_per_release'] / max(f['cpu_per_release'], 1e-9):.1f}× |")
    largest = max((c["students"] for c in res.get("class", [])), default=0)
    for c in [c for c in res.get("class", []) if c.get("events") and c["students"] == largest]:
        out += ["", f"Where the time goes at {c['students']} students (λ {c['lambdas']}, "
                f"{c.get('client', 'gradio')} clients; Gradio's traces, one call per batch for the "
                "batched model events):", "",
                f"| event ({c['lambdas']}, {c.get('client', 'gradio')}) | calls | queue wait p50 / p95 (ms) "
                "| processing p50 / p95 (ms) | processing total (s) |", "|---|---|---|---|---|"]
        for name, e in sorted(c["events"].items(), key=lambda kv: -kv[1]["fn_total_s"]):
            out.append(f"| `{name}` | {e['calls']} | {e['queue_wait_p50']:.0f} / {e['queue_wait_p95']:.0f} | "
                       f"{e['fn_p50']:.0f} / {e['fn_p95']:.0f} | {e['fn_total_s']:.1f} |")
    if res.get("soak"):
        s = res["soak"]
        out += ["", f"Soak: {s['events']} events from 4 clients (`/flips`, every 10th `/compare`).", "",
                "| events served | /flips p50 (s) | /compare p50 (s) |", "|---|---|---|"]
        out += [f"| {b['events']} | {b['flips_p50']:.3f} | {b['compare_p50']:.3f} |" for b in s["blocks"]]
        r0, r1 = s["rss"][0][1], s["rss"][-1][1]
        out += ["", f"Server RSS: {r0 / 2**20:.0f} MB at start of the soak → {r1 / 2**20:.0f} MB after "
                f"{s['rss'][-1][0]} events ({(r1 - r0) / 2**20:+.0f} MB)."]
    out += render_room(res)
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", default="1,30,100")
    ap.add_argument("--releases", type=int, default=4)
    ap.add_argument("--lambdas", default="slider,any", help="slider: the page's 0.05 grid; any: [0, 1]")
    ap.add_argument("--clients", default="gradio,http", help="gradio: gradio_client (heavy on this "
                    "machine's CPU); http: Gradio's plain HTTP API, as light as a browser's requests")
    ap.add_argument("--soak", type=int, default=10000, help="events of the soak (0: none)")
    ap.add_argument("--room", type=int, default=0, help="students in one class room guessing while as "
                    "many slide λ, then 10,000 guesses across 200 rooms (0: none)")
    ap.add_argument("--flood", type=int, default=10_000, help="guesses across 200 rooms after the room")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_class.md"))
    args = ap.parse_args(argv)
    res = {"command": "python benchmarks/classroom.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M %Z"), "class": []}
    texts = texts_of_pairs()
    from langarith import tasks

    questions = room_questions() if args.room else []

    with tempfile.TemporaryDirectory() as tmp:
        # Each configuration on a fresh app: a cold memo, as a class meets a Space that has just
        # started (only the opening texts' curves, shipped with the bundle, are in it).
        for client in [c for c in args.clients.split(",") if c]:
            for mode in [m for m in args.lambdas.split(",") if m]:
                for n in [int(x) for x in args.students.split(",") if x]:
                    proc, url = start_app(Path(tmp), profiling=True)
                    try:
                        warm_up(url)
                        log(f"class: {n} students, λ {mode}, {client} clients (a fresh app)")
                        run = run_class(url, proc.pid, n, args.releases, texts, mode, client,
                                        seed=len(res["class"]) + 1)  # each student's λ drawn anew
                        run["events"] = where_time_goes(url)
                        run["server_cpu_per_release"] = run["server_cpu_s"] / max(len(run["answers"]), 1)
                        res["class"].append(run)
                        log(json.dumps({k: v for k, v in run.items() if k != "answers"}))
                    finally:
                        proc.terminate()
                        proc.wait(30)
        if args.room:
            proc, url = start_app(Path(tmp), profiling=True)
            try:
                warm_up(url)
                log(f"room: {args.room} students guessing while {args.room} slide λ")
                res["room"] = run_room(url, proc.pid, args.room, args.releases, texts, questions)
                log(json.dumps(res["room"]))
                res["room_flood"] = run_room_flood(url, proc.pid, questions, guesses=args.flood)
                log(json.dumps(res["room_flood"]))
            finally:
                proc.terminate()
                proc.wait(30)
        if args.soak:  # a fresh app: the soak's first block is its first events
            proc, url = start_app(Path(tmp))
            try:
                res["soak"] = run_soak(url, proc.pid, args.soak)
            finally:
                proc.terminate()
                proc.wait(30)
    from langarith.hosting import MAX_BATCH
    from langarith.page.demo import DETAILS_BATCH

    for c in res["class"]:  # after the apps have stopped: the same releases' model work alone
        if c["students"] == max(x["students"] for x in res["class"] if x["lambdas"] == c["lambdas"]):
            c["floor"] = model_floor([r for r, _ in c["answers"]], MAX_BATCH, DETAILS_BATCH)
            log(f"floor ({c['students']}, {c['lambdas']}): {json.dumps(c['floor'])}")
    check_alone(res["class"])  # after the app has stopped: it does not compete with the class
    text = render(res)
    Path(args.out).write_text(text + "\n")
    print(json.dumps(res, default=str))
    log(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
