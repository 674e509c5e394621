"""The CUDA path, checked and timed on a machine with a GPU (run there by hand; CI has none).

    python benchmarks/gpu_check.py [--out results.json]

1. The engine on ``cuda``: every parameter, the live slot and the flat buffers on the GPU; the slot
   after a merge equals a CPU hand computation of λ·A + (1−λ)·B (invertible adapter included);
   λ = 1 gives A bit for bit; predictions match the same stack on the CPU.
2. Concurrency on the GPU: threads with different λ each get the answer of their request alone.
3. Merge latency at xlm-roberta-base MAD-X size on the GPU (CUDA events, synchronised): the live
   slot vs one flat ``torch.lerp`` over as many floats vs ``model.base_model.average_adapter``.
4. A hub profile (the offline mbert-ner stand-ins of tests/hub_fixtures.py) on the GPU: NER compare.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]


DEVICE = "cuda"


def cuda_ms(fn, repeats: int = 50, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    if DEVICE != "cuda":  # --device cpu: a dry run of this script's logic
        import time

        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - t0))
        return out
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        out.append(start.elapsed_time(end))
    return out


def check_engine(tmp: Path) -> dict:
    from safetensors.torch import load_file

    from langarith import tasks
    from langarith.bundle.tiny import build_tiny_bundle
    from langarith.model import LanguageStack

    bundle = build_tiny_bundle(tmp / "tiny")
    gpu = LanguageStack(bundle, device=DEVICE)
    cpu = LanguageStack(bundle, device="cpu")
    devices = {p.device.type for p in gpu.model.parameters()}
    assert devices == {DEVICE}, devices
    assert gpu.slot.flat.device.type == DEVICE and all(f.flat.device.type == DEVICE for f in gpu.flat.values())

    def file_sd(code):
        sd = load_file(str(bundle / "adapters" / code / "adapter.safetensors"))
        return {k: v.float() for k, v in sd.items()}

    worst = 0.0
    for lam in (0.0, 0.3, 1.0):
        ptr = gpu.slot.flat.data_ptr()
        with gpu.lock:
            gpu.write_merge({"en": lam, "es": 1 - lam})
        assert gpu.slot.flat.data_ptr() == ptr
        got = {k: v.cpu() for k, v in gpu.slot.state_dict().items()}
        a, b = gpu.language_state_dict("en"), gpu.language_state_dict("es")
        for k in got:
            want = lam * a[k].cpu() + (1 - lam) * b[k].cpu()
            worst = max(worst, float((got[k] - want).abs().max()))
            if lam == 1.0:
                assert torch.equal(got[k], a[k].cpu()), k
    n_inv = sum("invertible" in k for k in got)
    assert len(file_sd("en")) > 0 and n_inv > 0

    text = gpu.bundle.language("pt").examples[0]
    diffs = []
    for lam in (0.0, 0.4, 1.0):
        g = tasks.compare(gpu, text, "pt", "es", lam, mask_text=tasks.mask_a_word(text))
        c = tasks.compare(cpu, text, "pt", "es", lam, mask_text=tasks.mask_a_word(text))
        diffs.append(max(abs(x - y) for x, y in zip(g.probs["merged"], c.probs["merged"])))

    refs = {lam: tasks.classify(gpu, [text], {"en": lam, "es": 1 - lam}, "topic")[0]
            for lam in [i / 20 for i in range(21)]}
    errors = []

    def worker(i):
        for j in range(10):
            lam = [i / 20 for i in range(21)][(i * 7 + j * 3) % 21]
            got = tasks.classify(gpu, [text], {"en": lam, "es": 1 - lam}, "topic")[0]
            if not torch.equal(got, refs[lam]):
                errors.append((i, j, lam))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"all_on_device": True, "slot_vs_hand_max_abs": worst, "invertible_tensors": n_inv,
            "gpu_vs_cpu_merged_probs_max_abs": max(diffs), "concurrent_requests": 80,
            "concurrent_mismatches": len(errors)}


def merge_latency(tmp: Path) -> dict:
    from xlmr_bundle import build_xlmr_size_bundle

    from langarith.model import LanguageStack

    stack = LanguageStack(build_xlmr_size_bundle(tmp / "xlmr"), device=DEVICE)
    a, b = stack.bundle.task_language, next(c for c in stack.bundle.adapter_languages()
                                            if c != stack.bundle.task_language)
    n = stack.slot.flat.numel()
    fa, fb, fm = (torch.randn(n, device=DEVICE) for _ in range(3))
    lam = iter([i / 997 for i in range(100000)])

    def slot():
        with stack.lock:
            stack.write_merge({a: (x := next(lam)), b: 1 - x})

    def flat():
        torch.lerp(fb, fa, next(lam), out=fm)

    model = stack.model

    def average():
        model.base_model.average_adapter("m", [a, b], weights=[(x := next(lam)), 1 - x],
                                         normalize_weights=False, overwrite_ok=True)

    reps = 200 if DEVICE == "cuda" else 20
    t = {"slot": cuda_ms(slot, reps), "flat_lerp": cuda_ms(flat, reps),
         "average_adapter": cuda_ms(average, 20 if DEVICE == "cuda" else 5, 2)}
    med = {k: statistics.median(v) for k, v in t.items()}
    bytes_moved = 3 * 4 * n
    return {"params": n, "median_ms": med, "slot_over_flat": med["slot"] / med["flat_lerp"],
            "average_over_slot": med["average_adapter"] / med["slot"],
            "slot_GBps": bytes_moved / (med["slot"] / 1e3) / 1e9}


def hub_profile(tmp: Path) -> dict:
    from hub_fixtures import build_hub_cache

    from langarith import ner, profiles
    from langarith.model import LanguageStack

    cache = build_hub_cache(tmp / "hf")
    stack = LanguageStack(profiles.load_profile("mbert-ner", cache_dir=cache), device=DEVICE)
    cmp = ner.compare_ner(stack, "Angela Merkel met Emmanuel Macron in Paris .", "is", "de", 0.4)
    assert stack.slot.flat.device.type == DEVICE
    return {"profile": "mbert-ner", "languages_loaded": sorted(stack.flat), "spans_merged": len(cmp.spans["merged"])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--device", default="cuda", help="cpu: dry-run this script's logic")
    args = p.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    res = {"device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE, "torch": torch.__version__,
           "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as d:
        for name, fn in (("engine", check_engine), ("merge_latency_xlmr_base", merge_latency),
                         ("hub_profile", hub_profile)):
            try:
                res[name] = fn(Path(d))
            except Exception as e:  # noqa: BLE001 - report every part, even after a failure
                res[name] = {"error": f"{type(e).__name__}: {e}"}
            print(name, json.dumps(res[name]), flush=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    return 0 if not any("error" in v for v in res.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
