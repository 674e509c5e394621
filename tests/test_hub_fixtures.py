"""The stand-ins match the Hub: every config field of each fixture against the verbatim Hub file
(``tests/hub_verbatim``), sizes aside, plus the Hub's file names and the library's reading."""

from __future__ import annotations

import json

import pytest

import hub_fixtures as hf
from langarith import profiles


def _snap_json(cache, repo, name):
    return json.loads((profiles.resolve_repo(repo, cache) / name).read_text())


def _diff(a: dict, b: dict, path="") -> dict:
    """Every leaf that differs between two nested dicts: ``{"config.x": (a, b)}``."""
    out = {}
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(x, dict) and isinstance(y, dict):
            out.update(_diff(x, y, f"{path}{k}."))
        elif x != y:
            out[f"{path}{k}"] = (x, y)
    return out


HOULSBY = hf.verbatim(hf.HOULSBY)
PFEIFFER = {"config.mh_adapter": (True, False), "config.original_ln_before": (False, True)}


def test_first_pattern_language_adapter_is_the_verbatim_file_made_pfeiffer(hub_cache):
    cfg = _snap_json(hub_cache, hf.MBERT_LANG.format("de"), "adapter_config.json")
    assert _diff(HOULSBY, cfg) == {**PFEIFFER, "name": ("en", "de")}
    assert cfg["version"] == "0.2.0" and cfg["model_class"] == "BertAdapterModel"
    assert cfg["config"]["non_linearity"] == "gelu_new" and cfg["config"]["dropout"] == 0.0


def test_second_pattern_adapter_and_head_match_the_verbatim_files(hub_cache):
    repo = hf.MBERT_LANG2.format("pt")
    assert _diff(HOULSBY, _snap_json(hub_cache, repo, "adapter_config.json")) == {**PFEIFFER, "name": ("en", "pt")}
    head = _snap_json(hub_cache, repo, "head_config.json")
    assert _diff(hf.verbatim(hf.MLM_HEAD), head) == {}
    am = _snap_json(hub_cache, hf.MBERT_LANG2.format("am"), "adapter_config.json")
    assert _diff(HOULSBY, am) == {**PFEIFFER, "name": ("en", "am"), "config.non_linearity": ("gelu_new", "relu"),
                                  "config.reduction_factor": (2, 16)}


def test_ner_task_adapter_matches_the_original_and_the_resaved_field_set(hub_cache):
    cfg = _snap_json(hub_cache, hf.NER, "adapter_config.json")
    # the 0.2.0 field set of the verbatim re-saved file...
    assert _diff(HOULSBY, cfg) == {**PFEIFFER, "name": ("en", "ner"), "config.leave_out": ([], [11]),
                                   "config.reduction_factor": (2, 16), "config.inv_adapter": ("nice", None),
                                   "config.inv_adapter_reduction_factor": (2, None)}
    # ...with every shared field of the original (ar twin) as it was, gelu renamed as adapters does
    orig = hf.verbatim(hf.NER_ORIGINAL)["config"]
    from adapters.utils import ACTIVATION_RENAME

    for k, v in orig.items():
        if k == "non_linearity":
            assert cfg["config"][k] == ACTIVATION_RENAME[v] == "gelu_new"
        elif k in cfg["config"]:
            assert cfg["config"][k] == v, k
    assert _diff(hf.verbatim(hf.NER_HEAD), _snap_json(hub_cache, hf.NER, "head_config.json")) == {}
    assert _snap_json(hub_cache, hf.NER, "head_config.json")["config"]["label2id"]["0"] == 0


def test_m2qa_adapters_are_reduction_2_saved_by_3_2_1(hub_cache):
    head = _snap_json(hub_cache, hf.M2QA_QA, "head_config.json")
    assert _diff(hf.verbatim(hf.QA_HEAD), head) == {}
    for repo in (hf.M2QA_DOMAIN, hf.M2QA_QA):
        cfg = _snap_json(hub_cache, repo, "adapter_config.json")
        assert cfg["version"] == "3.2.1" and cfg["model_class"] == "XLMRobertaAdapterModel"
        c = cfg["config"]
        assert (c["reduction_factor"], c["non_linearity"], c["inv_adapter"]) == (2, "relu", None)
        assert "dropout" not in c


@pytest.mark.parametrize("repo,files", [
    (hf.MBERT_LANG.format("de"), {"adapter_config.json", "pytorch_adapter.bin", "._adapter_config.json", ".DS_Store"}),
    (hf.MBERT_LANG2.format("pt"), {"adapter_config.json", "pytorch_adapter.bin", "head_config.json",
                                   "pytorch_model_head.bin"}),
    (hf.NER, {"adapter_config.json", "pytorch_adapter.bin", "head_config.json", "pytorch_model_head.bin"}),
])
def test_file_names_as_on_the_hub(hub_cache, repo, files):
    names = {f.name for f in profiles.resolve_repo(repo, hub_cache).iterdir()}
    assert files <= names and not any(n.endswith(".safetensors") for n in names)


def test_index_gives_both_patterns_one_config_id():
    a = hf.verbatim("hub-index__bert-base-multilingual-cased-de-wiki_pfeiffer.json")
    b = hf.verbatim("hub-index__bert-base-multilingual-cased_pt_wiki_pfeiffer.json")
    assert a["config_id"] == b["config_id"] and a["info"]["adapter_config"] == b["info"]["adapter_config"]


def test_catalogue_saved_config_agrees_with_the_verbatim_file():
    saved = profiles.catalogue()["profiles"]["mbert-ner"]["language_adapter"]["saved_config"]
    for k in ("non_linearity", "inv_adapter", "reduction_factor"):
        assert saved[k] == HOULSBY["config"][k], k
    assert (saved["version"], saved["model_class"]) == (HOULSBY["version"], HOULSBY["model_class"])
