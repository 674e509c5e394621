"""The benchmark script's code runs (cheap pieces on the tiny bundle); no assertion on timings."""

from __future__ import annotations

import pytest

from benchmarks import run


def test_merge_benchmark_runs_on_the_tiny_bundle(stack):
    res = run.bench_merge(stack, "tiny", repeats=3, fast_per_round=2, warmup=1)
    assert res.params == stack.slot.flat.numel() and res.tensors == len(stack.slot.keys)
    assert set(res.stats) == {"slot", "flat_lerp", "average_adapter", "load_state_dict"}
    assert res.stats["slot"].n == 6 and res.stats["average_adapter"].n == 3
    # every way of merging gives the live slot's result
    assert res.max_abs_diff["average_adapter"] < 1e-5
    assert res.max_abs_diff["load_state_dict"] < 1e-5
    assert res.bytes_moved == 12 * res.params

    text = run.render({"quick": True, "date": "now", "machine": run.machine(), "command": "cmd",
                       "wall_s": 1.0, "loadavg_end": (0.0, 0.0, 0.0), "merge": [res],
                       "errors": []})
    assert "| tiny |" in text and "flat lerp" in text


def test_predict_benchmark_runs(stack):
    stats = run.bench_predict(stack, repeats=1)
    assert {"compare_cold", "compare_warm", "classify_32"} <= set(stats)
    assert all(s.n == 1 for s in stats.values())


def test_stats_and_slider_targets():
    s = run.Stat([0.1, 0.2, 0.3, 0.4])
    assert s.median == 0.25 and s.p10 < s.median < s.p90
    clock, calls = iter([10.0, 12.5]), []
    with pytest.MonkeyPatch.context() as mp:  # a clock that reads 10 s, then 12.5 s
        mp.setattr(run.time, "perf_counter", lambda: next(clock))
        assert run.timed(calls.append, "x") == 2.5 and calls == ["x"]
    t = run.slider_targets(30)
    assert len(t) == 30 and all(0 < v < 1 for v in t) and all(a != b for a, b in zip(t, t[1:]))
    assert "n=4" in s.fmt("s")
