"""Issue 13: typology beside the adapters' own similarity, and the typology-weighted merge.

URIEL values are checked against lang2vec's own arrays (``get_features``), computed here by hand;
the merge against a hand-written weighted sum; rankings and Spearman against direct computations
(scipy's ``spearmanr``, installed with scikit-learn, as an independent reference)."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from langarith import share, stats, typology
from langarith.arithmetic import METHODS, MergeError, typology_weights
from langarith.loading import InputError

ROOT = Path(__file__).resolve().parent.parent


ISOS = ("ces", "cat", "dan", "deu", "eng", "glg", "ita", "nld", "nob", "por", "rus", "slv", "spa",
        "swe")  # every language the tests below read from lang2vec


@functools.lru_cache(maxsize=None)
def l2v_features(name: str) -> dict:
    """lang2vec's own ``get_features`` (the reference; ``fam`` takes seconds: asked once)."""
    return typology._lang2vec().get_features(list(ISOS), name)


def l2v_vectors(isos, name):
    feats = l2v_features(name)
    return {c: np.array(feats[c], dtype=float) for c in isos}


@pytest.mark.parametrize("feature_set,pair", [("syntax", ("es", "pt")), ("syntax", ("de", "nl")),
                                              ("phonology", ("en", "de")), ("inventory", ("es", "it")),
                                              ("family", ("pt-br", "es")), ("family", ("de", "sv"))])
def test_cosine_similarity_matches_lang2vec_arrays(feature_set, pair):
    codes = ("en", "de", "nl", "es", "it", "pt", "pt-br", "nb", "sv")
    sim = typology.similarity(codes, feature_set)
    isos = {"en": "eng", "de": "deu", "nl": "nld", "es": "spa", "it": "ita", "pt": "por",
            "pt-br": "por", "nb": "nob", "sv": "swe"}
    vec = l2v_vectors(sorted(set(isos.values())), typology.FEATURE_SETS[feature_set][0])
    a, b = (vec[isos[c]] for c in pair)
    expected = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    i, j = (sim["languages"].index(c) for c in pair)
    assert sim["matrix"][i][j] == pytest.approx(expected, abs=1e-12)
    assert sim["matrix"][j][i] == pytest.approx(expected, abs=1e-12)
    assert sim["measure"] == "cosine" and sim["vectors"].endswith(("_knn", "fam"))


def test_geography_is_one_minus_mean_absolute_difference():
    sim = typology.similarity(("es", "pt", "ru"), "geography")
    v = l2v_vectors(["spa", "por", "rus"], "geo")
    assert sim["matrix"][0][1] == pytest.approx(1 - np.abs(v["spa"] - v["por"]).mean(), abs=1e-12)
    assert sim["matrix"][0][1] > sim["matrix"][0][2]  # Madrid is nearer Lisbon than Moscow


def test_knn_vectors_are_complete_and_pt_br_shares_portuguese():
    sim = typology.similarity(("pt", "pt-br", "es"), "syntax")
    assert sim["iso"] == {"pt": "por", "pt-br": "por", "es": "spa"}
    assert sim["matrix"][0][1] == pytest.approx(1.0)
    assert "pt-br" in sim["notes"]
    assert not np.isnan(typology.uriel_vectors(("por", "spa"), "syntax")).any()


def test_code_table_maps_ours_to_uriel():
    assert typology.uriel_code("nb") == "nob"
    assert typology.uriel_code("nn") == "nor"  # URIEL lacks nno
    assert typology.uriel_code("zh_yue") == "yue"
    assert typology.uriel_code("zh") == "cmn"
    assert typology.uriel_code("de") == "deu"


def test_a_language_without_data_in_a_feature_set_is_missing_not_unrelated():
    sim = typology.similarity(("nb", "sv", "de"), "family")  # URIEL's fam row of nob is all zeros
    assert sim["languages"] == ["sv", "de"] and "no fam data for 'nb'" in sim["missing"]["nb"]
    assert "nb" in typology.similarity(("nb", "sv"), "syntax")["languages"]


def test_unknown_codes_give_a_clear_message():
    with pytest.raises(InputError, match=r"URIEL .* no entry for 'xx'"):
        typology.uriel_code("xx")
    sim = typology.similarity(("en", "xx", "de"), "syntax")
    assert sim["languages"] == ["en", "de"] and "no entry for 'xx'" in sim["missing"]["xx"]
    with pytest.raises(InputError, match="unknown typology feature set 'morphology'"):
        typology.similarity(("en", "de"), "morphology")


def test_typology_weights_are_a_softmax_over_the_top_k():
    sims = {"es": 0.9, "it": 0.7, "fr": 0.8, "de": 0.1}
    w = typology_weights(sims, 2, 0.1)
    z = math.exp(0.9 / 0.1) + math.exp(0.8 / 0.1)
    assert list(w) == ["es", "fr"]
    assert w["es"] == pytest.approx(math.exp(9) / z) and w["fr"] == pytest.approx(math.exp(8) / z)
    assert typology_weights(sims, 1, 5.0) == {"es": 1.0}
    assert sum(typology_weights(sims, 4, 1e-3).values()) == pytest.approx(1.0)  # no overflow
    for bad_k, bad_t in ((0, 0.1), (5, 0.1), (2, 0.0), (2, float("nan")), (True, 0.1)):
        with pytest.raises(MergeError):
            typology_weights(sims, bad_k, bad_t)


def test_registry_entry_is_the_hand_computed_weighted_sum():
    g = torch.Generator().manual_seed(0)
    sds = [{"x": torch.randn(3, 4, generator=g), "y": torch.randn(5, generator=g)} for _ in range(3)]
    w = typology_weights({"a": 0.5, "b": 0.3, "c": 0.2}, 3, 0.2)
    merged = METHODS["typology"].function(None, sds, list(w.values()))
    for key in ("x", "y"):
        hand = w["a"] * sds[0][key] + w["b"] * sds[1][key] + w["c"] * sds[2][key]
        assert torch.allclose(merged[key], hand, atol=1e-6)


def test_typology_merge_on_the_stack_weights_by_uriel(stack):
    # tiny bundle: adapters en, es, de; pt and nl are zero-shot targets
    recipe = share.Recipe(target="pt", method="typology", k=2, temperature=0.1, typology="family")
    merge = recipe.merge(stack)
    vec = l2v_vectors(["por", "eng", "spa", "deu"], "fam")
    cos = {c: float(vec["por"] @ vec[i] / np.linalg.norm(vec["por"]) / np.linalg.norm(vec[i]))
           for c, i in (("en", "eng"), ("es", "spa"), ("de", "deu"))}
    top = sorted(cos, key=lambda c: -cos[c])[:2]
    z = sum(math.exp(cos[c] / 0.1) for c in top)
    assert merge.method == "typology" and [c for c, _ in merge.weights] == top
    for c, w in merge.weights:
        assert w == pytest.approx(math.exp(cos[c] / 0.1) / z)
    got = stack.compute(merge)
    hand = {key: sum(w * stack.language_state_dict(c)[key] for c, w in merge.weights) for key in got}
    assert all(torch.allclose(got[k], hand[k], atol=1e-6) for k in got)
    with stack.use(merge):  # the live slot holds the same tensors
        slot = stack.merged_state_dict()
    assert all(torch.allclose(slot[k], hand[k], atol=1e-6) for k in got)
    back = share.Recipe.from_json(recipe.to_json())
    assert (back.k, back.temperature, back.typology) == (2, 0.1, "family")


def test_recipe_refuses_bad_typology_fields():
    for bad in ({"k": 7}, {"k": 1.5}, {"temperature": -1}, {"temperature": "hot"}, {"typology": 3}):
        with pytest.raises(InputError):
            share.Recipe.from_dict({"target": "pt", "method": "typology", **bad})


def test_rankings_and_spearman_against_direct_computation(stack):
    ranking = typology.rank_sources(stack, "pt", "syntax")
    row = typology.target_row(stack, "pt", "syntax")
    # zero-shot pt: candidates are the adapters except baseline A = en
    assert [r["language"] for r in ranking] == sorted(["es", "de"], key=lambda c: -row[c])
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = rng.integers(0, 4, 7).astype(float), rng.normal(size=7)  # with ties
        assert stats.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    rankings = {"p": [{"language": c, "score": s} for c, s in (("a", 3), ("b", 2), ("c", 1))],
                "q": [{"language": c, "score": s} for c, s in (("c", 9), ("b", 5), ("a", 1), ("z", 0))]}
    assert typology.agreement(rankings) == [{"a": "p", "b": "q", "n": 3, "spearman": pytest.approx(-1.0)}]


def test_agreement_includes_the_adapters_own_signal(stack):
    from langarith import analysis

    own = analysis.rank_sources(stack, "de")  # de has an adapter: language-vector cosine
    rankings = typology.all_rankings(stack, "de", own)
    assert "cosine" in rankings and "typology: family" in rankings
    pairs = {(a["a"], a["b"]): a for a in typology.agreement(rankings)}
    fam, cos = rankings["typology: family"], rankings["cosine"]
    sf = {r["language"]: r["score"] for r in fam}
    sc = {r["language"]: r["score"] for r in cos}
    common = [c for c in sf if c in sc]
    assert pairs[("typology: family", "cosine")]["spearman"] == pytest.approx(
        stats.spearman([sf[c] for c in common], [sc[c] for c in common]), nan_ok=True)


def test_weights_text_fills_the_nway_panel_and_sums_to_one():
    text = typology.weights_text({"es": 0.6667, "fr": 0.2222, "it": 0.1111})
    from langarith.page.common import parse_weights

    w = parse_weights(text)
    assert list(w) == ["es", "fr", "it"] and sum(w.values()) == pytest.approx(1.0, abs=1e-9)


def test_similarity_json_has_typology_keys(tiny_bundle):
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "langarith", "similarity", "--bundle", str(tiny_bundle),
                          "--target", "pt", "--json"], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    typ = data["typology"]
    assert set(typology.FEATURE_SETS) <= set(typ) and "agreement" in typ
    fam = typ["family"]
    assert set(fam["row"]) == {"en", "es", "de", "nl"}  # every other language URIEL has
    assert [r["language"] for r in fam["ranking"]] == sorted(["es", "de"], key=lambda c: -fam["row"][c])
    assert fam["vectors"] == "fam" and fam["measure"] == "cosine"


def test_export_typology_from_the_command_line(tiny_bundle, tmp_path):
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "langarith", "export", "--bundle", str(tiny_bundle),
                          "--target", "pt", "--method", "typology", "--k", "2", "--temperature", "0.5",
                          "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["method"] == "typology" and len(info["weights"]) == 2
    assert info["formula"].startswith("merged = TYPOLOGY(")
    recipe = json.loads((tmp_path / "x" / "recipe.json").read_text())
    assert recipe["k"] == 2 and recipe["temperature"] == 0.5 and recipe["method"] == "typology"


def test_page_handlers_without_a_page(stack):
    from langarith.page import build_demo, method, similarity
    from langarith.page.common import parse_weights

    fig, notes = similarity.typology_heatmap(stack, "family")
    assert list(fig.data[0].x) == ["en", "es", "de", "pt", "nl"]
    md = similarity.typology_ranks(stack, "pt", progress=lambda *a, **k: None)
    assert "typology: family" in md and "-MLM loss" in md and "Spearman" in md
    text, method, note = method.fill_weights(stack, "pt", "family", 2, 0.1)
    expected = typology.merge_weights(stack, "pt", "family", 2, 0.1)
    assert method == "nway" and parse_weights(text) == pytest.approx(expected, abs=1e-3)
    assert "TYPOLOGY" not in note and "merged = " in note
    demo = build_demo(stack)  # the page builds with both panels bound
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"typology-plot", "typology-fill", "typology-k", "typology-t"} <= ids


def test_our_uriel_reader_equals_lang2vec():
    """``typology`` reads lang2vec's files itself (importing lang2vec takes seconds): the same
    language set, letter codes and vectors, with NaN where lang2vec writes "--"."""
    l2v = typology._lang2vec()
    assert typology.uriel_languages() == set(l2v.URIEL_LANGUAGES)
    assert typology.letter_codes() == l2v.LETTER_CODES
    for name, entry in typology.URIEL_FILES.items():
        assert l2v.FEATURE_SETS_DICT[name] == entry
    for fs, (name, _) in typology.FEATURE_SETS.items():
        feats = l2v_features(name)
        want = np.array([[np.nan if x == "--" else float(x) for x in feats[c]] for c in ISOS])
        got = typology.uriel_vectors(ISOS, fs)
        assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True), fs
