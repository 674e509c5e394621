"""Beyond one λ: per-layer λ merges (in place, against a hand computation), the output ensemble
(against the two stacks' outputs averaged by hand), bad anchors, recipes and the CLI flags."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from langarith import arithmetic, beyond, results, share, stats, tasks
from langarith.arithmetic import MergeError
from langarith.loading import InputError
from langarith.model import LanguageStack, Merge

TEXTS = ["insira uma fórmula na célula", "desenhe uma linha e uma forma"]


@pytest.fixture(scope="module")
def deep(tmp_path_factory) -> LanguageStack:
    """A 4-layer tiny stack, so a gradient has interpolated (not only anchor) layers."""
    from langarith.bundle.tiny import build_tiny_bundle

    path = build_tiny_bundle(tmp_path_factory.mktemp("deep") / "tiny", layers=4, precompute=False)
    return LanguageStack(path, device="cpu")


def _hand_layer_merge(a: dict, b: dict, lams: list[float], lam_inv: float) -> dict:
    """λ·A + (1−λ)·B key by key, λ looked up from the key's layer number (written out apart
    from the library's lerp and its key parsing)."""
    out = {}
    for k in a:
        m = re.search(r"encoder\.layer\.(\d+)\.", k)
        lam = lam_inv if "invertible" in k else lams[int(m.group(1))]
        out[k] = lam * a[k] + (1 - lam) * b[k]
    return out


def test_layer_lambdas_interpolate_between_evenly_spread_anchors():
    assert arithmetic.layer_lambdas([0, 0.5, 1], 5) == [0, 0.25, 0.5, 0.75, 1]
    assert arithmetic.layer_lambdas([0.2, 0.8], 4) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert arithmetic.layer_lambdas([0.3], 3) == [0.3, 0.3, 0.3]
    assert arithmetic.layer_lambdas([1, 0, 1], 5) == [1, 0.5, 0, 0.5, 1]


def test_live_per_layer_merge_matches_a_hand_computation_layer_by_layer(deep):
    assert deep.n_layers == 4
    a, b = deep.language_state_dict("en"), deep.language_state_dict("es")
    merge = Merge.of({"en": 0.5, "es": 0.5}, "layer_gradient", lam_layers=(0.2, 0.8), lam_inv=0.35)
    with deep.lock:
        deep.write(merge)
        got = deep.merged_state_dict()
    want = _hand_layer_merge(a, b, [0.2, 0.4, 0.6, 0.8], 0.35)
    inv = [k for k in want if "invertible" in k]
    assert inv and len(inv) < len(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)
    # the pure function of the registry computes the same merge
    pure = arithmetic.METHODS["layer_gradient"].function(None, [a, b], [0.5, 0.5], lam_layers=(0.2, 0.8),
                                                      lam_inv=0.35)
    for k in want:
        torch.testing.assert_close(pure[k], want[k], rtol=0, atol=1e-6, msg=k)
    # layers really differ: a single λ = 0.5 everywhere is not this merge
    flat = _hand_layer_merge(a, b, [0.5] * 4, 0.5)
    assert not torch.allclose(got[inv[0]], flat[inv[0]])
    top = next(k for k in want if ".layer.3." in k)
    assert not torch.allclose(got[top], flat[top])


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.55, 1.0])
def test_constant_gradient_equals_the_single_lambda_merge_bit_for_bit(deep, stack, lam):
    for st in (deep, stack):
        with st.lock:
            st.write_merge({"en": lam, "es": 1 - lam})
            single = st.slot.flat.clone()
            st.write(Merge.of({"en": 0.9, "es": 0.1}, "layer_gradient",
                              lam_layers=(lam,) * min(3, st.n_layers), lam_inv=lam))
            assert torch.equal(st.slot.flat, single)
    pure = arithmetic.layer_gradient(stack.language_state_dict("en"), stack.language_state_dict("es"),
                                     [lam, lam], lam)
    lin = arithmetic.interpolate(stack.language_state_dict("en"), stack.language_state_dict("es"), lam)
    assert all(torch.equal(pure[k], lin[k]) for k in lin)


def test_per_layer_write_allocates_nothing(deep):
    params = {n: p for n, p in deep.model.named_parameters() if ".merged." in n}
    before = {n: p.data_ptr() for n, p in params.items()}
    flat_ptr = deep.slot.flat.data_ptr()
    start, end = flat_ptr, flat_ptr + deep.slot.flat.numel() * deep.slot.flat.element_size()
    with deep.use(Merge.of({"en": 0.5, "es": 0.5}, "layer_gradient", lam_layers=(0.1, 0.9, 0.4),
                           lam_inv=0.7), None):
        pass
    assert deep.slot.flat.data_ptr() == flat_ptr
    assert {n: p.data_ptr() for n, p in params.items()} == before
    assert all(start <= ptr < end for ptr in before.values())  # the model reads the slot's buffer
    runs = deep.slot.layer_runs
    assert runs[0][0] == 0 and runs[-1][1] == deep.slot.flat.numel()
    assert all(r[1] == s[0] for r, s in zip(runs, runs[1:]))  # contiguous, covering the buffer
    assert {r[2] for r in runs} == {0, 1, 2, 3, None}


@pytest.mark.parametrize("anchors, message", [
    ([0.2, float("nan")], "anchor 2 of 2: λ must be a finite number"),
    ([0.2, 1.5], "must lie in [0, 1]"),
    ([], "at least one anchor"),
    ([0.1, 0.2, 0.3, 0.4, 0.5], "5 λ anchors for 4 layers"),
])
def test_bad_anchors_get_a_clear_message(deep, anchors, message):
    r = share.Recipe(target="pt", source="es", method="layer_gradient", lam_layers=anchors)
    with pytest.raises(MergeError, match=re.escape(message)):
        r.merge(deep)


def test_anchor_text_and_extrapolation(deep):
    with pytest.raises(InputError, match="'abc' is not a number"):
        share.parse_anchors("0.2, abc")
    with pytest.raises(InputError, match="empty value"):
        share.parse_anchors("0.2,,0.8")
    assert share.parse_anchors("  ") is None
    r = share.Recipe(target="pt", source="es", method="layer_gradient", lam_layers=[-0.2, 1.5],
                     allow_extrapolation=True)
    assert r.merge(deep).lam_layers == (-0.2, 1.5)


def test_recipe_json_and_link_round_trip(deep):
    r = share.Recipe(target="pt", source="es", lam=0.6, method="layer_gradient",
                     lam_layers=[0.2, 0.5, 0.8], lam_inv=0.4)
    back = share.Recipe.from_json(r.to_json())
    assert back == r and back.merge(deep) == r.merge(deep)
    m = back.merge(deep)
    assert m.method == "layer_gradient" and m.lam_layers == (0.2, 0.5, 0.8) and m.lam_inv == 0.4
    q = share.to_query(r)
    assert "lam_layers=0.2%2C0.5%2C0.8" in q and "lam_inv=0.4" in q
    from urllib.parse import parse_qsl

    linked = share.from_query(dict(parse_qsl(q[1:])))
    assert linked.merge(deep) == m
    bad = json.loads(r.to_json())
    bad["lam_layers"] = "0.2,0.8"
    with pytest.raises(InputError, match="lam_layers"):
        share.Recipe.from_json(json.dumps(bad))


def _direct_probs(fresh_model, bundle, code: str, texts: list[str]) -> torch.Tensor:
    """Stack(code, task) on a plain ``adapters`` model loaded from the bundle's folders."""
    from adapters.composition import Stack

    model = fresh_model(task=True)
    model.load_adapter(str(bundle.path(bundle.languages[code].adapter)), load_as=code,
                       set_active=False, use_safetensors=True)
    task = bundle.task(None).name
    model.set_active_adapters(Stack(code, task))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bundle.path(bundle.manifest["tokenizer"])))
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=tasks.MAX_TOKENS)
    with torch.no_grad():
        return model(**enc, head=task).logits.float().softmax(-1)


def test_output_ensemble_equals_a_direct_average_of_the_two_stacks(stack, fresh_model):
    pa = _direct_probs(fresh_model, stack.bundle, "en", TEXTS)
    pb = _direct_probs(fresh_model, stack.bundle, "es", TEXTS)
    assert not torch.allclose(pa, pb, atol=1e-3)  # else any mixture would pass
    for lam in (0.0, 0.3, 1.0):
        got = tasks.ensemble_probs(stack, TEXTS, "en", "es", lam)
        torch.testing.assert_close(got, lam * pa + (1 - lam) * pb, rtol=0, atol=1e-5)
    cmp = tasks.compare_ensemble(stack, TEXTS[0], "pt", "es", 0.3)
    torch.testing.assert_close(torch.tensor(cmp.probs["merged"]), 0.3 * pa[0] + 0.7 * pb[0],
                               rtol=0, atol=1e-5)
    assert "ensemble" in cmp.formula and set(cmp.probs) == {"merged", "A", "B", "weight_merge"}


def test_ensemble_sweep_predictions_are_argmax_of_the_mixture(stack):
    grid = (0.0, 0.3, 0.7, 1.0)
    sw = tasks.ensemble_sweep(stack, "pt", "es", grid)
    rows = tasks.load_eval(stack, "pt", None, "test")
    pa, pb = (tasks.predict_probs(stack, rows, c) for c in ("en", "es"))
    for i, lam in enumerate(grid):
        want = (lam * pa + (1 - lam) * pb).argmax(-1).tolist()
        assert tasks.decode_predictions(sw["predictions"]["test"][i]) == want
    merge = tasks.sweep(stack, "pt", "es", grid)
    assert sw["a_alone"] == merge["a_alone"] and sw["b_alone"] == merge["b_alone"]
    assert set(sw["gain_vs_better"]) == {"points", "ci95", "p_positive"}


def test_ensemble_mlm_is_a_mixture_likelihood(stack):
    grid = (0.0, 0.25, 0.5, 1.0)
    ens = tasks.ensemble_mlm_curve(stack, TEXTS, "en", "es", grid)
    single = tasks.mlm_curve(stack, TEXTS, "en", "es", grid)
    la = tasks.mlm_loss(stack, TEXTS, "en")
    lb = tasks.mlm_loss(stack, TEXTS, "es")
    loss = {p["lam"]: p["loss"] for p in ens["points"]}
    assert loss[1.0] == pytest.approx(la, abs=1e-5) and loss[0.0] == pytest.approx(lb, abs=1e-5)
    assert ens["n_tokens"] == single["n_tokens"]
    for lam in (0.25, 0.5):  # −log of a mixture ≤ the mixture of −logs (concavity), never equal here
        assert loss[lam] < lam * la + (1 - lam) * lb
    summary = tasks.heldout_mlm_summary(ens)
    assert summary["halves"]["second"]["a"] > 0


def test_forward_cost_counts_one_and_two_passes(stack):
    cost = tasks.forward_cost(stack, TEXTS, "en", "es", 0.5, repeats=1)
    assert cost["forwards"] == {"one_adapter": 1, "weight_merge": 1, "ensemble": 2}
    assert all(v > 0 for v in cost["seconds"].values())
    assert cost["ensemble_over_one"] == pytest.approx(cost["seconds"]["ensemble"]
                                                      / cost["seconds"]["one_adapter"])


def test_choice_difference_bootstrap_against_a_hand_choice():
    rng = np.random.default_rng(1)
    cx = stats.accuracy_counts(rng.random((3, 2, 40)) < np.array([0.5, 0.7, 0.6])[:, None, None])
    cy = stats.accuracy_counts(rng.random((2, 2, 40)) < np.array([0.55, 0.5])[:, None, None])
    r = stats.bootstrap_choice_difference(cx[:, 0], cx[:, 1], [0, 0, 0], cy[:, 0], cy[:, 1], [0, 0],
                                          n_resamples=200)
    ix = int(np.argmax(cx[:, 0, :, 0].mean(1)))
    iy = int(np.argmax(cy[:, 0, :, 0].mean(1)))
    want = (cx[ix, 1, :, 0].mean() - cy[iy, 1, :, 0].mean()) * 100
    assert (r["x_chosen"], r["y_chosen"]) == (ix, iy)
    assert r["gain"]["points"] == pytest.approx(want)
    lo, hi = r["gain"]["ci95"]
    assert lo <= hi


def test_gradient_grid_holds_the_constant_gradients():
    grid = beyond.gradient_grid()
    assert len(grid) == 9 and all((v, v) in grid for v in beyond.GRADIENT_VALUES)
    m = beyond.gradient_merge("en", "es", (0.25, 1.0))
    assert m.lam_layers == (0.25, 1.0) and m.lam_inv == 0.25


def test_cli_layer_flags_write_the_same_adapter_as_the_python_api(stack, tiny_bundle, tmp_path):
    r = subprocess.run([sys.executable, "-m", "langarith", "merge", "--bundle", str(tiny_bundle),
                        "--target", "pt", "--source", "es", "--lam-layers", "0.2,0.9",
                        "--lam-inv", "0.4", "--out", str(tmp_path / "cli")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "λ_inv 0.40" in out["formula"]
    merge = share.Recipe(target="pt", source="es", method="layer_gradient", lam_layers=[0.2, 0.9],
                         lam_inv=0.4).merge(stack)
    stack.save_merged(merge, tmp_path / "api")
    cli_sd = load_file(str(tmp_path / "cli" / "adapter.safetensors"))
    api_sd = load_file(str(tmp_path / "api" / "adapter.safetensors"))
    assert cli_sd.keys() == api_sd.keys()
    assert all(torch.equal(cli_sd[k], api_sd[k]) for k in api_sd)
    cfg = json.loads((tmp_path / "cli" / "adapter_config.json").read_text())["langarith"]
    assert cfg["anchors"] == [0.2, 0.9] and cfg["lam_inv"] == 0.4
    stack.save_merged({"en": 0.5, "es": 0.5}, tmp_path / "single")
    single = load_file(str(tmp_path / "single" / "adapter.safetensors"))
    assert not all(torch.equal(single[k], api_sd[k]) for k in api_sd)
    bad = subprocess.run([sys.executable, "-m", "langarith", "merge", "--bundle", str(tiny_bundle),
                          "--target", "pt", "--lam-layers", "0.2,nan", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "finite number" in bad.stderr and not (tmp_path / "x").exists()


def test_page_handlers_show_the_ensemble_and_the_per_layer_merge(stack, tmp_path):
    import gradio as gr

    from langarith.page import build_demo, compare, keep, method, mlm, sweep
    from langarith.page.common import Method

    out = compare.on_compare(stack, "pt", "es", 0.3, TEXTS[0], "", Method(tasks.ENSEMBLE), "topic")
    assert "ensemble = 0.30·p(en-stack)" in out[0]
    direct = tasks.ensemble_probs(stack, TEXTS[:1], "en", "es", 0.3)[0].tolist()
    assert list(out[2]["value"].values()) == pytest.approx(direct)  # the middle column
    layered = compare.on_compare(stack, "pt", "es", 0.5, TEXTS[0], "",
                                 Method("layer_gradient", lam_layers="0.2, 0.8", lam_inv=0.4), "topic")
    assert "λₗ 0.20 → 0.80" in layered[0] and "λ_inv 0.40" in layered[0]
    fig = method.on_layer_plot(stack, 0.5, "0.2, 0.8", 0.4)
    assert list(fig.data[0].y) == pytest.approx([0.4, 0.2, 0.8])
    with pytest.raises(gr.Error, match="finite number"):
        method.on_layer_plot(stack, 0.5, "0.2, nan", 0.4)
    layered_method = Method("layer_gradient", lam_layers="0.2, 0.8", lam_inv=0.4)
    zip_path, recipe_path, _ = keep.on_export(stack, "pt", "es", 0.5, layered_method)
    r = share.Recipe.from_json(open(recipe_path, encoding="utf-8").read())
    assert r.method == "layer_gradient" and r.lam_layers == [0.2, 0.8] and r.lam_inv == 0.4
    restored = keep.on_load_recipe(stack, recipe_path)
    assert restored[3] == "layer_gradient" and restored[8] == "0.2, 0.8" and restored[9] == 0.4
    fig, md = mlm.on_mlm_ensemble(stack, "pt", "es", 0.5, TEXTS[0])
    assert len(fig.data) == 2 and "output ensemble" in md
    fig, md = sweep.on_ensemble_sweep(stack, "pt", "es", "topic")
    assert "95 % CI" in md
    assert build_demo(stack) is not None


def test_mlm_view_chooses_on_the_first_half_and_reports_the_second(stack, monkeypatch):
    """The masked-LM comparison against a direct computation from per-text losses."""
    import numpy as np

    texts = list(stack.bundle.language("pt").examples) * 2  # the tiny bundle ships no held-out text
    monkeypatch.setattr(results, "heldout_texts", lambda st, code: texts)
    grid = [(0.2, 0.8), (0.5, 0.5)]
    r = beyond.mlm_beyond(stack, "pt", "en", "es", grid)
    assert r["n_texts"] == len(texts) and len(texts) >= 2
    first, second = np.arange(0, len(texts), 2), np.arange(1, len(texts), 2)

    def loss(adapter, idx):
        s, c = tasks.mlm_token_losses(stack, [(texts, adapter)])[0]
        return s[idx].sum() / c[idx].sum()

    lams = list(tasks.MLM_LIVE_LAMBDAS)
    single = [("en" if x == 1 else "es" if x == 0 else {"en": x, "es": round(1 - x, 10)}) for x in lams]
    i = int(np.argmin([loss(w, first) + 1e-12 * abs(x - 0.5) for w, x in zip(single, lams)]))
    grads = [beyond.gradient_merge("en", "es", g) for g in grid]
    j = int(np.argmin([loss(g, first) + 1e-12 * sum(abs(t - 0.5) for t in a) for g, a in zip(grads, grid)]))
    assert r["best_lam"] == lams[i] and r["best_gradient"] == list(grid[j])
    want = loss(single[i], second) - loss(grads[j], second)  # positive: the gradient's loss is lower
    assert r["gradient_vs_single"]["points"] == pytest.approx(want, abs=1e-9)
    assert r["second_half"]["single_lam"] == pytest.approx(loss(single[i], second), abs=1e-9)
    lo, hi = r["ensemble_vs_merge"]["ci95"]
    assert lo <= hi
