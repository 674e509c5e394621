"""A class on one Space: many visitors in one forward pass (one merge per batch row), the batched
page handlers, through the ZeroGPU stand-in too, and a queue whose per-event records stay bounded."""

from __future__ import annotations

import inspect

import pytest
import torch

import zerogpu_standin
from langarith import arithmetic, hosting, tasks
from langarith.arithmetic import pair_weights
from langarith.page import common, compare, mlm


def _requests(stack, n=6):
    """Requests with distinct λ over every zero-shot target and two texts each."""
    langs = stack.bundle.languages
    targets = [c for c in langs if not langs[c].has_adapter] or list(langs)
    out = []
    for i in range(n):
        t = targets[i % len(targets)]
        ex = langs[t].examples or ("hola mundo, esto es una prueba",)
        out.append((ex[i % len(ex)], t, None, round(0.05 + 0.9 * i / max(n - 1, 1), 4)))
    return out


def test_row_mix_equals_each_row_through_its_own_merged_linear_map():
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(5, 4, generator=g) for _ in range(3)]
    bs = [torch.randn(5, generator=g) for _ in range(3)]
    x = torch.randn(3, 7, 4, generator=g)  # 3 rows (visitors) of 7 tokens
    w = torch.tensor([[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.2, 0.3, 0.5]])
    got = arithmetic.row_mix([torch.nn.functional.linear(x, W, b) for W, b in zip(ws, bs)], w)
    for r in range(3):  # independent: the N-way weighted sum of the weights, then the map
        merged = arithmetic.weighted_sum([{"W": W, "b": b} for W, b in zip(ws, bs)], w[r].tolist())
        torch.testing.assert_close(got[r], torch.nn.functional.linear(x[r], merged["W"], merged["b"]))
    with pytest.raises(arithmetic.MergeError):
        arithmetic.row_mix([x, x], w)


def test_a_batch_with_one_lambda_per_row_equals_the_same_requests_one_by_one(stack):
    reqs = _requests(stack)
    batch = tasks.comparisons(stack, reqs)
    tasks.clear_cache(stack, "merged")  # the one-by-one answers computed again, not read back
    alone = [tasks.compare(stack, *r) for r in reqs]
    for got, want, req in zip(batch, alone, reqs):
        assert got.formula == want.formula and got.lam == want.lam
        assert got.probs["merged"] == pytest.approx(want.probs["merged"], abs=1e-5)
        assert got.hidden_shift == pytest.approx(want.hidden_shift, abs=1e-4)
        # and the live slot's merged weights (``classify``: λ·A + (1−λ)·B written, then one
        # forward): a path that shares no code with the per-row mix
        slot = tasks.classify(stack, [req[0].strip()], pair_weights(got.a, got.b, got.lam))[0]
        assert got.probs["merged"] == pytest.approx(slot.tolist(), abs=1e-5)
    # no visitor's λ in another's answer: a row at λ = 1 is A alone and at λ = 0 is B alone,
    # whatever the other rows of its batch ask
    text, target, _, _ = reqs[0]
    ends = tasks.comparisons(stack, [(text, target, None, 1.0), (text, target, None, 0.0), reqs[3]])
    assert ends[0].probs["merged"] == pytest.approx(ends[0].probs["A"], abs=1e-5)
    assert ends[1].probs["merged"] == pytest.approx(ends[1].probs["B"], abs=1e-5)
    assert ends[0].probs["A"] != pytest.approx(ends[0].probs["B"], abs=1e-4)  # A and B differ here


def test_a_bad_request_in_a_batch_is_its_own_answer_only(stack):
    reqs = _requests(stack, 3)
    bad = (reqs[1][0], reqs[1][1], None, float("nan"))
    got = tasks.comparisons(stack, [reqs[0], bad, ("   ", reqs[2][1], None, 0.5)])
    assert isinstance(got[1], ValueError) and isinstance(got[2], ValueError)
    assert got[0].probs["merged"] == pytest.approx(tasks.compare(stack, *reqs[0]).probs["merged"], abs=1e-5)


def test_fill_mask_and_masked_lm_loss_of_a_batch_equal_one_by_one(stack):
    reqs = _requests(stack, 4)
    mask = stack.tokenizer.mask_token
    rows, probes, texts = [], [], []
    for text, target, source, lam in reqs:
        a, b = tasks.merge_pair(stack, target, source)
        rows.append(pair_weights(a, b, lam))
        probes.append(tasks.mask_a_word(text, mask))
        texts.append(tasks.mlm_text(text)[0])
    got = tasks.fill_mask(stack, probes, rows)
    tasks.clear_cache(stack, "fill_mask")
    for g, p, r in zip(got, probes, rows):
        want = tasks.fill_mask(stack, [p], [r])[0]
        assert [t for t, _ in g] == [t for t, _ in want]
        assert [v for _, v in g] == pytest.approx([v for _, v in want], abs=1e-5)
    tasks.clear_cache(stack, "mlm_loss")
    batch = tasks.mlm_token_losses(stack, list(zip(texts, rows)))
    tasks.clear_cache(stack, "mlm_loss")
    for (sums, counts), t, r in zip(batch, texts, rows):
        want_s, want_c = tasks.mlm_token_losses(stack, [(t, r)])[0]
        assert list(counts) == list(want_c)
        assert list(sums) == pytest.approx(list(want_s), rel=1e-4, abs=1e-4)


def _labels(out):
    """The three label columns of a comparison's outputs, as {label: probability} dicts."""
    return [o["value"] for o in out[1:4]]


def test_the_batched_compare_handler_equals_the_unbatched_one_row_by_row(stack):
    reqs = _requests(stack, 4)
    cols = list(zip(*[(t, None, lam, text, "") for text, t, _, lam in reqs]))
    got = compare.on_compare_rows(stack, *map(list, cols))
    assert len(got) == 9 and all(len(col) == len(reqs) for col in got)
    tasks.clear_cache(stack, "merged")
    for i, (text, t, _, lam) in enumerate(reqs):
        want = compare.on_compare(stack, t, None, lam, text, "")
        assert got[0][i] == want[0]
        for g, w in zip([got[k][i]["value"] for k in (1, 2, 3)], _labels(want)):
            assert g.keys() == w.keys() and list(g.values()) == pytest.approx(list(w.values()), abs=1e-5)
    live = mlm.on_mlm_live_rows(stack, [r[1] for r in reqs], [None] * 4, [r[3] for r in reqs],
                                [r[0] for r in reqs])
    assert live[1][0] == mlm.on_mlm_live(stack, reqs[0][1], None, reqs[0][3], reqs[0][0])[1]


def test_a_lone_bad_request_is_a_toast_and_in_a_batch_its_own_row(stack):
    import gradio as gr

    text, t, _, _ = _requests(stack, 1)[0]
    with pytest.raises(gr.Error):
        compare.on_compare_rows(stack, [t], [None], [float("nan")], [text], [""])
    got = compare.on_compare_rows(stack, [t, t], [None, None], [float("nan"), 0.4], [text, text], ["", ""])
    assert got[0][0].startswith("**Not run:**") and got[0][1] == compare.on_compare(stack, t, None, 0.4, text, "")[0]


def test_the_batched_handler_through_the_zerogpu_standin_equals_it_in_process(stack, monkeypatch):
    """One batch is one GPU call: a forked worker, pickled lists in and out, every tensor moved
    on its own. The worker's answers equal this process's, and the rows follow their own λ."""
    from test_hosting import scramble

    reqs = _requests(stack, 3)
    args = [[r[1] for r in reqs], [None] * 3, [0.0, 0.5, 1.0], [r[0] for r in reqs], [""] * 3]

    def gpu(**kw):
        return lambda fn: fn if inspect.isgeneratorfunction(fn) else zerogpu_standin.GPU(**kw)(fn)

    monkeypatch.setattr(hosting, "SPACES_GPU", gpu)
    common.serve(stack)
    try:
        handler = common.bind(compare.on_compare_rows)
        scramble(stack)
        through = handler(*args)
    finally:
        common._SERVED["run"].shutdown()
        monkeypatch.setattr(hosting, "SPACES_GPU", None)
        common.serve(stack)
    direct = compare.on_compare_rows(stack, *args)
    for i in range(3):
        assert through[0][i] == direct[0][i]
        for k in (1, 2, 3):
            g, w = through[k][i]["value"], direct[k][i]["value"]
            assert g.keys() == w.keys() and list(g.values()) == pytest.approx(list(w.values()), abs=1e-5)
    merged = [list(through[2][i]["value"].values()) for i in range(3)]
    assert merged[0] == pytest.approx(list(through[3][0]["value"].values()), abs=1e-5)  # λ 0: B
    assert merged[2] == pytest.approx(list(through[1][2]["value"].values()), abs=1e-5)  # λ 1: A
    assert merged[1] != pytest.approx(list(through[3][1]["value"].values()), abs=1e-6)  # λ shows


def test_the_pages_model_events_are_batched_and_public_names_are_unique(stack):
    from langarith.page import build_demo
    from langarith.page import demo as demo_module

    demo = build_demo(stack)
    by_name = {}
    for f in demo.fns.values():
        by_name.setdefault(f.api_name, []).append(f)
    for name in ("compare", "fill_mask", "mlm_live", "compare_recipe", "compare_drag", "details"):
        (f,) = by_name[name]
        size = demo_module.DETAILS_BATCH if name == "details" else hosting.MAX_BATCH
        assert f.batch and f.max_batch_size == size and f.concurrency_id == "model", name
    assert demo_module.DETAILS_BATCH < hosting.MAX_BATCH  # the heavy step in smaller batches
    public = [f.api_name for f in demo.fns.values() if f.api_visibility == "public"]
    assert len(public) == len(set(public)) and "flips" in public  # each public event its own name
    assert not [n for n in public if n[-2:-1] == "_" and n[-1].isdigit()]  # none renamed by Gradio


def test_the_details_step_equals_fill_mask_the_texts_loss_and_the_plots_one_by_one(stack):
    """The step after the predictions, batched: each row's fill-mask, live masked-LM curve and
    per-layer plots equal the unbatched handlers' (computed again, not read from the memo)."""
    from langarith.page import demo

    reqs = _requests(stack, 3)
    probes = [tasks.mask_a_word(r[0], stack.tokenizer.mask_token) for r in reqs]
    got = demo.on_details_rows(stack, [r[1] for r in reqs], [None] * 3, [r[3] for r in reqs],
                               [r[0] for r in reqs], probes)
    assert len(got) == 7 and all(len(col) == 3 for col in got)
    for kind in ("merged", "fill_mask", "mlm_loss"):
        tasks.clear_cache(stack, kind)
    for i, (text, t, _, lam) in enumerate(reqs):
        fills = compare.on_fill_mask(stack, t, None, lam, text, probes[i])
        for k in range(3):
            g, w = got[k][i]["value"], fills[k]["value"]
            assert g.keys() == w.keys() and list(g.values()) == pytest.approx(list(w.values()), abs=1e-5)
        assert got[4][i] == mlm.on_mlm_live(stack, t, None, lam, text)[1]  # the loss line, 3 decimals
        full = compare.on_compare(stack, t, None, lam, text, "")
        for g, w in zip((got[5][i], got[6][i]), full[-2:]):  # the plots' numbers, to float tolerance
            assert g["label"] == w["label"]  # the caption: the plot's numbers in words
            g, w = g["value"], w["value"]
            gy = [y for tr in g.data for y in (tr.y or ())]
            wy = [y for tr in w.data for y in (tr.y or ())]
            assert gy == pytest.approx(wy, abs=1e-5) and g.layout.title.text == w.layout.title.text


def test_a_merged_answer_asked_again_costs_no_forward_pass(stack, monkeypatch):
    """A class slides λ over one text: a (text, λ) any visitor already asked for is read from
    the stack's memo, the same answer; a new λ in the same batch still gets its own pass."""
    reqs = _requests(stack, 3)
    tasks.clear_cache(stack, "merged")
    first = tasks.comparisons(stack, reqs)
    passes = []
    real = tasks._classify_rows
    monkeypatch.setattr(tasks, "_classify_rows", lambda s, texts, rows, task: passes.append(len(texts))
                        or real(s, texts, rows, task))
    again = tasks.comparisons(stack, reqs)
    assert passes == [] and [a.probs for a in again] == [f.probs for f in first]
    new = (reqs[0][0], reqs[0][1], None, 0.123)
    mixed = tasks.comparisons(stack, [*reqs, new])
    assert passes == [1] and mixed[-1].lam == 0.123
    assert mixed[-1].probs["merged"] != pytest.approx(first[0].probs["merged"], abs=1e-6)


def test_predictions_are_served_before_the_heavier_steps_waiting_in_the_model_group(stack):
    """Waiting model events: the predictions (``served_first``) go ahead of details and the
    rest, each kind in arrival order, so Gradio's next batch is everyone's predictions."""
    from types import SimpleNamespace

    from langarith.page import build_demo
    from langarith.page import demo as demo_module

    def ev(name, first):
        return SimpleNamespace(name=name, fn=SimpleNamespace(fn=SimpleNamespace(served_first=first)))

    line = hosting.FirstInLine()
    for name, first in (("d1", False), ("p1", True), ("d2", False), ("p2", True), ("s1", False)):
        line.append(ev(name, first))
    assert [e.name for e in line] == ["p1", "p2", "d1", "d2", "s1"]
    # on the page: the predictions' handler is marked, the details' is not, and the model
    # group's queue is a FirstInLine from the start
    assert compare.on_predict_rows.served_first and not demo_module.on_details_rows.served_first
    page = hosting.queue(build_demo(stack))
    group = page._queue.event_queue_per_concurrency_id[hosting.MODEL_GROUP]
    assert isinstance(group.queue, hosting.FirstInLine)
    fns = {f.api_name: f for f in page.fns.values()}
    assert hosting.served_first(SimpleNamespace(fn=fns["compare_recipe"]))
    assert not hosting.served_first(SimpleNamespace(fn=fns["details"]))


def test_the_queue_lets_go_of_finished_tasks(stack):
    """Gradio 6.17.3 keeps every processed batch's task; the page's queue keeps the running ones."""
    import asyncio

    from langarith.page import build_demo

    async def main():
        tasks_ = hosting.RunningTasks()
        done = [asyncio.get_running_loop().create_task(asyncio.sleep(0)) for _ in range(50)]
        for t in done:
            tasks_.append(t)
        await asyncio.gather(*done)
        running = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        tasks_.append(running)
        assert list(tasks_) == [running]  # the 50 finished ones are gone, the running one kept
        running.cancel()

    asyncio.run(main())
    page = hosting.queue(build_demo(stack))
    assert isinstance(page._queue._asyncio_tasks, hosting.RunningTasks)


def test_the_queue_lets_go_of_completed_events(stack):
    """Gradio 6.17.3 keeps every event (and its request) while its visitor stays; the page's
    queue keeps the ones still pending in their session."""
    from types import SimpleNamespace

    from langarith.page import build_demo

    q = SimpleNamespace(pending_event_ids_session={"s1": set(), "s2": set()})
    events = hosting.PendingEvents(q)
    for i in range(100):
        sid = f"s{1 + i % 2}"
        q.pending_event_ids_session[sid].add(f"e{i}")
        events[f"e{i}"] = SimpleNamespace(session_hash=sid)
        if i >= 2:  # the event stream takes an event out of its session's pending set on completion
            q.pending_event_ids_session[f"s{1 + (i - 2) % 2}"].discard(f"e{i - 2}")
    assert set(events) == {"e97", "e98", "e99"}  # e97 completed after the last insert: next one
    assert events["e99"].session_hash == "s2"
    page = hosting.queue(build_demo(stack))
    assert isinstance(page._queue.event_ids_to_events, hosting.PendingEvents)


def test_the_queue_keeps_only_recent_event_records():
    events = hosting.RecentEvents(keep=100)
    for i in range(1000):
        events[f"e{i}"] = {"status": "queued", "process_time": None, "function": "f"}
        events[f"e{i}"]["status"] = "success"
    assert dict.__len__(events) == 100 and len(events) == 1000  # len: events ever served
    assert "e999" in events and "e0" not in events
    events["e0"]["status"] = "success"  # a dropped record reads as an empty one, not kept
    assert "e0" not in events


def test_a_visitors_newer_details_replace_their_waiting_ones_and_the_old_one_is_answered(stack):
    """A lecture hall: a details step made stale by the same visitor's newer release is dropped
    from the line (answered as Gradio's cancel route does), other visitors' are kept."""
    import asyncio

    from gradio.queueing import Event
    from gradio.server_messages import ProcessCompletedMessage

    from langarith.page import build_demo

    page = hosting.queue(build_demo(stack))
    q = page._queue
    fns = {f.api_name: f for f in page.fns.values()}
    line = q.event_queue_per_concurrency_id[hosting.MODEL_GROUP].queue
    assert isinstance(line, hosting.FirstInLine) and line.queue is q

    async def main():
        events = []
        for session, fn in (("s1", "details"), ("s2", "details"), ("s1", "compare_recipe"),
                            ("s1", "details")):
            e = Event(session, fns[fn], None, None)
            q.pending_messages_per_session.setdefault(session, asyncio.Queue())
            q.event_ids_to_events[e._id] = e
            line.append(e)
            events.append(e)
        return events

    events = asyncio.run(main())
    kept = [e._id for e in line]
    # s1's first details is gone, s2's kept, the predictions (not latest_only) kept and first
    assert events[0]._id not in kept and events[1]._id in kept and events[3]._id in kept
    assert kept[0] == events[2]._id
    msg = q.pending_messages_per_session["s1"].get_nowait()
    assert isinstance(msg, ProcessCompletedMessage) and msg.success and msg.event_id == events[0]._id
    assert q.pending_messages_per_session["s2"].empty()
    from langarith.page import demo as demo_module

    assert demo_module.on_details_rows.latest_only and not compare.on_predict_rows.latest_only


def test_a_full_hall_and_a_flooding_visitor_are_refused_with_a_line_that_says_what_to_do(stack):
    import asyncio
    from types import SimpleNamespace

    from langarith.page import build_demo

    page = hosting.queue(build_demo(stack))
    q = page._queue
    q.pending_event_ids_session["flood"] = {f"e{i}" for i in range(hosting.PER_VISITOR)}
    ok, message, kind = asyncio.run(q.push(SimpleNamespace(session_hash="flood"), None, None))
    assert not ok and kind == "queue_full" and "wait for their answers" in message
    # a full queue: Gradio's own refusal, re-worded with how many wait and how long to wait
    q.max_size = 0
    index = next(i for i, f in page.fns.items() if f.fn is not None and not f.inputs)
    body = SimpleNamespace(session_hash="new", fn_index=index, data=[])
    joined = SimpleNamespace(url=SimpleNamespace(path="/gradio_api/queue/join"))
    ok, message, kind = asyncio.run(q.push(body, joined, None))
    assert not ok and kind == "queue_full"
    assert message.startswith("This Space is busy") and "Try again in about" in message
    assert hosting.QUEUE["max_size"] >= 300  # a hundred students' chains of three
