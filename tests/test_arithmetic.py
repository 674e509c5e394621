"""Layer 1: the pure tensor functions, checked against independent hand-written computations."""

from __future__ import annotations

import math

import pytest
import torch

from langarith.arithmetic import (MergeError, add_language_vectors, check_compatible, check_lambda,
                                  check_weights, interpolate, language_vector, merge_geometry,
                                  pair_weights, parameter_group, weighted_sum)

KEYS = {
    "bert.encoder.layer.0.output.adapters.adapter_down.0.weight": (8, 16),
    "bert.encoder.layer.0.output.adapters.adapter_down.0.bias": (8,),
    "bert.encoder.layer.0.output.adapters.adapter_up.weight": (16, 8),
    "bert.encoder.layer.1.output.adapters.adapter_up.bias": (16,),
    "bert.invertible_adapters.F.0.weight": (4, 8),
    "bert.invertible_adapters.G.2.bias": (8,),
}


def rand_sd(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, shape in KEYS.items()}


@pytest.fixture
def sds():
    return rand_sd(1), rand_sd(2), rand_sd(3), rand_sd(4)  # A, B, C, init


def by_hand(terms, key):
    """Σ w·θ[key] element by element in float64, with no torch arithmetic on whole tensors."""
    shape = terms[0][1][key].shape
    flat = [[float(x) for x in sd[key].flatten().tolist()] for _, sd in terms]
    out = [sum(w * vals[i] for (w, _), vals in zip(terms, flat)) for i in range(len(flat[0]))]
    return torch.tensor(out, dtype=torch.float64).reshape(shape)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.7, 1.0])
def test_interpolate_matches_hand_computation(sds, lam):
    a, b, _, _ = sds
    m = interpolate(a, b, lam)
    assert set(m) == set(a)
    for k in a:
        assert m[k].shape == a[k].shape and m[k].dtype == a[k].dtype
        torch.testing.assert_close(m[k].double(), by_hand([(lam, a), (1 - lam, b)], k),
                                   rtol=0, atol=1e-6)


def test_interpolate_endpoints_are_exact(sds):
    a, b, _, _ = sds
    m1, m0 = interpolate(a, b, 1.0), interpolate(a, b, 0.0)
    for k in a:
        assert torch.equal(m1[k], a[k]), k
        assert torch.equal(m0[k], b[k]), k
    # and the midpoint is neither
    mid = interpolate(a, b, 0.5)
    assert not torch.equal(mid[next(iter(a))], a[next(iter(a))])


def test_interpolate_does_not_modify_inputs(sds):
    a, b, _, _ = sds
    a0, b0 = {k: v.clone() for k, v in a.items()}, {k: v.clone() for k, v in b.items()}
    interpolate(a, b, 0.3)
    assert all(torch.equal(a[k], a0[k]) and torch.equal(b[k], b0[k]) for k in a)


def test_weighted_sum_matches_hand_computation(sds):
    a, b, c, _ = sds
    ws = [0.2, 0.5, 0.3]
    m = weighted_sum([a, b, c], ws)
    for k in a:
        torch.testing.assert_close(m[k].double(), by_hand([(0.2, a), (0.5, b), (0.3, c)], k),
                                   rtol=0, atol=1e-6)
    # the two-adapter case is the paper's interpolation
    two = weighted_sum([a, b], [0.4, 0.6])
    interp = interpolate(a, b, 0.4)
    for k in a:
        torch.testing.assert_close(two[k], interp[k], rtol=0, atol=1e-6)


def test_weighted_sum_refuses_bad_weights(sds):
    a, b, c, _ = sds
    with pytest.raises(MergeError, match="sum to 1"):
        weighted_sum([a, b], [0.5, 0.6])
    with pytest.raises(MergeError, match=r"\[0, 1\]"):
        weighted_sum([a, b], [1.5, -0.5])
    with pytest.raises(MergeError, match="2 adapters but 3 weights"):
        weighted_sum([a, b], [0.2, 0.3, 0.5])
    with pytest.raises(MergeError, match="finite"):
        weighted_sum([a, b], [float("nan"), 0.5])
    # extrapolation lifts the range and sum checks
    m = weighted_sum([a, b], [1.5, -0.25], allow_extrapolation=True)
    k = next(iter(a))
    torch.testing.assert_close(m[k].double(), by_hand([(1.5, a), (-0.25, b)], k), rtol=0, atol=1e-5)


def test_language_vector_matches_hand_computation(sds):
    a, _, _, init = sds
    tau = language_vector(a, init)
    for k in a:
        torch.testing.assert_close(tau[k].double(), by_hand([(1.0, a), (-1.0, init)], k),
                                   rtol=0, atol=1e-6)


def test_add_language_vectors_matches_hand_computation(sds):
    a, b, _, init = sds
    # init + 0.6·(A − init) + 0.3·(B − init) = 0.1·init + 0.6·A + 0.3·B
    m = add_language_vectors(init, [a, b], [0.6, 0.3], allow_extrapolation=True)
    for k in a:
        torch.testing.assert_close(m[k].double(), by_hand([(0.1, init), (0.6, a), (0.3, b)], k),
                                   rtol=0, atol=1e-5)
    # with weights summing to 1 the task-vector form equals the plain weighted sum
    tv, ws = add_language_vectors(init, [a, b], [0.3, 0.7]), weighted_sum([a, b], [0.3, 0.7])
    for k in a:
        torch.testing.assert_close(tv[k], ws[k], rtol=0, atol=1e-5)
    with pytest.raises(MergeError, match="sum to 1"):
        add_language_vectors(init, [a, b], [0.6, 0.3])


@pytest.mark.parametrize("lam", [0, 1, 0.5, "0.25", 1e-9])
def test_check_lambda_accepts(lam):
    assert check_lambda(lam) == float(lam)


@pytest.mark.parametrize("lam,msg", [
    (float("nan"), "finite"), (float("inf"), "finite"), (float("-inf"), "finite"),
    ("nan", "finite"), (1.0001, r"\[0, 1\]"), (-0.01, r"\[0, 1\]"), (2, r"\[0, 1\]"),
    ("abc", "must be a number"), ("", "must be a number"), (None, "must be a number"),
    ([0.5], "must be a number"),
])
def test_check_lambda_refuses(lam, msg):
    with pytest.raises(MergeError, match=msg):
        check_lambda(lam)


def test_check_lambda_extrapolation():
    assert check_lambda(1.5, allow_extrapolation=True) == 1.5
    assert check_lambda(-0.5, allow_extrapolation=True) == -0.5
    for bad in (float("nan"), float("inf"), 11):
        with pytest.raises(MergeError):
            check_lambda(bad, allow_extrapolation=True)


def test_pair_weights_spell_one_minus_lambda_one_way():
    # 1 - 0.3 is 0.7000000000000001 in floats; the memo keys a merge by its value, so the pair's
    # weights must come out identical however λ was reached (a slider's 0.3, a sweep's 0.1 * 3).
    assert pair_weights("en", "de", 0.3) == {"en": 0.3, "de": 0.7}
    assert repr(pair_weights("en", "de", 0.3)) == repr(pair_weights("en", "de", 0.3))
    assert pair_weights("en", "de", 0.1 * 3)["de"] == pair_weights("en", "de", 0.3)["de"]
    assert list(pair_weights("en", "de", 1.0)) == ["en", "de"]  # A first: the formula reads λ·A + …
    assert pair_weights("en", "de", 1.5)["de"] == -0.5  # extrapolation is checked by the caller
    with pytest.raises(MergeError, match="twice"):
        pair_weights("en", "en", 0.5)


def test_check_weights():
    assert check_weights([0.25, 0.75]) == [0.25, 0.75]
    with pytest.raises(MergeError, match="at least one"):
        check_weights([])


def test_check_compatible_names_the_tensor_on_shape_mismatch(sds):
    a, b, _, _ = sds
    key = "bert.encoder.layer.0.output.adapters.adapter_up.weight"
    b = dict(b)
    b[key] = torch.zeros(16, 9)
    with pytest.raises(MergeError) as e:
        check_compatible(a, b, names=["en", "es"])
    assert key in str(e.value) and "(16, 8)" in str(e.value) and "(16, 9)" in str(e.value)
    assert "en" in str(e.value) and "es" in str(e.value)
    with pytest.raises(MergeError, match="adapter_up.weight"):
        interpolate(a, b, 0.5)


def test_check_compatible_names_the_tensor_on_key_mismatch(sds):
    a, b, _, _ = sds
    key = "bert.invertible_adapters.F.0.weight"
    missing = {k: v for k, v in b.items() if k != key}
    with pytest.raises(MergeError) as e:
        check_compatible(a, missing, names=["en", "es"])
    assert key in str(e.value) and "missing from es" in str(e.value)
    extra = dict(b)
    extra["bert.extra.weight"] = torch.zeros(2)
    with pytest.raises(MergeError, match=r"bert\.extra\.weight.*missing from en"):
        check_compatible(a, extra, names=["en", "es"])
    check_compatible(a, b)  # compatible: no error


def test_parameter_group():
    assert parameter_group("bert.encoder.layer.11.output.adapters.adapter_down.0.weight") == ("L11", "down")
    assert parameter_group("bert.encoder.layer.0.output.adapters.adapter_up.bias") == ("L0", "up")
    assert parameter_group("bert.invertible_adapters.F.0.weight") == ("inv", "F")
    assert parameter_group("bert.invertible_adapters.G.2.bias") == ("inv", "G")


def test_merge_geometry_matches_direct_computation(sds):
    a, b, _, _ = sds
    lam = 0.3
    m = interpolate(a, b, lam)
    rows = {(r["row"], r["part"]): r for r in merge_geometry(a, b, m)}
    groups = {}
    for k in a:
        groups.setdefault(parameter_group(k), []).append(k)
    assert set(rows) == set(groups) == {("L0", "down"), ("L0", "up"), ("L1", "up"), ("inv", "F"),
                                        ("inv", "G")}
    for g, keys in groups.items():
        A = torch.cat([a[k].flatten() for k in keys]).double()
        B = torch.cat([b[k].flatten() for k in keys]).double()
        M = torch.cat([m[k].flatten() for k in keys]).double()
        r = rows[g]
        assert r["dist_to_A"] == pytest.approx(float((M - A).norm() / A.norm()), rel=1e-6)
        assert r["dist_to_B"] == pytest.approx(float((M - B).norm() / B.norm()), rel=1e-6)
        cos = float(torch.nn.functional.cosine_similarity(A, B, dim=0))
        assert r["cos_AB"] == pytest.approx(cos, rel=1e-6, abs=1e-9)
        # for a linear interpolation ‖M−A‖ = (1−λ)‖A−B‖ and ‖M−B‖ = λ‖A−B‖
        d = float((A - B).norm())
        assert r["dist_to_A"] * float(A.norm()) == pytest.approx((1 - lam) * d, rel=1e-5)
        assert r["dist_to_B"] * float(B.norm()) == pytest.approx(lam * d, rel=1e-5)


def test_merge_geometry_zero_norm_gives_nan(sds):
    a, b, _, _ = sds
    zeros = {k: torch.zeros_like(v) for k, v in a.items()}
    rows = merge_geometry(zeros, b, b)
    assert all(math.isnan(r["dist_to_A"]) and math.isnan(r["cos_AB"]) for r in rows)
    assert all(r["dist_to_B"] == 0 for r in rows)
