"""λ sweeps, language similarity, merge methods (TIES, DARE, task arithmetic), recipes and export.

Every merge method is checked against an independent computation written here by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from langarith import analysis, share, tasks
from langarith.arithmetic import (METHODS, MergeError, dare_merge, interpolate, ties_merge)
from langarith.loading import InputError
from langarith.model import Merge

REPO = Path(__file__).resolve().parent.parent


def rand_sd(seed: int, shapes=((6, 5), (7,), (3, 4))) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"t{i}": torch.randn(s, generator=g) for i, s in enumerate(shapes)}


# --- merge methods, numerically -------------------------------------------------------------------


def hand_ties(init, adapters, weights, density):
    """TIES by the paper's three steps, written independently of peft."""
    out = {}
    for k in init:
        taus = []
        for sd in adapters:
            tau = (sd[k] - init[k]).flatten()
            n_keep = int(density * tau.numel())
            keep = torch.zeros_like(tau, dtype=torch.bool)
            if n_keep > 0:
                keep[tau.abs().argsort(descending=True)[:n_keep]] = True
            taus.append(torch.where(keep, tau, torch.zeros_like(tau)))
        t = torch.stack(taus)
        sign = torch.where(t.sum(0) >= 0, 1.0, -1.0)
        weighted = t * torch.tensor(weights)[:, None]
        agree = (torch.sign(t) == sign) & (t != 0)
        num = (weighted * agree).sum(0)
        den = agree.sum(0).clamp_min(1)
        out[k] = init[k] + (num / den).view_as(init[k])
    return out


@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_ties_matches_hand_computation(density):
    init, a, b, c = rand_sd(0), rand_sd(1), rand_sd(2), rand_sd(3)
    got = ties_merge(init, [a, b, c], [0.5, 0.3, 0.2], density)
    want = hand_ties(init, [a, b, c], [0.5, 0.3, 0.2], density)
    for k in init:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_dare_is_seeded_rescaled_and_exact_at_density_one():
    init, a, b = rand_sd(0, ((200, 50),)), rand_sd(1, ((200, 50),)), rand_sd(2, ((200, 50),))
    m1 = dare_merge(init, [a, b], [0.6, 0.4], density=0.3, seed=7)
    m2 = dare_merge(init, [a, b], [0.6, 0.4], density=0.3, seed=7)
    m3 = dare_merge(init, [a, b], [0.6, 0.4], density=0.3, seed=8)
    assert torch.equal(m1["t0"], m2["t0"]) and not torch.equal(m1["t0"], m3["t0"])
    # independent: regenerate the same masks and apply the definition
    gen = torch.Generator().manual_seed(7)
    want = init["t0"].clone()
    for w, sd in ((0.6, a), (0.4, b)):
        keep = torch.rand(init["t0"].shape, generator=gen) < 0.3
        want += w * (sd["t0"] - init["t0"]) * keep / 0.3
    torch.testing.assert_close(m1["t0"], want)
    lin = init["t0"] + 0.6 * (a["t0"] - init["t0"]) + 0.4 * (b["t0"] - init["t0"])
    full = dare_merge(init, [a, b], [0.6, 0.4], density=1.0)
    torch.testing.assert_close(full["t0"], lin)


def test_task_arithmetic_extrapolates_and_linear_refuses():
    init, a, b = rand_sd(0), rand_sd(1), rand_sd(2)
    got = METHODS["task_arithmetic"].function(init, [a, b], [1.5, -0.2])
    for k in init:
        torch.testing.assert_close(got[k], init[k] + 1.5 * (a[k] - init[k]) - 0.2 * (b[k] - init[k]))
    with pytest.raises(MergeError, match="extrapolation is off"):
        METHODS["linear"].function(init, [a, b], [1.5, -0.5])


@pytest.mark.parametrize("density", [0.0, -1, 1.5, float("nan")])
def test_bad_density_is_refused(density):
    init, a, b = rand_sd(0), rand_sd(1), rand_sd(2)
    for fn in (ties_merge, dare_merge):
        with pytest.raises(MergeError, match="density"):
            fn(init, [a, b], [0.5, 0.5], density)


@pytest.mark.parametrize("method,params", [("ties", {"density": 0.4}), ("dare", {"density": 0.5, "seed": 3}),
                                           ("task_arithmetic", {})])
def test_live_slot_holds_the_method_merge(stack, method, params):
    merge = Merge.of({"en": 0.7, "es": 0.5} if method == "task_arithmetic" else {"en": 0.6, "es": 0.4},
                     method, **params, allow_extrapolation=method == "task_arithmetic")
    init = stack.init
    a, b = stack.language_state_dict("en"), stack.language_state_dict("es")
    w = [x for _, x in merge.weights]
    if method == "ties":
        want = hand_ties(init, [a, b], w, 0.4)
    elif method == "dare":
        want = dare_merge(init, [a, b], w, 0.5, seed=3)
    else:
        want = {k: init[k] + 0.7 * (a[k] - init[k]) + 0.5 * (b[k] - init[k]) for k in init}
    ptr = stack.slot.flat.data_ptr()
    with stack.use(merge, "topic"):
        got = stack.merged_state_dict()
    assert stack.slot.flat.data_ptr() == ptr  # written in place
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_compare_with_a_method_recipe(stack):
    text = stack.bundle.language("pt").examples[0]
    merge = Merge.of({"en": 0.5, "es": 0.5}, "ties", density=0.3)
    cmp = tasks.compare(stack, text, "pt", "es", 0.5, "topic", merge=merge)
    assert cmp.formula.startswith("merged = TIES(")
    direct = tasks.classify(stack, [text], merge, "topic")[0].tolist()
    assert cmp.probs["merged"] == pytest.approx(direct, abs=1e-6)
    linear = tasks.compare(stack, text, "pt", "es", 0.5, "topic")
    assert cmp.probs["merged"] != pytest.approx(linear.probs["merged"], abs=1e-4)


# --- sweep -------------------------------------------------------------------------------------------


def test_sweep_points_match_direct_evaluation(stack):
    s = tasks.sweep(stack, "pt", "es", lambdas=(0.0, 0.5, 1.0))
    assert [p["lam"] for p in s["points"]] == [0.0, 0.5, 1.0]
    dev = tasks.load_eval(stack, "pt", "topic", "dev")
    for p in s["points"]:
        want = tasks.evaluate(stack, dev, {"en": p["lam"], "es": 1 - p["lam"]}, "topic")
        assert p["dev"]["accuracy"] == pytest.approx(want["accuracy"])
    assert s["baselines"]["A"]["test"] == s["points"][-1]["test"]
    assert s["baselines"]["B"]["language"] == "es"
    best = max(p["dev"]["accuracy"] for p in s["points"])
    assert [p for p in s["points"] if p["lam"] == s["best_lam"]][0]["dev"]["accuracy"] == best


def test_sweep_reports_progress_and_refuses_bad_grids(stack):
    seen = []
    tasks.sweep(stack, "nl", None, lambdas=(0.0, 0.25, 1.0), progress=lambda i, n, m: seen.append((i, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(MergeError):
        tasks.sweep(stack, "pt", "es", lambdas=(0.0, float("nan")))
    with pytest.raises(InputError, match="empty"):
        tasks.sweep(stack, "pt", "es", lambdas=())


def test_cli_sweep_json(tiny_bundle):
    r = subprocess.run([sys.executable, "-m", "langarith", "sweep", "--bundle", str(tiny_bundle),
                        "--target", "pt", "--points", "3", "--json"], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"target", "source", "points", "baselines", "best_lam"}
    assert out["source"] == "es" and [p["lam"] for p in out["points"]] == [0.0, 0.5, 1.0]
    assert {"lam", "dev", "test"} <= set(out["points"][0])


# --- similarity --------------------------------------------------------------------------------------


def test_similarity_matches_direct_cosine(stack):
    sim = analysis.similarity(stack)
    codes = sim["languages"]
    assert sim["relative_to_init"] and codes == stack.bundle.adapter_languages()

    def vec(c):
        sd = stack.language_state_dict(c)
        return torch.cat([(sd[k] - stack.init[k]).flatten().double() for k in sorted(sd)])

    i, j = codes.index("en"), codes.index("es")
    want = float(torch.nn.functional.cosine_similarity(vec("en"), vec("es"), dim=0))
    assert sim["overall"][i][j] == pytest.approx(want, abs=1e-9)
    assert sim["overall"][i][i] == pytest.approx(1.0)
    assert "inv" in sim["per_row"] and "L0" in sim["per_row"]


def test_rank_sources(stack):
    ranked = analysis.rank_sources(stack, "es")  # has an adapter: cosine of language vectors
    assert {r["language"] for r in ranked} == {"en", "de"} and ranked[0]["measure"] == "cosine"
    assert ranked[0]["score"] >= ranked[1]["score"]
    zs = analysis.rank_sources(stack, "pt")  # zero-shot: MLM loss on the target's examples
    assert zs[0]["measure"] == "-MLM loss" and "en" not in {r["language"] for r in zs}


# --- recipes, export, links ----------------------------------------------------------------------------


def test_recipe_round_trip_and_export_loads_in_adapters(stack, tmp_path, fresh_model):
    r = share.Recipe(target="pt", source="es", lam=0.3, method="ties", density=0.5)
    assert share.Recipe.from_json(r.to_json()) == r
    info = share.export(stack, r, tmp_path / "out")
    assert Path(info["zip"]).is_file() and json.loads(Path(info["recipe"]).read_text())["method"] == "ties"
    unzipped = tmp_path / "unzipped"
    zipfile.ZipFile(info["zip"]).extractall(unzipped)
    model = fresh_model(task=True)
    model.load_adapter(str(unzipped), load_as="x", set_active=False, use_safetensors=True)
    from adapters.composition import Stack

    model.set_active_adapters(Stack("x", "topic"))
    text = stack.bundle.language("pt").examples[0]
    enc = stack.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        got = model(**enc, head="topic").logits.softmax(-1)[0]
    want = tasks.classify(stack, [text], r.merge(stack), "topic")[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("text,msg", [
    ("not json", "not valid JSON"),
    ('{"target": "pt"}', "not a langarith recipe"),
    ('{"langarith_recipe": 1, "target": "pt", "evil": 1}', "unknown recipe field"),
    ('{"langarith_recipe": 1, "target": "pt", "lam": "x"}', "finite number"),
    ('{"langarith_recipe": 1, "target": 3}', "target"),
    ('{"langarith_recipe": 1, "target": "pt", "density": 7}', "density"),
])
def test_malformed_recipes_are_refused(text, msg):
    with pytest.raises(InputError, match=msg):
        share.Recipe.from_json(text)


def test_recipe_merge_validates_against_the_bundle(stack):
    with pytest.raises(InputError, match="unknown language"):
        share.Recipe(target="xx").merge(stack)
    with pytest.raises(MergeError, match="unknown merge method"):
        share.Recipe(target="pt", method="magic").merge(stack)
    with pytest.raises(InputError, match="at most 4"):
        share.Recipe(target="pt", weights={c: 0.2 for c in ("en", "es", "de", "pt", "nl")}).merge(stack)
    m = share.Recipe(target="pt", weights={"en": 0.5, "es": 0.3, "de": 0.2}).merge(stack)
    assert dict(m.weights) == {"en": 0.5, "es": 0.3, "de": 0.2}


def test_links():
    r = share.from_query({"target": "pt", "source": "es", "lam": "0.7"})
    assert (r.target, r.source, r.lam) == ("pt", "es", 0.7)
    assert share.to_query(r) == "?target=pt&lam=0.7&source=es"
    for bad in ({"lam": "0.5"}, {"target": "pt", "lam": "abc"}, {"target": "pt", "lam": "nan"},
                {"target": "pt", "lam": "3"}):
        with pytest.raises((InputError, MergeError)):
            share.from_query(bad)


def test_geometry_of_a_linear_merge_is_linear_in_lambda(stack):
    """‖M − A‖ = (1 − λ)‖B − A‖: the plotted distance to A falls linearly (why the page also
    shows hidden states)."""
    rows = {lam: analysis.weight_geometry(stack, "en", "es", lam) for lam in (0.0, 0.5)}
    for r0, r5 in zip(rows[0.0], rows[0.5]):
        assert r5["dist_to_A"] == pytest.approx(0.5 * r0["dist_to_A"], rel=1e-6)
    a, b = stack.language_state_dict("en"), stack.language_state_dict("es")
    m = interpolate(a, b, 0.5)
    k = next(k for k in a if "invertible" in k)
    assert torch.allclose(m[k], 0.5 * a[k] + 0.5 * b[k])


@pytest.mark.parametrize("lam", [0.0, 0.35, 1.0, 1.4])
def test_linear_geometry_from_pair_statistics_equals_the_direct_one(lam):
    from langarith.arithmetic import linear_merge_geometry, merge_geometry, pair_statistics

    a, b = rand_sd(1), rand_sd(2)
    fast = linear_merge_geometry(pair_statistics(a, b), lam)
    slow = merge_geometry(a, b, {k: lam * a[k] + (1 - lam) * b[k] for k in a})
    for f, s_ in zip(sorted(fast, key=str), sorted(slow, key=str)):
        for key in ("dist_to_A", "dist_to_B", "cos_AB"):
            assert f[key] == pytest.approx(s_[key], rel=1e-6, abs=1e-9)  # fp32 merged tensor


def test_fill_mask_logits_at_the_mask_equal_the_library_head(stack):
    """tasks.masked_logits applies the head by hand (mask position only): same as adapters' head."""
    text = "insert a <mask> into the cell"
    enc = stack.tokenizer([text], return_tensors="pt")
    pos = (enc["input_ids"][0] == stack.tokenizer.mask_token_id).nonzero()[0, 0]
    with stack.use({"en": 0.4, "es": 0.6}) as model, torch.no_grad():
        fast = tasks.masked_logits(model, dict(enc), torch.tensor([[0, int(pos)]]))[0]
        full = model(**enc, head="mlm").logits[0, pos]
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)


def test_cli_similarity_with_and_without_target(tiny_bundle):
    for extra, key in (([], "overall"), (["--target", "es"], "suggested")):
        r = subprocess.run([sys.executable, "-m", "langarith", "similarity", "--bundle", str(tiny_bundle),
                            *extra], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert key in out and out["languages"] == ["en", "es", "de"]
