"""Benchmarks of langarith; writes benchmarks/RESULTS.md.

    PYTHONPATH=. .venv/bin/python benchmarks/run.py [--quick] [--out benchmarks/RESULTS.md]

1. merge latency of the live slot (``LanguageStack.write_merge``) at three adapter sizes, against a
   flat ``torch.lerp`` over the same floats, ``base_model.average_adapter`` and a per-module
   ``load_state_dict`` loop (all timed interleaved, in the same run, so ratios are comparable);
2. predict latency on the shipped bundle (``tasks.compare`` cold / warm, ``tasks.classify`` × 32);
3. slider release → updated predictions and plots, in Debian chromium driven by playwright;
4. app start (``python app.py``) → the page's #formula filled;
5. RSS of the app process after start and after 20 interactions;
6. λ sweep and similarity matrix on the shipped bundle;
7. ZeroGPU-safe slot writes: today's flat ``lerp``, the same after the views check
   (``FlatAdapter.live``), ``torch._foreach_copy_`` + ``_foreach_lerp_`` over the parameters and a
   per-tensor ``lerp(out=p)`` loop, each also after a simulated per-tensor move (``--skip zerogpu``);
8. a class on one Space and a soak (``benchmarks/classroom.py``, its own report
   ``benchmarks/RESULTS_class.md``; ``--skip class``).

Every figure is a median with its p10–p90 spread and n. The machine may be shared: medians, and
ratios taken within one run, are what to read.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message=".*HTTP_422_UNPROCESSABLE_ENTITY.*")  # gradio 6.17 noise

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "assets" / "bundle"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TARGET_MERGE_VS_LERP = 1.3  # live slot median ≤ 1.3 × flat lerp
TARGET_MERGE_VS_AVERAGE = 20.0  # live slot ≥ 20 × faster than average_adapter
TARGET_SLIDER_S = 0.3  # slider release → new predictions and plots
TARGET_DRAG_RATE = 3.0  # repaints per second while the slider is held and moved


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- statistics ----------------------------------------------------------------------------------


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Stat:
    """Seconds per call."""

    samples: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p10(self) -> float:
        return percentile(self.samples, 0.10)

    @property
    def p90(self) -> float:
        return percentile(self.samples, 0.90)

    def fmt(self, unit: str = "ms") -> str:
        if unit == "ms" and self.median < 1e-4:
            unit = "µs"
        f = {"ms": 1e3, "s": 1.0, "µs": 1e6}[unit]
        d = 3 if unit == "s" else (3 if self.median * f < 10 else 1)
        return (f"{self.median * f:.{d}f} {unit} ({self.p10 * f:.{d}f}–{self.p90 * f:.{d}f}, "
                f"n={self.n})")

    def to_json(self) -> dict:
        return {"median": self.median, "p10": self.p10, "p90": self.p90, "n": self.n}


def timed(fn, *args, **kwargs) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


# --- 1. merge latency ----------------------------------------------------------------------------


def adapter_modules(model, names: list[str]) -> list[tuple]:
    """(module[name] for name in names) for every ModuleDict holding all of them: the per-layer
    bottleneck adapters and the invertible adapter of a MAD-X language adapter."""
    out = []
    for _, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleDict) and all(n in mod for n in names):
            out.append(tuple(mod[n] for n in names))
    return out


def state_dict_merge(triples: list[tuple], lam: float) -> None:
    """The reference code's way: λA + (1−λ)B per tensor into a new dict, load_state_dict per module."""
    for ma, mb, mm in triples:
        sa, sb = ma.state_dict(), mb.state_dict()
        mm.load_state_dict({k: lam * sa[k] + (1 - lam) * sb[k] for k in sa})


@dataclass
class MergeResult:
    name: str
    params: int
    tensors: int
    stats: dict[str, Stat]
    max_abs_diff: dict[str, float]  # each alternative's result vs the live slot at the last λ

    @property
    def bytes_moved(self) -> int:
        return 3 * self.params * 4  # read A, read B, write M; fp32

    def gbps(self, key: str) -> float:
        return self.bytes_moved / self.stats[key].median / 1e9

    def ratio(self, key: str) -> float:
        """Median of ``key`` / median of the live slot."""
        return self.stats[key].median / self.stats["slot"].median

    def to_json(self) -> dict:
        return {"name": self.name, "params": self.params, "tensors": self.tensors,
                "bytes_moved": self.bytes_moved,
                "stats": {k: s.to_json() for k, s in self.stats.items()},
                "max_abs_diff": self.max_abs_diff}


def reference_model(stack, a: str, b: str):
    """A separate plain ``adapters`` model with the same two language adapters, loaded by the library."""
    from adapters import BertAdapterModel

    bundle = stack.bundle
    model = BertAdapterModel.from_pretrained(str(bundle.base_path()))
    for code in (a, b):
        model.load_adapter(str(bundle.path(bundle.languages[code].adapter)), load_as=code,
                           set_active=False, use_safetensors=True)
    model.add_adapter("m_lsd", config=model.adapters_config.get(a))
    return model.eval().requires_grad_(False)


def lambdas(n: int):
    """λ values in (0, 1) that differ on every call."""
    return [0.05 + 0.9 * ((i * 0.6180339887) % 1.0) for i in range(n)]


def bench_merge(stack, name: str, repeats: int, fast_per_round: int = 5, warmup: int = 2,
                a: str | None = None, b: str | None = None) -> MergeResult:
    """Time the four ways of writing λA + (1−λ)B, interleaved round by round.

    Each round: ``fast_per_round`` calls of the live slot and of the flat lerp, one call of
    ``average_adapter`` and one of the load_state_dict loop. ``repeats`` rounds in all.
    """
    from langarith.model import language_params

    langs = stack.bundle.adapter_languages()
    a = a or stack.bundle.task_language
    b = b or next(c for c in langs if c != a)
    n = stack.slot.flat.numel()
    tensors = len(stack.slot.keys)
    ref = reference_model(stack, a, b)
    triples = adapter_modules(ref.base_model, [a, b, "m_lsd"])
    gen = torch.Generator().manual_seed(0)
    fa, fb, fm = (torch.randn(n, generator=gen) for _ in range(3))

    def slot(lam):
        with stack.lock:
            stack.write_merge({a: lam, b: 1.0 - lam})

    def flat(lam):
        torch.lerp(fb, fa, lam, out=fm)

    def average(lam):
        ref.base_model.average_adapter("m", [a, b], weights=[lam, 1.0 - lam],
                                       normalize_weights=False, overwrite_ok=True)

    def lsd(lam):
        with torch.no_grad():
            state_dict_merge(triples, lam)

    fns = {"slot": slot, "flat_lerp": flat, "average_adapter": average, "load_state_dict": lsd}
    stats = {k: Stat() for k in fns}
    lams = iter(lambdas(10 * (repeats * (2 * fast_per_round + 2) + 4 * warmup) + 10))
    for _ in range(warmup):
        for fn in fns.values():
            fn(next(lams))
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))  # no fixed position in a round
        for k in order:
            for _ in range(fast_per_round if k in ("slot", "flat_lerp") else 1):
                stats[k].samples.append(timed(fns[k], next(lams)))

    # correctness: every way gives the same merge at one λ
    lam = 0.3
    slot(lam)
    average(lam)
    lsd(lam)
    want = {k: v for k, v in stack.slot.state_dict().items()}
    diffs = {}
    for key, adapter in (("average_adapter", "m"), ("load_state_dict", "m_lsd")):
        got = language_params(ref, adapter)
        if set(got) != set(want):
            diffs[key] = float("inf")
            continue
        diffs[key] = max(float((got[k].detach() - want[k]).abs().max()) for k in want)
    del ref, triples
    gc.collect()
    return MergeResult(name=name, params=n, tensors=tensors, stats=stats, max_abs_diff=diffs)


# --- 7. ZeroGPU-safe slot writes ----------------------------------------------------------------


def split_views(fas) -> None:
    """What ZeroGPU's per-tensor move does to a FlatAdapter: every parameter gets its own copy,
    no longer a view into ``flat`` (the flat buffer keeps its values)."""
    for fa in fas:
        for p in fa.params.values():
            p.data = p.data.clone()


def bench_slot_write(stack, name: str, repeats: int, per_round: int = 5) -> dict:
    """λ·A + (1−λ)·B into the slot four ways, interleaved; and whether each is still right after
    a per-tensor move. ``write_merge`` (the engine's call, with its checks) and the one-time
    re-point (``live`` after a split) are timed beside them."""
    from langarith.model import MERGED, language_params

    a = stack.bundle.task_language
    b = next(c for c in stack.bundle.adapter_languages() if c != a)
    fa, fb, slot = stack.flat[a], stack.flat[b], stack.slot
    pa, pb, ps = ([fx.params[k] for k in slot.keys] for fx in (fa, fb, slot))

    def flat_lerp(lam):  # the kernel before the fix
        torch.lerp(fb.flat, fa.flat, lam, out=slot.flat)

    def checked(lam):  # the kernel now: the views check, then the same lerp
        (xa, xb), out = stack.live_buffers([a, b])
        torch.lerp(xb, xa, lam, out=out)

    def foreach(lam):
        torch._foreach_copy_(ps, pb)
        torch._foreach_lerp_(ps, pa, lam)

    def per_tensor(lam):
        for x, y, out in zip(pa, pb, ps):
            torch.lerp(y, x, lam, out=out)

    def write_merge(lam):
        stack.write_merge({a: lam, b: 1.0 - lam})

    fns = {"flat_lerp": flat_lerp, "checked": checked, "foreach": foreach,
           "per_tensor": per_tensor, "write_merge": write_merge}
    stats = {k: Stat() for k in fns}
    stats["repoint"] = Stat()
    lams = iter(lambdas(repeats * per_round * len(fns) + 100))
    with stack.lock:
        for fn in fns.values():
            fn(next(lams))
        for r in range(repeats):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for k in order:
                for _ in range(per_round):
                    stats[k].samples.append(timed(fns[k], next(lams)))
            split_views([slot])
            stats["repoint"].samples.append(timed(slot.live))

        def right(fn, lam=0.3) -> bool:
            """After a split, does the model's own slot hold λA + (1−λ)B?"""
            split_views([fa, fb, slot])
            want = {k: torch.lerp(fb.params[k], fa.params[k], lam) for k in slot.keys}
            fn(lam)
            got = language_params(stack.model, MERGED)
            return all(torch.allclose(got[k], want[k], rtol=0, atol=1e-6) for k in slot.keys)

        correct = {k: right(fn) for k, fn in fns.items()}
        stack.write_merge({a: 0.5, b: 0.5})  # leave every adapter aliased again
    return {"name": name, "params": slot.flat.numel(), "tensors": len(slot.keys), "stats": stats,
            "correct_after_move": correct}


def slot_write_sizes(tmp: Path, repeats: int) -> list[dict]:
    from langarith.bundle.tiny import build_tiny_bundle

    from benchmarks.xlmr_bundle import build_xlmr_size_bundle

    out = []
    for name, build in (("tiny bundle", build_tiny_bundle),
                        ("xlm-roberta-base MAD-X size", build_xlmr_size_bundle)):
        stack, _ = load_stack(build(tmp / f"slot-{build.__name__}"))
        out.append(bench_slot_write(stack, name, repeats))
        del stack
        gc.collect()
    return out


def slot_write_section(results: list[dict]) -> list[str]:
    names = {"flat_lerp": "flat lerp into `slot.flat` (before)",
             "checked": "views check + flat lerp (now)",
             "foreach": "`_foreach_copy_` + `_foreach_lerp_` over the parameters",
             "per_tensor": "`lerp(B_i, A_i, λ, out=p_i)` per tensor",
             "write_merge": "`stack.write_merge` (checks + views check + lerp)"}
    L = ["## 7. ZeroGPU-safe slot writes", "",
         "ZeroGPU moves each tensor to the GPU on its own, so the slot's parameters stop being views "
         "into its flat buffer. The ways of writing λ·A + (1−λ)·B that stay right after such a move, "
         "against the flat lerp of before, timed interleaved in one process (CPU). *Right after a "
         "move*: every parameter was given its own copy first (as ZeroGPU's worker does), then the "
         "model's own slot parameters were compared with λ·A + (1−λ)·B.", ""]
    L += ["| size | way | latency | ÷ flat lerp | right after a move |", "|---|---|---|---|---|"]
    for r in results:
        base = r["stats"]["flat_lerp"].median
        for k, label in names.items():
            s = r["stats"][k]
            L.append(f"| {r['name']} ({r['params']:,} params, {r['tensors']} tensors) | {label} "
                     f"| {s.fmt()} | {s.median / base:.2f}× | {'yes' if r['correct_after_move'][k] else '**no**'} |")
        L.append(f"| {r['name']} | one-time re-point after a move (`slot.live()`) "
                 f"| {r['stats']['repoint'].fmt()} | {r['stats']['repoint'].median / base:.2f}× | — |")
    return L + [""]


# --- 2. predict latency --------------------------------------------------------------------------


def page_defaults(stack) -> tuple[str, str, str]:
    """(target, source, text) as the page starts: the first zero-shot target, its first example."""
    from langarith import tasks

    langs = stack.bundle.languages
    target = next((c for c in langs if not langs[c].has_adapter), next(iter(langs)))
    source = tasks.suggested_source(stack, target)
    text = (langs[target].examples or ("a short text",))[0]
    return target, source, text


def bench_predict(stack, repeats: int) -> dict[str, Stat]:
    from langarith import tasks

    target, source, text = page_defaults(stack)
    mask_text = tasks.mask_a_word(text)
    lams = iter(lambdas(20 * repeats + 50))
    stats: dict[str, Stat] = {}

    def run(key, fn, n=repeats):
        stats[key] = Stat()
        for _ in range(n):
            stats[key].samples.append(timed(fn))

    tasks.compare(stack, text, target, source, 0.5, mask_text=mask_text)  # warm-up (first forward)

    def cold():
        tasks.clear_cache(stack, "single")
        tasks.compare(stack, text, target, source, next(lams))

    run("compare_cold", cold)
    run("compare_warm", lambda: tasks.compare(stack, text, target, source, next(lams)))
    run("compare_warm_fill_mask",
        lambda: tasks.compare(stack, text, target, source, next(lams), mask_text=mask_text))

    a = tasks.baseline_language(stack, target)
    try:
        rows = tasks.load_eval(stack, target)
        texts = [r["text"] for r in rows]
    except Exception:  # noqa: BLE001 - a bundle without eval files
        texts = []
    texts = texts or list(stack.bundle.languages[target].examples) or [text]
    batch = (texts * (32 // len(texts) + 1))[:32]
    tasks.classify(stack, batch, {a: 0.5, source: 0.5})
    run("classify_32", lambda: tasks.classify(stack, batch, {a: (lam := next(lams)), source: 1 - lam}))
    return stats


# --- 3-5. browser ---------------------------------------------------------------------------------

# Installed once per page: the time of the slider's release (range pointerup, or the number box's
# blur, which is what fires the slider's release event) and the value released.
JS_LISTENERS = """() => {
  if (window.__bench) return;
  const B = window.__bench = {t0: null, lam: null, tf: null, t1: null, t1paint: null, obs: null};
  const mark = (e) => {
    const t = e.target;
    if (!(t instanceof HTMLInputElement) || !t.closest('#lam')) return;
    if (e.type === 'pointerup' && t.type !== 'range') return;
    if (e.type === 'blur' && t.type !== 'number') return;
    B.t0 = performance.now();
    B.lam = parseFloat(t.value);
  };
  document.addEventListener('pointerup', mark, true);
  document.addEventListener('blur', mark, true);
}"""

# Armed before each move: when #formula and the merged label show the released λ (the predictions:
# what a release sends first), record the time (DOM updated) and the next animation frame
# (painted); then, when both plot titles show it too (the details step that follows), the time of
# that.
JS_ARM = """() => {
  const B = window.__bench;
  B.t0 = null; B.lam = null; B.tf = null; B.t1 = null; B.t1paint = null; B.t2 = null;
  if (B.obs) B.obs.disconnect();
  const txt = (sel) => (document.querySelector(sel)?.textContent || '');
  const check = () => {
    if (B.lam === null) return;
    const v = B.lam.toFixed(2);
    if (!txt('#formula').includes('merged = ' + v + '·')) return;
    if (B.tf === null) B.tf = performance.now();
    if (B.t1 === null && txt('#pred-merged').includes('λ = ' + v)) {
      B.t1 = performance.now();
      requestAnimationFrame(() => { B.t1paint = performance.now(); });
    }
    if (B.t1 !== null && B.t2 === null && txt('#geometry .gtitle').includes('λ=' + v)
        && txt('#hidden .gtitle').includes('λ=' + v)) {
      B.t2 = performance.now();
      B.obs.disconnect();
    }
  };
  B.obs = new MutationObserver(check);
  B.obs.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def current_lambda(page) -> float:
    return float(page.locator("#lam input[type=number]").input_value())


def wait_first_render(page, timeout_ms: int = 120_000) -> None:
    page.wait_for_function(
        "() => (document.querySelector('#formula')?.textContent || '').includes('merged =')"
        " && !!document.querySelector('#hidden .gtitle')", timeout=timeout_ms)


def move_slider(page, lam: float, how: str) -> dict[str, float] | None:
    """Release the slider at ``lam``; {"lam": λ released, "formula": s to #formula updated, "dom":
    s to formula + merged label + both plots updated, "paint": s to the next animation frame after
    that}, or None when the released value equals the current one (nothing to wait for)."""
    before = current_lambda(page)
    page.evaluate(JS_ARM)
    if how == "drag":
        rng = page.locator("#lam input[type=range]")
        box = rng.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * before, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * lam, y, steps=4)
        page.mouse.up()
    else:  # type the value into the number box and leave it: the slider's release event
        num = page.locator("#lam input[type=number]")
        num.fill(f"{lam:g}")
        num.press("Tab")
    released = page.evaluate("() => window.__bench.lam")
    if released is None or abs(released - before) < 1e-9:
        page.evaluate("() => window.__bench.obs && window.__bench.obs.disconnect()")
        if released is not None:
            page.wait_for_timeout(1500)  # let a same-value request settle before the next move
        return None
    page.wait_for_function("() => window.__bench.t1paint !== null && window.__bench.t2 !== null",
                           timeout=60_000)
    t = page.evaluate("() => window.__bench")
    return {"lam": released, "formula": (t["tf"] - t["t0"]) / 1e3, "dom": (t["t1"] - t["t0"]) / 1e3,
            "details": (t["t2"] - t["t0"]) / 1e3,
            "paint": (t["t1paint"] - t["t0"]) / 1e3}


def slider_targets(n: int) -> list[float]:
    """Grid values (step 0.05) that jump around and never repeat the previous one."""
    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    out, i = [], 0
    while len(out) < n:
        v = grid[(i * 7) % len(grid)]
        i += 1
        if not out or v != out[-1]:
            out.append(v)
    return out


def drive_slider(page, n: int, how: str) -> dict:
    """``n`` slider releases; {"formula"|"dom"|"paint"|"details": Stat, "skipped": moves that changed
    nothing}."""
    out = {"formula": Stat(), "dom": Stat(), "paint": Stat(), "details": Stat(), "skipped": 0}
    targets = iter(slider_targets(3 * n + 5))
    while out["dom"].n < n:
        try:
            lam = next(targets)
        except StopIteration:
            break
        got = move_slider(page, lam, how)
        if got is None:
            out["skipped"] += 1
            continue
        for k in ("formula", "dom", "paint", "details"):
            out[k].samples.append(got[k])
    return out


# Installed before a long drag: every change of #formula (a repaint of the predictions), timed.
JS_WATCH = """() => {
  const W = window.__watch = {changes: [], obs: null, seen: new Set()};
  W.obs = new MutationObserver(() => {  // a formula with a λ not shown before: a new update
    const m = (document.querySelector('#formula')?.textContent || '').match(/merged = ([0-9.]+)·/);
    if (m && !W.seen.has(m[1])) { W.seen.add(m[1]); W.changes.push(performance.now()); }
  });
  W.obs.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def drag_rate(page, seconds: float = 3.0, steps: int = 40) -> dict:
    """Hold the slider and sweep it slowly across for ``seconds``: how often the predictions
    repaint *while dragging* (updates per second, before the release)."""
    rng = page.locator("#lam input[type=range]")
    box = rng.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.05, y)
    page.evaluate(JS_WATCH)
    page.mouse.down()
    t0 = page.evaluate("() => performance.now()")
    for i in range(1, steps + 1):
        page.mouse.move(box["x"] + box["width"] * (0.05 + 0.9 * i / steps), y)
        page.wait_for_timeout(1000 * seconds / steps)
    t1 = page.evaluate("() => performance.now()")
    changes = page.evaluate("() => window.__watch.changes")
    page.mouse.up()
    page.evaluate("() => window.__watch.obs.disconnect()")
    page.wait_for_timeout(1500)  # let the release settle before the next measurement
    during = [t for t in changes if t0 <= t <= t1]
    return {"seconds": (t1 - t0) / 1e3, "updates": len(during),
            "per_second": len(during) / ((t1 - t0) / 1e3)}


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, url: str, timeout_ms: int = 120_000):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(timeout_ms)
    page.goto(url, wait_until="domcontentloaded")
    return page


def descendants_cpu(name_part: str) -> float:
    """CPU seconds (user + system) used so far by this process's descendants whose name contains
    ``name_part`` (Linux /proc; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        f = raw[raw.rindex(")") + 2:].split()
        procs[int(d.name)] = (int(f[1]), comm, (int(f[11]) + int(f[12])) / tick)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        _, comm, cpu = procs[pid]
        if name_part in comm:
            total += cpu
        todo += children.get(pid, [])
    return total


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def bench_concurrent(url: str, target: str, source: str, text: str, mask_text: str,
                     clients: int = 16, per_client: int = 2) -> dict:
    """``clients`` gradio_client clients at once, ``per_client`` /compare calls each with distinct
    λ: latency p50/p95 and how many answers differ from the same request made alone."""
    import threading

    from gradio_client import Client

    lams = [round(0.01 + 0.98 * i / (clients * per_client - 1), 4) for i in range(clients * per_client)]
    alone = Client(url, verbose=False)
    refs = {lam: alone.predict(target, source, lam, text, mask_text, api_name="/compare") for lam in lams}
    conns = [Client(url, verbose=False) for _ in range(clients)]
    lat, got, errors = Stat(), {}, []
    start = threading.Barrier(clients)

    def work(t):
        try:
            start.wait()
            for lam in lams[t::clients]:
                s = time.perf_counter()
                got[lam] = conns[t].predict(target, source, lam, text, mask_text, api_name="/compare")
                lat.samples.append(time.perf_counter() - s)
        except Exception as e:  # noqa: BLE001 - counted below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    return {"clients": clients, "requests": len(lams), "latency": lat, "errors": len(errors),
            "differing": sum(got.get(lam) != refs[lam] for lam in lams)}


def bench_browser_inprocess(stack, moves: int, typed: int, api_calls: int) -> dict:
    """Slider release → new predictions and plots, against the app launched in this process; and,
    to see where the time goes, the page's compare handler called directly and through
    ``gradio_client`` (server + transport, no browser)."""
    import functools

    from langarith import tasks
    from langarith.page import build_demo, common, compare

    # The predictions' handler timed as Gradio runs it (the page binds it when it is built).
    in_server = Stat()
    predict = compare.on_predict_rows

    @functools.wraps(predict)
    def timed_predict(*args, **kwargs):
        t = time.perf_counter()
        try:
            return predict(*args, **kwargs)
        finally:
            in_server.samples.append(time.perf_counter() - t)

    compare.on_predict_rows = timed_predict
    try:
        demo = build_demo(stack).queue()
    finally:
        compare.on_predict_rows = predict
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, share=False,
                quiet=True)
    out: dict = {}
    try:
        target, source, text = page_defaults(stack)
        mask_text = tasks.mask_a_word(text)
        grid = slider_targets(api_calls + 1)
        handler = common.bind(compare.on_compare)  # what /compare runs, without the queue
        if handler is not None and api_calls:
            for lam in (0.5, 0.45, 0.55):  # the first calls are slow (lazy imports, first shapes)
                handler(target, source, lam, text, mask_text)
            out["handler"] = Stat([timed(handler, target, source, lam, text, mask_text)
                                   for lam in grid[1:]])
        if api_calls:
            from gradio_client import Client

            client = Client(url, verbose=False)
            client.predict(target, source, 0.5, text, mask_text, api_name="/compare")
            out["api"] = Stat([timed(client.predict, target, source, lam, text, mask_text,
                                     api_name="/compare") for lam in grid[1:]])
        if api_calls:  # 16 concurrent clients: each answer must equal the same request alone
            out["concurrent"] = bench_concurrent(url, target, source, text, mask_text)
        with chromium() as browser:
            page = new_page(browser, url)
            wait_first_render(page)
            page.evaluate(JS_LISTENERS)
            if moves:
                in_server.samples.clear()
                c0, p0 = descendants_cpu("chrom"), self_cpu()
                out["drag"] = drive_slider(page, moves, "drag")
                n_moves = out["drag"]["dom"].n + out["drag"]["skipped"]
                out["cpu_per_move"] = {"chromium": (descendants_cpu("chrom") - c0) / n_moves,
                                       "app": (self_cpu() - p0) / n_moves}
                out["handler_in_server"] = Stat(list(in_server.samples))
            if typed:
                out["typed"] = drive_slider(page, typed, "typed")
            if moves:
                out["while_dragging"] = [drag_rate(page) for _ in range(3)]
            out["errors"] = page.locator(".toast-body.error").count()
            page.close()
    finally:
        demo.close()
    return out


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, bytes (Linux /proc)."""
    mem = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            mem[key] = int(val.split()[0]) * 1024
    return mem


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


def bench_app(starts: int, interactions: int, logdir: Path) -> dict:
    """``python app.py`` from process start to #formula filled in chromium; the first start also
    gets ``interactions`` slider releases and RSS readings."""
    stats = {"http": Stat(), "formula": Stat()}
    memory: dict[str, dict[str, int]] = {}
    slider = None
    env = dict(os.environ, LANGARITH_BUNDLE=str(SHIPPED), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    with chromium() as browser:
        for i in range(starts):
            port = free_port()
            env["GRADIO_SERVER_PORT"] = str(port)
            url = f"http://127.0.0.1:{port}/"
            logf = open(logdir / f"app-{i}.log", "wb")
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=logf,
                                    stderr=subprocess.STDOUT)
            try:
                wait_http(url, proc)
                stats["http"].samples.append(time.perf_counter() - t0)
                page = new_page(browser, url)
                wait_first_render(page)
                stats["formula"].samples.append(time.perf_counter() - t0)
                if i == 0:
                    memory["after start"] = proc_memory(proc.pid)
                    page.evaluate(JS_LISTENERS)
                    slider = drive_slider(page, interactions, "drag")
                    page.wait_for_timeout(500)
                    memory[f"after {slider['dom'].n} interactions"] = proc_memory(proc.pid)
                page.close()
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                logf.close()
    return {"stats": stats, "memory": memory, "slider": slider}


# --- the report -----------------------------------------------------------------------------------


def _version(mod: str) -> str:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:  # noqa: BLE001
        return "not installed"


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "none"
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        mem = 0
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": cpu, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(), "memory_gb": mem / 2**30, "gpu": gpu,
        "os": platform.platform(), "loadavg": load,
        "chromium": _chromium_version(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     **{m: _version(m) for m in ("transformers", "adapters", "gradio", "playwright")}},
    }


def _chromium_version() -> str:
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not found"


def command_line(argv: list[str]) -> str:
    py = Path(sys.executable)
    try:
        py_s = str(py.relative_to(ROOT))
    except ValueError:
        py_s = str(py)
    script = Path(argv[0]).resolve()
    try:
        script_s = str(script.relative_to(ROOT))
    except ValueError:
        script_s = str(script)
    env = "PYTHONPATH=. "
    if os.environ.get("LANGARITH_CACHE"):
        env += f"LANGARITH_CACHE={os.environ['LANGARITH_CACHE']} "
    return f"cd {shlex.quote(str(ROOT))} && {env}{py_s} {script_s} {shlex.join(argv[1:])}".rstrip()


def yes(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def merge_section(results: list[MergeResult]) -> list[str]:
    L = ["## 1. Merge latency of the live slot", "",
         "`stack.write_merge({a: λ, b: 1−λ})` (under `stack.lock`, λ different on every call) against "
         "(a) one flat `torch.lerp(B, A, λ, out=M)` over as many floats, (b) "
         "`model.base_model.average_adapter(\"m\", [a, b], weights=[λ, 1−λ], normalize_weights=False, "
         "overwrite_ok=True)` on a separate model with the same adapters, (c) a per-module loop that "
         "computes λA+(1−λ)B per tensor into a new dict and `load_state_dict`s it into each adapter "
         "module. The four are timed interleaved, round by round, in one process. Bytes moved per "
         "merge = read A + read B + write M, fp32 = 12 bytes per parameter.", "",
         "| size | params (tensors) | bytes/merge | live slot | flat lerp (a) | average_adapter (b) "
         "| load_state_dict loop (c) |",
         "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.stats
        L.append(f"| {r.name} | {r.params:,} ({r.tensors}) | {r.bytes_moved / 1e6:.1f} MB "
                 f"| {s['slot'].fmt()} | {s['flat_lerp'].fmt()} | {s['average_adapter'].fmt()} "
                 f"| {s['load_state_dict'].fmt()} |")
    L += ["", "Implied bandwidth (bytes/merge ÷ median) and ratios of medians (same run):", "",
          "| size | slot GB/s | flat lerp GB/s | slot ÷ flat lerp | average_adapter ÷ slot "
          "| load_state_dict ÷ slot | max abs diff vs slot (b, c) |",
          "|---|---|---|---|---|---|---|"]
    for r in results:
        L.append(f"| {r.name} | {r.gbps('slot'):.1f} | {r.gbps('flat_lerp'):.1f} "
                 f"| {r.ratio('flat_lerp') ** -1:.2f}× | {r.ratio('average_adapter'):.1f}× "
                 f"| {r.ratio('load_state_dict'):.1f}× "
                 f"| {r.max_abs_diff.get('average_adapter', float('nan')):.1e}, "
                 f"{r.max_abs_diff.get('load_state_dict', float('nan')):.1e} |")
    L += ["", "Targets (from the issue), per size:", ""]
    for r in results:
        v_lerp = 1 / r.ratio("flat_lerp")
        v_avg = r.ratio("average_adapter")
        L.append(f"- {r.name}: slot within {TARGET_MERGE_VS_LERP}× of the flat lerp: "
                 f"{v_lerp:.2f}× → {yes(v_lerp <= TARGET_MERGE_VS_LERP)}; "
                 f"≥ {TARGET_MERGE_VS_AVERAGE:.0f}× faster than average_adapter: {v_avg:.1f}× → "
                 f"{yes(v_avg >= TARGET_MERGE_VS_AVERAGE)}")
    L += ["", "At the tiny size a merge moves a few kB: the times there are Python call overhead "
          "(`write_merge` checks the languages and weights on each call), not memory traffic."]
    return L + [""]


def header_section(res: dict) -> list[str]:
    """Title, command and the machine the figures come from."""
    m = res["machine"]
    v = m["versions"]
    return ["# langarith benchmarks", "",
            f"Generated {res['date']} by `benchmarks/run.py`{' --quick' if res['quick'] else ''} "
            f"in {res['wall_s']:.0f} s.", "",
            "Command:", "", "```", res["command"], "```", "",
            "## Machine", "",
            f"- CPU: {m['cpu']}, {m['cores']} cores ({m['affinity']} usable, torch threads "
            f"{m['torch_threads']}), {m['memory_gb']:.1f} GiB RAM",
            f"- GPU: {m['gpu']} (everything below runs on CPU unless a GPU is listed)",
            f"- OS: {m['os']}; load average at start {m['loadavg'][0]:.2f}, "
            f"at end {res['loadavg_end'][0]:.2f} (the machine is shared: read medians and same-run ratios)",
            f"- python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, "
            f"adapters {v['adapters']}, gradio {v['gradio']}, playwright {v['playwright']}, "
            f"{m['chromium']}", "",
            "1-minute load average as each part started (2 cores; above ~2 other work competed): "
            + ", ".join(f"{k} {v:.1f}" for k, v in res.get("load", {}).items()) + ".", "",
            "All figures: median (p10–p90, n).", ""]


PREDICT_CALLS = {"compare_cold": "`tasks.compare` cold (merged + A + B)",
                 "compare_warm": "`tasks.compare` warm (merged only)",
                 "compare_warm_fill_mask": "`tasks.compare` warm, with the fill-mask probe (the page's two events together)",
                 "classify_32": "`tasks.classify`, batch of 32 eval texts, merged adapter"}


def predict_section(res: dict) -> list[str]:
    L = ["## 2. Predict latency, shipped bundle", "",
         f"Text: the page's first example (target `{res['predict_setup'][0]}`, source "
         f"`{res['predict_setup'][1]}`), λ different on every call. *Cold* clears the lru cache "
         "of the unmerged A/B predictions first (3 forwards); *warm* hits it (1 forward).", "",
         "| call | latency |", "|---|---|"]
    for k, s in res["predict"].items():
        L.append(f"| {PREDICT_CALLS.get(k, k)} | {s.fmt()} |")
    return L + ["", f"Shipped bundle load (`LanguageStack('assets/bundle')`, base encoder cached): "
                f"{res['shipped_load_s']:.1f} s.", ""]


def slider_table(b: dict) -> list[str]:
    """Release → updated predictions in the browser, per way of setting λ, and its target."""
    L = ["## 3. Slider release → updated predictions, then plots (real browser)", "",
         "App launched in this process (`build_demo(LanguageStack('assets/bundle')).queue()"
         ".launch(prevent_thread_lock=True)`), Debian chromium headless via playwright. Time from "
         "the slider's release event in the page (range `pointerup`, or the number box's `blur`, "
         "which fires the same release event) to the moment #formula and the merged label show "
         "the new λ (DOM) and the next animation frame (painted): the predictions, which a release "
         "sends alone; then to both per-layer plot titles showing it (the details step that "
         "follows: fill-mask, the text's masked-LM loss, the plots).", "",
         "| how λ was set | #formula updated | + merged label (DOM) | predictions painted | + both plots |",
         "|---|---|---|---|---|"]
    for how, label in (("drag", "drag the range input and release"),
                       ("typed", "type into the number box, Tab")):
        if how in b:
            d = b[how]
            details = d["details"].fmt("s") if "details" in d else "—"
            L.append(f"| {label} | {d['formula'].fmt('s')} | {d['dom'].fmt('s')} "
                     f"| {d['paint'].fmt('s')} | {details} |")
    if "drag" in b:
        med = b["drag"]["paint"].median
        L += ["", f"Target median ≤ {TARGET_SLIDER_S} s (drag, predictions painted): {med:.3f} s → "
              f"{yes(med <= TARGET_SLIDER_S)}. Error toasts seen: {b.get('errors')}."]
    return L


def drag_rate_lines(runs: list[dict]) -> list[str]:
    rates = [w["per_second"] for w in runs]
    return ["", f"While dragging (the slider held and swept across in {runs[0]['seconds']:.1f} s, "
            f"40 mouse moves over λ 0.05 → 0.95; distinct λ values whose predictions were painted before the release, {len(rates)} runs): "
            + ", ".join(f"{r:.1f}" for r in rates) + f" updates/s; target ≥ {TARGET_DRAG_RATE} → "
            f"{yes(min(rates) >= TARGET_DRAG_RATE)} (slowest run)."]


def concurrent_lines(cc: dict) -> list[str]:
    return ["", f"{cc['clients']} concurrent clients, {cc['requests']} `/compare` calls with distinct λ: "
            f"latency {cc['latency'].fmt('s')}, p95 {percentile(cc['latency'].samples, 0.95):.3f} s; "
            f"errors {cc['errors']}, answers differing from the same request alone {cc['differing']}."]


def time_split_table(b: dict) -> list[str]:
    """Where a release's time goes: the handler alone, in the server, through the client, in chromium."""
    L = ["", "Where the time goes (same app, same inputs, λ different on every call):", "",
         "| step | latency |", "|---|---|"]
    if "handler" in b:
        L.append(f"| the page's `compare` handler (linear merge) called directly: comparison "
                 f"and weight geometry, 2 plotly figures (fill-mask is its own event since issue 20) | {b['handler'].fmt('s')} |")
    if "handler_in_server" in b:
        L.append(f"| the predictions' handler (`compare.on_predict_rows`) as Gradio ran it during the "
                 f"drags below (each drag's input events and its release; worker thread) "
                 f"| {b['handler_in_server'].fmt('s')} |")
    if "api" in b:
        L.append(f"| `/compare` through `gradio_client` (queue, serialisation, "
                 f"transport; no browser) | {b['api'].fmt('s')} |")
    if "drag" in b:
        L.append(f"| in chromium, release → painted (above) | {b['drag']['paint'].fmt('s')} |")
    if "cpu_per_move" in b:
        c = b["cpu_per_move"]
        L += ["", f"CPU time per drag (means over the drags): chromium {c['chromium']:.2f} s, "
              f"this Python process (server + handler + playwright client) {c['app']:.2f} s, "
              f"on {os.cpu_count()} cores: the browser and the model compete for the same CPUs."]
    return L


def browser_section(b: dict) -> list[str]:
    L = slider_table(b)
    if b.get("while_dragging"):
        L += drag_rate_lines(b["while_dragging"])
    if b.get("concurrent"):
        L += concurrent_lines(b["concurrent"])
    if "handler" in b or "api" in b:
        L += time_split_table(b)
    return L + [""]


def app_section(a: dict) -> list[str]:
    """App start to first page, and the app process's memory."""
    s = a["stats"]
    L = ["## 4. App start to first page", "",
         "`python app.py` as a subprocess (LANGARITH_BUNDLE=assets/bundle, GRADIO_SERVER_PORT free "
         "port); chromium already running; file cache warm.", "",
         "| from process start to | time |", "|---|---|",
         f"| the server answering HTTP 200 | {s['http'].fmt('s')} |",
         f"| #formula filled in the page (first comparison rendered) | {s['formula'].fmt('s')} |",
         ""]
    L += ["## 5. Memory of the app process", "",
          "| when | RSS | peak RSS (VmHWM) |", "|---|---|---|"]
    for when, mem in a["memory"].items():
        L.append(f"| {when} | {mem.get('VmRSS', 0) / 2**20:.0f} MiB "
                 f"| {mem.get('VmHWM', 0) / 2**20:.0f} MiB |")
    if a.get("slider"):
        d = a["slider"]
        L += ["", f"The interactions were slider releases (drag) against this standalone process: "
              f"release → painted {d['paint'].fmt('s')} (#formula updated {d['formula'].fmt('s')})."]
    return L + [""]


def understanding_section(u: dict) -> list[str]:
    return ["## 6. λ sweep and language similarity, shipped bundle", "",
            f"An 11-point sweep (λ = 0, 0.1, …, 1) of target `{u['target']}` (source `{u['source']}`) on "
            f"its shipped eval set ({u['n_dev']} dev + {u['n_test']} test items), caches cleared before "
            f"each run; the similarity matrix of all {u['languages']} adapter languages (cosine of "
            "language vectors, overall and per layer).", "",
            "| what | time | target |", "|---|---|---|",
            f"| 11-point sweep | {u['sweep'].fmt('s')} | ≤ 60 s: "
            f"{'met' if u['sweep'].median <= 60 else 'not met'} |",
            f"| similarity matrix | {u['similarity'].fmt('s')} | ≤ 1 s: "
            f"{'met' if u['similarity'].median <= 1 else 'not met'} |",
            f"| offline hub profile refused (nothing cached) | {u['offline_refusal'].fmt('s')} | ≤ 5 s: "
            f"{'met' if u['offline_refusal'].median <= 5 else 'not met'} |",
            "", "The page shows the bundle's precomputed curves at once (read from results.json).", ""]


def render(res: dict) -> str:
    """RESULTS.md: one section per part that ran."""
    L = header_section(res)
    if res.get("merge"):
        L += merge_section(res["merge"])
    if res.get("predict"):
        L += predict_section(res)
    if res.get("browser"):
        L += browser_section(res["browser"])
    if res.get("app"):
        L += app_section(res["app"])
    if res.get("understanding"):
        L += understanding_section(res["understanding"])
    if res.get("slot_write"):
        L += slot_write_section(res["slot_write"])
    if res.get("errors"):
        L += ["## Errors", ""] + [f"- {e}" for e in res["errors"]] + [""]
    return "\n".join(L)


def bench_understanding(stack, repeats: int) -> dict:
    """Issue figures: an 11-point λ sweep on one target's shipped eval set, the similarity matrix."""
    from langarith import analysis, tasks

    target = "pt"
    source = tasks.suggested_source(stack, target)
    sweep, sim = Stat(), Stat()
    for _ in range(repeats):
        tasks.clear_cache(stack, "sweep")  # measure the computation, not the cache
        t = time.perf_counter()
        r = tasks.sweep(stack, target, source)
        sweep.samples.append(time.perf_counter() - t)
    for _ in range(5 * repeats):
        t = time.perf_counter()
        m = analysis.similarity(stack)
        sim.samples.append(time.perf_counter() - t)
    return {"target": target, "source": source, "n_dev": r["n_dev"], "n_test": r["n_test"],
            "languages": len(m["languages"]), "sweep": sweep, "similarity": sim,
            "offline_refusal": bench_offline_refusal(5 * repeats)}


def bench_offline_refusal(repeats: int) -> Stat:
    """Offline with nothing cached, a hub profile is refused with its message: how long that takes
    (it must not wait on network timeouts; ``test_profiles`` checks that no connection is tried)."""
    from langarith import profiles

    out = Stat()
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="langarith-offline-") as empty:
            t = time.perf_counter()
            try:
                profiles.load_profile("xlmr", cache_dir=Path(empty))
            except profiles.ProfileUnavailable:
                pass
            out.samples.append(time.perf_counter() - t)
    return out


# --- main -----------------------------------------------------------------------------------------


def load_stack(path) -> tuple:
    from langarith.model import LanguageStack

    t = time.perf_counter()
    stack = LanguageStack(path, device="cpu")
    return stack, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (< 2 minutes)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--skip", default="", help="comma list of parts to skip: merge,predict,understanding,browser,app,zerogpu,class")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    q = args.quick
    n = dict(merge_rounds=6 if q else 50, predict=3 if q else 25, moves=6 if q else 30, api=4 if q else 20,
             typed=2 if q else 10, starts=1 if q else 5, interactions=20)
    t_start = time.perf_counter()
    res: dict = {"quick": q, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
                 "command": command_line([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
                 "errors": []}
    log(f"machine: {res['machine']['cpu']}, {res['machine']['cores']} cores; quick={q}")

    res["load"] = {}

    def guard(part, fn):
        res["load"][part] = os.getloadavg()[0]
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - keep the other parts; report the failure
            import traceback

            traceback.print_exc()
            res["errors"].append(f"{part}: {type(e).__name__}: {e}")
            return None

    with tempfile.TemporaryDirectory(prefix="langarith-bench-") as tmp:
        tmp = Path(tmp)
        merges: list[MergeResult] = []
        if "merge" not in skip:
            from langarith.bundle.tiny import build_tiny_bundle

            from benchmarks.xlmr_bundle import build_xlmr_size_bundle

            def tiny():
                stack, _ = load_stack(build_tiny_bundle(tmp / "tiny"))
                return bench_merge(stack, "tiny bundle (hidden 32, 2 layers)", n["merge_rounds"])

            def xlmr():
                log("building the xlm-roberta-base-size bundle")
                stack, _ = load_stack(build_xlmr_size_bundle(tmp / "xlmr"))
                r = bench_merge(stack, "xlm-roberta-base MAD-X size (hidden 768, 12 layers)",
                                n["merge_rounds"])
                del stack
                gc.collect()
                return r

            log("merge: tiny")
            merges.append(guard("merge tiny", tiny))
        stack, load_s = None, None
        if not {"merge", "predict", "understanding", "browser"} <= skip:
            log("loading the shipped bundle")
            stack, load_s = load_stack(SHIPPED)
            res["shipped_load_s"] = load_s
        if "merge" not in skip:
            log("merge: shipped")
            merges.append(guard("merge shipped", lambda: bench_merge(
                stack, "shipped bundle (e5-small, hidden 384, 12 layers)", n["merge_rounds"])))
            log("merge: xlm-r size")
            merges.append(guard("merge xlm-r size", xlmr))
            res["merge"] = [r for r in merges if r is not None]
        if "predict" not in skip:
            log("predict")
            res["predict_setup"] = page_defaults(stack)
            res["predict"] = guard("predict", lambda: bench_predict(stack, n["predict"]))
        if "understanding" not in skip:
            log("sweep and similarity")
            res["understanding"] = guard("understanding", lambda: bench_understanding(
                stack, 1 if q else 3))
        if "browser" not in skip:
            log("browser, in-process app")
            res["browser"] = guard("browser", lambda: bench_browser_inprocess(
                stack, n["moves"], n["typed"], n["api"]))
        del stack
        gc.collect()
        if "zerogpu" not in skip:
            log("ZeroGPU-safe slot writes")
            res["slot_write"] = guard("slot write", lambda: slot_write_sizes(tmp, n["merge_rounds"]))
        if "app" not in skip:
            log("app start and memory (subprocess)")
            logdir = tmp / "logs"
            logdir.mkdir()
            res["app"] = guard("app", lambda: bench_app(n["starts"], n["interactions"], logdir))
    if "class" not in skip:  # its own report: benchmarks/RESULTS_class.md
        log("a class on one Space, and a soak (app subprocess)")
        from benchmarks import classroom

        guard("class", lambda: classroom.main(["--students", "1,8" if q else "1,8,30", "--releases", "4",
                                               "--soak", "1000" if q else "10000"]))
    res["wall_s"] = time.perf_counter() - t_start
    res["loadavg_end"] = os.getloadavg()
    text = render(res)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    log(f"wrote {args.out} in {res['wall_s']:.0f} s")
    print(text)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
