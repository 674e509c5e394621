"""Layers 2-3: the live merged slot, its isolation between requests, predictions, bad input,
merge export and hostile adapter files."""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langarith import tasks
from langarith.arithmetic import MergeError
from langarith.loading import BundleError, InputError, load_adapter_checked
from langarith.model import MERGED, language_params

PT_TEXT = "insira uma fórmula na célula"
ES_TEXT = "formatee el párrafo y el estilo de página"
LAMS = [0.0, 0.3, 1.0]


def adapter_file(bundle: Path, code: str) -> dict[str, torch.Tensor]:
    """A language adapter read straight from its file, keyed without the adapter name."""
    sd = load_file(str(bundle / "adapters" / code / "adapter.safetensors"))
    out = {k.replace(f"adapters.{code}.", "adapters.", 1): v for k, v in sd.items()}
    assert len(out) == len(sd)
    return out


def slot(stack) -> dict[str, torch.Tensor]:
    """The live slot as the model's own parameters (not the FlatAdapter bookkeeping)."""
    return {k: p.detach().clone() for k, p in language_params(stack.model, MERGED).items()}


def inv_keys(sd) -> list[str]:
    return sorted(k for k in sd if "invertible_adapters" in k)


# --- (a) merge exactness -------------------------------------------------------------------------


def test_bundle_adapters_are_random_not_identity(tiny_bundle):
    a, b = adapter_file(tiny_bundle, "en"), adapter_file(tiny_bundle, "es")
    init = adapter_file(tiny_bundle, "_init")
    assert len(a) == 16 and len(inv_keys(a)) == 8
    for k in a:
        assert not torch.allclose(a[k], init[k], atol=1e-3), f"en.{k} still at its init"
        assert not torch.allclose(a[k], b[k], atol=1e-3), f"en and es agree on {k}"
    # init_weights="bert" starts the up-projection at zero (identity adapter): ours moved away
    up = [k for k in a if k.endswith("adapter_up.weight")]
    assert up and all(float(a[k].abs().max()) > 0.1 for k in up)


@pytest.mark.parametrize("lam", LAMS)
def test_merge_equals_hand_computation_and_average_adapter(stack, tiny_bundle, fresh_model, lam):
    a, b = adapter_file(tiny_bundle, "en"), adapter_file(tiny_bundle, "es")
    with stack.lock:
        stack.write_merge({"en": lam, "es": 1 - lam})
        live = slot(stack)
    assert set(live) == set(a)
    assert len(inv_keys(live)) == 8, "the slot must include the invertible adapter"

    # 1. by hand, from the files
    for k in a:
        expect = lam * a[k].double() + (1 - lam) * b[k].double()
        torch.testing.assert_close(live[k].double(), expect, rtol=0, atol=1e-6, msg=k)
    if lam == 1.0:
        assert all(torch.equal(live[k], a[k]) for k in a), "λ=1 must give A bit-exactly"
    if lam == 0.0:
        assert all(torch.equal(live[k], b[k]) for k in a), "λ=0 must give B bit-exactly"

    # 2. the library's own merge on a separate model (base_model: includes the invertible adapter)
    model = fresh_model()
    for code in ("en", "es"):
        model.load_adapter(str(tiny_bundle / "adapters" / code), load_as=code, set_active=False,
                           use_safetensors=True)
    model.base_model.average_adapter("avg", ["en", "es"], weights=[lam, 1 - lam],
                                     normalize_weights=False, overwrite_ok=True)
    avg = {k: p.detach() for k, p in language_params(model, "avg").items()}
    assert set(avg) == set(live)
    assert len(inv_keys(avg)) == 8
    for k in avg:
        torch.testing.assert_close(live[k], avg[k], rtol=0, atol=1e-6, msg=k)
    for k in inv_keys(avg):  # explicitly: the invertible adapter is merged, not left at init
        torch.testing.assert_close(live[k], avg[k], rtol=0, atol=1e-6, msg=k)
        if lam < 1:
            assert not torch.allclose(live[k], a[k], atol=1e-4), k
        if lam > 0:
            assert not torch.allclose(live[k], b[k], atol=1e-4), k


def test_slot_contents_match_merged_state_dict(stack):
    with stack.lock:
        stack.write_merge({"en": 0.4, "es": 0.6})
        live = slot(stack)
        sd = stack.merged_state_dict()
    assert set(sd) == set(live) and all(torch.equal(sd[k], live[k]) for k in sd)
    assert stack.weights == {"en": 0.4, "es": 0.6}


def test_three_way_and_extrapolated_merges(stack, tiny_bundle):
    a, b, c = (adapter_file(tiny_bundle, x) for x in ("en", "es", "de"))
    init = adapter_file(tiny_bundle, "_init")
    with stack.lock:
        stack.write_merge({"en": 0.2, "es": 0.5, "de": 0.3})
        three = slot(stack)
        stack.write_merge({"en": 1.2, "es": 0.3}, allow_extrapolation=True)
        extra = slot(stack)
    for k in a:
        torch.testing.assert_close(three[k].double(),
                                   0.2 * a[k].double() + 0.5 * b[k].double() + 0.3 * c[k].double(),
                                   rtol=0, atol=1e-6)
        expect = init[k].double() + 1.2 * (a[k] - init[k]).double() + 0.3 * (b[k] - init[k]).double()
        torch.testing.assert_close(extra[k].double(), expect, rtol=0, atol=1e-5)


# --- (b) in place ------------------------------------------------------------------------------------


def test_merges_are_in_place(stack):
    params = language_params(stack.model, MERGED)
    assert len(params) == 16
    flat_ptr = stack.slot.flat.data_ptr()
    ptrs = {k: p.data_ptr() for k, p in params.items()}
    # every slot parameter lives inside the one flat buffer
    lo, hi = flat_ptr, flat_ptr + stack.slot.flat.numel() * stack.slot.flat.element_size()
    assert all(lo <= q < hi for q in ptrs.values())
    adapters_before = sorted(stack.model.adapters_config.adapters)
    n_params = sum(1 for _ in stack.model.parameters())
    seen = []
    for lam in (0.1, 0.9, 0.5, 0.0, 1.0):
        tasks.classify(stack, [PT_TEXT], {"en": lam, "es": 1 - lam}, "topic")
        assert stack.slot.flat.data_ptr() == flat_ptr
        now = language_params(stack.model, MERGED)
        assert {k: p.data_ptr() for k, p in now.items()} == ptrs
        seen.append(stack.slot.flat.clone())
    assert sorted(stack.model.adapters_config.adapters) == adapters_before
    assert sum(1 for _ in stack.model.parameters()) == n_params
    assert not torch.equal(seen[0], seen[1]), "the merges did write different weights"


def test_whole_model_is_in_eval_mode(stack):
    """The slot is added after ``model.eval()``; a module left in train mode would apply dropout."""
    training = [n for n, m in stack.model.named_modules() if m.training]
    assert training == []
    assert not any(p.requires_grad for p in stack.model.parameters())


# --- (c) concurrency isolation ------------------------------------------------------------------------


def _run_threads(n, target):
    errors: list[BaseException] = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung (lock never released?)"
    if errors:
        raise errors[0]


def test_concurrent_requests_are_isolated(stack, monkeypatch):
    n_threads, per_thread = 8, 4
    lams = [i / (n_threads * per_thread - 1) for i in range(n_threads * per_thread)]

    def request(lam):
        return tasks.classify(stack, [PT_TEXT], {"en": lam, "es": 1 - lam}, "topic")[0]

    refs = [request(lam) for lam in lams]  # each request made alone, serially
    for i in range(len(refs)):  # distinct enough that a mix-up would show
        for j in range(i):
            assert (refs[i] - refs[j]).abs().max() > 1e-5, (lams[i], lams[j])

    # widen the race window: a pause between writing the slot and the forward pass
    write = stack.write_merge

    def slow_write(weights, **kw):
        write(weights, **kw)
        time.sleep(0.002)

    monkeypatch.setattr(stack, "write_merge", slow_write)
    results: dict[int, torch.Tensor] = {}
    start = threading.Barrier(n_threads, timeout=60)

    def worker(t):
        start.wait()
        for r in range(per_thread):
            i = r * n_threads + t  # interleave λs across threads
            results[i] = request(lams[i])

    _run_threads(n_threads, worker)
    assert len(results) == len(lams)
    for i, lam in enumerate(lams):
        torch.testing.assert_close(results[i], refs[i], rtol=0, atol=1e-6,
                                   msg=f"request λ={lam:.3f} got another request's merge")


def test_negative_control_without_the_lock_results_mix(stack, monkeypatch):
    """The isolation test can fail: with the lock replaced by a no-op and both writes forced to
    happen before either forward pass, one of two requests computes with the other's merge."""
    refs = {lam: tasks.classify(stack, [PT_TEXT], {"en": lam, "es": 1 - lam}, "topic")[0]
            for lam in (0.0, 1.0)}
    assert (refs[0.0] - refs[1.0]).abs().max() > 1e-3
    monkeypatch.setattr(stack, "lock", contextlib.nullcontext())
    both_written = threading.Barrier(2, timeout=60)
    write = stack.write_merge

    def write_then_wait(weights, **kw):
        write(weights, **kw)
        both_written.wait()

    monkeypatch.setattr(stack, "write_merge", write_then_wait)
    results = {}

    def worker(t):
        lam = float(t)
        results[lam] = tasks.classify(stack, [PT_TEXT], {"en": lam, "es": 1 - lam}, "topic")[0]

    _run_threads(2, worker)
    wrong = [lam for lam in refs if not torch.allclose(results[lam], refs[lam], rtol=0, atol=1e-6)]
    assert len(wrong) == 1, "without the lock exactly one request must see the other's merge"
    other = 1.0 - wrong[0]
    torch.testing.assert_close(results[wrong[0]], refs[other], rtol=0, atol=1e-6)


# --- (d) predictions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target,text,a,b", [("pt", PT_TEXT, "en", "es"),  # zero-shot
                                             ("es", ES_TEXT, "es", "en")])  # enhancement
def test_compare_endpoints(stack, target, text, a, b):
    mask_text = tasks.mask_a_word(text)
    assert "<mask>" in mask_text
    c1 = tasks.compare(stack, text, target, None, 1.0, mask_text=mask_text)
    c0 = tasks.compare(stack, text, target, None, 0.0, mask_text=mask_text)
    cm = tasks.compare(stack, text, target, b, 0.5, mask_text=mask_text)
    for c in (c1, c0, cm):
        assert (c.target, c.a, c.b) == (target, a, b)
        assert c.labels == ["calc", "writer", "draw"]
        assert set(c.probs) == {"merged", "A", "B"}
        for p in c.probs.values():
            assert len(p) == 3 and sum(p) == pytest.approx(1, abs=1e-5)
    assert c1.formula == f"merged = 1.00·{a} + 0.00·{b}"
    assert cm.formula == f"merged = 0.50·{a} + 0.50·{b}"
    assert max(abs(x - y) for x, y in zip(c1.probs["A"], c1.probs["B"])) > 1e-3, "A and B must differ"
    assert c1.probs["merged"] == pytest.approx(c1.probs["A"], abs=1e-6)
    assert c0.probs["merged"] == pytest.approx(c0.probs["B"], abs=1e-6)
    assert cm.probs["merged"] != pytest.approx(cm.probs["A"], abs=1e-4)
    assert cm.probs["merged"] != pytest.approx(cm.probs["B"], abs=1e-4)
    # A alone is the plain Stack(A, task)
    direct = tasks.classify(stack, [text], a, "topic")[0].tolist()
    assert c1.probs["A"] == pytest.approx(direct, abs=1e-6)
    # the hidden-state shift is zero at λ=1 and grows away from it
    assert max(c1.hidden_shift) < 1e-5 and max(c0.hidden_shift) > 1e-3
    assert len(cm.hidden_shift) == 3  # embeddings + 2 layers
    # fill-mask top-k lists
    for c in (c1, c0, cm):
        assert set(c.fill_mask) == {"merged", "A", "B"}
        for top in c.fill_mask.values():
            assert len(top) == 5
            probs = [p for _, p in top]
            assert probs == sorted(probs, reverse=True) and all(0 < p <= 1 for p in probs)
            assert all(isinstance(t, str) and t for t, _ in top)
    assert [t for t, _ in c1.fill_mask["A"]] != [t for t, _ in c1.fill_mask["B"]]
    for (tm, pm), (ta, pa) in zip(c1.fill_mask["merged"], c1.fill_mask["A"]):
        assert tm == ta and pm == pytest.approx(pa, abs=1e-6)
    for (tm, pm), (tb, pb) in zip(c0.fill_mask["merged"], c0.fill_mask["B"]):
        assert tm == tb and pm == pytest.approx(pb, abs=1e-6)
    js = cm.to_json()
    assert js["predictions"]["merged"] in cm.labels and js["formula"] == cm.formula


def test_suggested_sources(stack):
    assert tasks.baseline_language(stack, "pt") == "en"
    assert tasks.suggested_source(stack, "pt") == "es"
    assert tasks.baseline_language(stack, "nl") == "en"
    assert tasks.suggested_source(stack, "nl") == "de"
    assert tasks.baseline_language(stack, "es") == "es"
    assert tasks.suggested_source(stack, "es") == "en"


def test_evaluate_runs(stack):
    rows = tasks.load_eval(stack, "pt")
    assert len(rows) == 5
    m = tasks.evaluate(stack, rows, {"en": 0.5, "es": 0.5})
    assert m["n"] == 5 and 0 <= m["accuracy"] <= 1


# --- (e) bad input ---------------------------------------------------------------------------------


def _next_request_works(stack):
    """A good request from another thread: fails if a bad one left the lock held."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("c", tasks.compare(stack, PT_TEXT, "pt", "es", 0.5)))
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the next request hung"
    assert out["c"].formula == "merged = 0.50·en + 0.50·es"


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(text="   "), InputError, "text is empty"),
    (dict(text=""), InputError, "text is empty"),
    (dict(text=None), InputError, "text is empty"),
    (dict(target="xx"), InputError, r"unknown language 'xx'.*de, en, es, nl, pt"),
    (dict(source="xx"), InputError, r"unknown language 'xx'"),
    (dict(source="nl"), InputError, r"Dutch \(nl\) has no language adapter"),
    (dict(source="en"), InputError, "both en"),
    (dict(lam=float("nan")), MergeError, "finite"),
    (dict(lam=float("inf")), MergeError, "finite"),
    (dict(lam=float("-inf")), MergeError, "finite"),
    (dict(lam=1.5), MergeError, r"\[0, 1\]"),
    (dict(lam=-0.1), MergeError, r"\[0, 1\]"),
    (dict(lam="abc"), MergeError, "must be a number"),
    (dict(task="ner"), InputError, "unknown task 'ner'"),
    (dict(mask_text="no mask here"), InputError, "needs a <mask> token"),
])
def test_bad_input_is_refused_and_next_request_works(stack, kwargs, exc, msg):
    with stack.lock:
        stack.write_merge({"en": 0.25, "es": 0.75})
        before = stack.slot.flat.clone()
    args = dict(text=PT_TEXT, target="pt", source="es", lam=0.5, task=None, mask_text=None) | kwargs
    with pytest.raises(exc, match=msg):
        tasks.compare(stack, args["text"], args["target"], args["source"], args["lam"],
                      args["task"], mask_text=args["mask_text"])
    if exc is MergeError or kwargs.get("source") in ("nl", "xx"):
        assert torch.equal(stack.slot.flat, before), "a refused merge must not touch the slot"
    _next_request_works(stack)


@pytest.mark.parametrize("adapter,exc,msg", [
    ({"en": float("nan"), "es": 0.5}, MergeError, "finite"),
    ({"en": 0.6, "es": 0.6}, MergeError, "sum to 1"),
    ({"pt": 0.5, "es": 0.5}, InputError, r"Portuguese \(pt\) has no language adapter"),
    ({"xx": 0.5, "es": 0.5}, InputError, "unknown language 'xx'"),
    ("pt", InputError, "no language adapter of its own"),
    ("xx", InputError, "unknown language"),
])
def test_classify_refuses_bad_adapters(stack, adapter, exc, msg):
    with pytest.raises(exc, match=msg):
        tasks.classify(stack, [PT_TEXT], adapter, "topic")
    _next_request_works(stack)


def test_long_text_is_cut_with_notice(stack):
    c = tasks.compare(stack, "celda " * 500, "pt", "es", 0.5)
    assert c.notice and "cut" in c.notice


# --- (f) merge export ---------------------------------------------------------------------------------


def test_saved_merge_loads_in_fresh_model_and_reproduces_predictions(stack, tiny_bundle, fresh_model,
                                                                      tmp_path):
    from adapters.composition import Stack

    weights = {"en": 0.3, "es": 0.7}
    out = stack.save_merged(weights, tmp_path / "merged-pt")
    saved = load_file(str(out / "adapter.safetensors"))
    assert len(saved) == 16 and sum("invertible_adapters" in k for k in saved) == 8
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["config"]["inv_adapter"] == "nice" and cfg["langarith"]["weights"] == weights

    texts = [PT_TEXT, "desenhe uma linha e uma forma"]
    expect = tasks.classify(stack, texts, weights, "topic")

    model = fresh_model(task=True)
    model.load_adapter(str(out), load_as="pt_merged", set_active=False, use_safetensors=True)
    loaded = language_params(model, "pt_merged")
    a, b = adapter_file(tiny_bundle, "en"), adapter_file(tiny_bundle, "es")
    for k in a:
        torch.testing.assert_close(loaded[k].double(), 0.3 * a[k].double() + 0.7 * b[k].double(),
                                   rtol=0, atol=1e-6)
    model.set_active_adapters(Stack("pt_merged", "topic"))
    enc = stack.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        probs = model(**enc, head="topic").logits.softmax(-1)
    torch.testing.assert_close(probs, expect, rtol=0, atol=1e-5)
    # and it is not just any adapter: A alone predicts differently
    assert not torch.allclose(expect, tasks.classify(stack, texts, "en", "topic"), atol=1e-3)


# --- (g) hostile and broken adapter files -------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling this creates the marker file


def _adapter_folder(tiny_bundle: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(tiny_bundle / "adapters" / "en" / "adapter_config.json", dest)
    return dest


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_weights_never_run(tiny_bundle, fresh_model, tmp_path, writer):
    # control: the payload is live — plain unpickling does create a marker
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(control))).close()
    assert control.exists()

    marker = tmp_path / "pwned-marker"
    folder = _adapter_folder(tiny_bundle, tmp_path / "hostile")
    if writer == "pickle":
        (folder / "pytorch_adapter.bin").write_bytes(pickle.dumps({"x": _Payload(marker)}))
    else:
        torch.save({"x": _Payload(marker)}, folder / "pytorch_adapter.bin")
    model = fresh_model()
    with pytest.raises(BundleError, match=r"cannot load adapter 'hostile'.*not run"):
        load_adapter_checked(model, folder, "hostile")
    assert not marker.exists(), "unpickling ran code from the adapter file"
    assert "hostile" not in model.adapters_config


def test_bundle_with_hostile_adapter_is_refused(tiny_bundle, tmp_path):
    from langarith.model import LanguageStack

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    marker = tmp_path / "pwned-marker"
    (bundle / "adapters" / "de" / "adapter.safetensors").unlink()
    (bundle / "adapters" / "de" / "pytorch_adapter.bin").write_bytes(pickle.dumps([_Payload(marker)]))
    with pytest.raises(BundleError, match=r"cannot load adapter 'de'"):
        LanguageStack(bundle, device="cpu")
    assert not marker.exists()


def test_truncated_safetensors_is_refused(tiny_bundle, fresh_model, tmp_path):
    folder = _adapter_folder(tiny_bundle, tmp_path / "truncated")
    data = (tiny_bundle / "adapters" / "en" / "adapter.safetensors").read_bytes()
    (folder / "adapter.safetensors").write_bytes(data[: len(data) // 2])
    model = fresh_model()
    with pytest.raises(BundleError, match=r"cannot load adapter 'cut'.*SafetensorError"):
        load_adapter_checked(model, folder, "cut")
    assert "cut" not in model.adapters_config
    load_adapter_checked(model, tiny_bundle / "adapters" / "en", "en")  # the intact one loads
    assert "en" in model.adapters_config


def test_partial_weights_are_refused(tiny_bundle, fresh_model, tmp_path):
    from safetensors.torch import save_file

    folder = _adapter_folder(tiny_bundle, tmp_path / "partial")
    sd = load_file(str(tiny_bundle / "adapters" / "en" / "adapter.safetensors"))
    dropped = "bert.invertible_adapters.en.G.2.weight"
    save_file({k: v for k, v in sd.items() if k != dropped}, str(folder / "adapter.safetensors"))
    model = fresh_model()
    with pytest.raises(BundleError, match=r"lacks 1 tensors.*G\.2\.weight"):
        load_adapter_checked(model, folder, "en")
    assert "en" not in model.adapters_config


def test_folder_without_config_or_weights_is_refused(tiny_bundle, fresh_model, tmp_path):
    model = fresh_model()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="no adapter_config.json"):
        load_adapter_checked(model, empty, "x")
    no_weights = _adapter_folder(tiny_bundle, tmp_path / "noweights")
    with pytest.raises(BundleError, match="no weights file"):
        load_adapter_checked(model, no_weights, "x")
