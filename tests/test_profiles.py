"""Hub profiles, loaded offline from tiny stand-ins of the real Hub repositories.

The stand-ins sit in a Hugging Face cache under their *real* repo ids (``tests/hub_fixtures.py``),
so ``load_profile`` goes through ``snapshot_download`` with ``HF_HUB_OFFLINE=1`` exactly as it
would with the real cache on a GPU machine.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from langarith import profiles
from langarith.arithmetic import MergeError
from langarith.loading import Bundle, BundleError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mbert(hub_cache):
    from langarith.model import LanguageStack

    return LanguageStack(profiles.load_profile("mbert-ner", cache_dir=hub_cache), device="cpu")


# --- catalogue and listing ---------------------------------------------------------------------


def test_catalogue_lists_three_profiles_and_hub_ids_live_only_there():
    rows = {r["name"]: r for r in profiles.list_profiles()}
    assert set(rows) >= {"embedded", "mbert-ner", "xlmr"}
    assert rows["embedded"]["default"] and rows["embedded"]["kind"] == "bundle"
    assert rows["mbert-ner"]["load_options"] == {"leave_out": [11]}
    assert "ner" in rows["mbert-ner"]["tasks"] and "qa" in rows["xlmr"]["tasks"]
    for r in ("mbert-ner", "xlmr"):
        assert {"en", "de"} <= set(rows[r]["languages"]) and "nl" in rows[r]["zero_shot_targets"]
    # the second naming pattern's languages have their own adapter (enhancement setting)
    assert {"pt", "cs", "tr", "vi", "hu", "fa", "eu", "lv"} <= set(rows["mbert-ner"]["languages"])
    assert {"bg", "ur"} <= set(rows["mbert-ner"]["zero_shot_targets"])
    for path in (ROOT / "langarith").rglob("*.py"):  # ids belong in catalogue.json only
        assert not re.search(r"AdapterHub/|xlm-roberta-base\"|bert-base-multilingual", path.read_text()), path


def test_manifest_names_real_repo_ids():
    m = profiles.manifest_for("mbert-ner")
    de = next(lang for lang in m["languages"] if lang["code"] == "de")
    assert de["adapter"] == "hub:AdapterHub/bert-base-multilingual-cased-de-wiki_pfeiffer"
    assert m["tasks"][0]["adapter"] == "hub:AdapterHub/bert-base-multilingual-cased_wikiann_ner_en_pfeiffer"
    assert m["tasks"][0]["kind"] == "tagging"
    assert m["language_adapter_kwargs"] == {"with_head": False, "leave_out": [11]}
    pt = next(lang for lang in m["languages"] if lang["code"] == "pt")
    assert pt["adapter"] == "hub:AdapterHub/bert-base-multilingual-cased_pt_wiki_pfeiffer"
    assert next(lang for lang in m["languages"] if lang["code"] == "nl")["adapter"] is None
    x = profiles.manifest_for("xlmr")
    assert x["base"] == {"hub": "FacebookAI/xlm-roberta-base"}
    assert [t["kind"] for t in x["tasks"]] == ["extractive_qa"]  # M2QA: tests/test_qa.py


def test_cli_profiles_json():
    r = subprocess.run([sys.executable, "-m", "langarith", "profiles"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [p["name"] for p in json.loads(r.stdout)][:3] == ["embedded", "mbert-ner", "xlmr"]


def test_memory_formula_matches_the_notes_and_tiny_models(mbert):
    assert profiles.madx_adapter_params(768, 12) == 7_387_776  # NOTES §3, xlm-roberta-base
    assert profiles.madx_adapter_params(768, 12, leave_out=[11]) == 6_796_800
    assert mbert.flat["en"].flat.numel() == profiles.madx_adapter_params(32, 12, leave_out=[11])
    est = profiles.memory_estimate("xlmr", n_languages=4)
    m2qa = profiles.madx_adapter_params(768, 12, inv_reduction_factor=None)  # rf 2, no NICE
    assert m2qa == 12 * 590_976 == 7_091_712
    # base + MLM head + M2QA domain and QA adapters + QA head (768·2 + 2) + 4 languages + slot
    assert est["params"] == 278_043_648 + 842_130 + 2 * m2qa + 1_538 + 5 * 7_387_776
    # the WikiANN task adapter: reduction 16, no layer 11, no invertible adapter
    ner = profiles.madx_adapter_params(768, 12, 16, None, leave_out=[11])
    assert ner == 11 * 74_544 == 819_984
    assert profiles.catalogue()["profiles"]["mbert-ner"]["sizes"]["task_adapter_params"] == ner
    tiny = sum(p.numel() for n, p in mbert.model.named_parameters() if ".adapters.ner." in n)
    assert tiny == profiles.madx_adapter_params(32, 12, 16, None, leave_out=[11])


# --- offline behaviour -------------------------------------------------------------------------


def test_offline_without_cache_fails_without_touching_the_network(tmp_path, monkeypatch):
    """Offline and nothing cached: one message naming what is missing, and no connection tried
    (how fast that is, is the benchmark's: ``benchmarks/run.py``, "offline profile refusal")."""
    import socket

    tried = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: tried.append(a) or 1 / 0)
    with pytest.raises(profiles.ProfileUnavailable) as e:
        profiles.load_profile("xlmr", cache_dir=tmp_path)
    assert tried == []
    msg = str(e.value)
    assert "FacebookAI/xlm-roberta-base" in msg and "AdapterHub/xlm-roberta-base-en-wiki_pfeiffer" in msg
    assert "HF_HUB_OFFLINE" in msg and "fetch --profile xlmr" in msg and "embedded" in msg


def test_embedded_profile_needs_no_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("LANGARITH_BUNDLE", raising=False)
    b = profiles.load_profile("embedded")
    assert type(b) is Bundle and b.root == ROOT / "assets" / "bundle"
    monkeypatch.setenv("LANGARITH_PROFILE", "embedded")
    assert profiles.default_profile() == "embedded"


# --- mbert-ner through the real ids ------------------------------------------------------------


def test_mbert_loads_lazily_with_leave_out_and_the_files_weights(mbert, hub_cache):
    assert list(mbert.flat) == ["en"]  # only the task language at start
    cfg = mbert.adapter_config["en"]
    # as the Hub's 0.2.0 configs say: gelu_new (adapters renamed gelu when it re-saved them)
    assert cfg["leave_out"] == [11] and cfg["non_linearity"] == "gelu_new" and cfg["reduction_factor"] == 2
    assert not any(".layer.11." in k for k in mbert.flat["en"].keys)
    mbert.check_mergeable(["en", "de"])  # loads de on first use
    assert "de" in mbert.flat
    # the tensors of the hub file are what the engine computes with
    snap = profiles.resolve_repo("AdapterHub/bert-base-multilingual-cased-de-wiki_pfeiffer", hub_cache)
    sd = torch.load(snap / "pytorch_adapter.bin", weights_only=True)
    k = next(k for k in sd if "invertible_adapters.de.F.0.weight" in k)
    assert torch.equal(mbert.flat["de"].views["bert.invertible_adapters.F.0.weight"], sd[k])
    k = next(k for k in sd if "layer.3.output.adapters.de.adapter_up.weight" in k)
    assert torch.equal(mbert.flat["de"].views["bert.encoder.layer.3.output.adapters.adapter_up.weight"], sd[k])
    # MLM head converted from the checkpoint, output bias included
    from safetensors.torch import load_file

    base = load_file(str(profiles.resolve_repo("google-bert/bert-base-multilingual-cased", hub_cache)
                         / "model.safetensors"))
    assert torch.equal(mbert.model.heads["mlm"][3].bias, base["cls.predictions.bias"])


def test_missing_language_adapter_fails_on_first_use(mbert):
    with pytest.raises(BundleError, match=r"(?s)bert-base-multilingual-cased-fi-wiki_pfeiffer.*fetch"):
        mbert.check_mergeable(["en", "fi"])


def test_ner_compare_marks_changed_spans(mbert):
    from langarith import ner

    text = "Angela Merkel met Emmanuel Macron in Paris on Tuesday."
    assert ner.labels_of(mbert, "ner")[0] == "O"  # the hub head calls it "0"
    same = ner.compare_ner(mbert, text, "de", "en", 1.0)
    assert [w["label"] for w in same.words["A"]] == [w["label"] for w in same.words["merged"]]
    assert same.added == [] and same.removed == []
    assert len(same.words["A"]) == len(text.replace(".", " .").split())
    cmp = ner.compare_ner(mbert, text, "nl", "de", 0.3)  # zero-shot target: A = en
    assert cmp.a == "en" and cmp.b == "de"
    for side in ("A", "merged", "B"):
        assert "".join(s for s, _ in cmp.highlighted(side)) == text
    changed = [lab for _, lab in cmp.highlighted("merged") if lab and lab.endswith("(changed)")]
    assert len(changed) == len(cmp.added)
    for s in cmp.spans["merged"]:
        assert s["type"] in {"PER", "ORG", "LOC"} and text[s["start"]:s["end"]] == s["text"]


def test_different_configs_refuse_to_merge(hub_cache, tmp_path):
    from hub_fixtures import build_mismatched

    from langarith.model import LanguageStack

    folders = build_mismatched(hub_cache, tmp_path / "odd")
    cat = copy.deepcopy(profiles.catalogue())
    entry = cat["profiles"]["mbert-ner"]
    entry["languages"] = [lang for lang in entry["languages"] if lang["code"] in ("en", "de")] + [
        {"code": c, "name": c, "family": "test", "adapter": str(f)} for c, f in folders.items()]
    stack = LanguageStack(profiles.load_profile("mbert-ner", cache_dir=hub_cache, cat=cat), device="cpu")
    for code, what in [("relu", r"non_linearity: 'gelu_new' vs 'relu'"),
                       ("rf4", r"reduction_factor: 2 vs 4"), ("lo10", r"leave_out: \[11\] vs \[10, 11\]")]:
        with pytest.raises(MergeError, match=what):
            stack.check_mergeable(["en", code])
    stack.check_mergeable(["en", "de"])


# --- xlmr ----------------------------------------------------------------------------------------


def test_xlmr_fill_mask_through_the_checkpoint_head(hub_cache):
    from langarith import tasks
    from langarith.model import LanguageStack

    stack = LanguageStack(profiles.load_profile("xlmr", cache_dir=hub_cache), device="cpu")
    assert stack.adapter_config["en"]["non_linearity"] == "relu"
    assert stack.adapter_config["en"]["inv_adapter"] == "nice"
    assert stack.flat["en"].flat.numel() == profiles.madx_adapter_params(32, 12)
    text = "Angela <mask> met Emmanuel"
    # one request a call: a batch's rows are computed together, and float sums may then differ
    # from a batch of one's in the last bit
    pure, half, en = (tasks.fill_mask(stack, [text], [ad])[0] for ad in ({"en": 1.0, "de": 0.0}, {"en": 0.5, "de": 0.5}, "en"))
    assert pure == en and half != en


# --- mBERT's second naming pattern (adapter plus a 370 MB masked-LM head) ----------------------


def test_second_pattern_fetches_the_adapter_never_the_head_or_junk(hub_cache):
    from huggingface_hub.utils import filter_repo_objects

    m = profiles.manifest_for("mbert-ner")
    repo = "AdapterHub/bert-base-multilingual-cased_pt_wiki_pfeiffer"
    assert f"hub:{repo}" in [lang["adapter"] for lang in m["languages"]]
    snap = profiles.resolve_repo(repo, hub_cache)
    on_hub = sorted(f.name for f in snap.iterdir())
    assert {"pytorch_model_head.bin", "head_config.json", "._adapter_config.json"} <= set(on_hub)
    # the filter snapshot_download applies to the repo's file list, with the patterns we pass
    kept = set(filter_repo_objects(on_hub, allow_patterns=profiles.files_for(m, repo)))
    assert kept == {"adapter_config.json", "pytorch_adapter.bin"}
    task = "AdapterHub/bert-base-multilingual-cased_wikiann_ner_en_pfeiffer"
    task_files = sorted(f.name for f in profiles.resolve_repo(task, hub_cache).iterdir())
    assert set(filter_repo_objects(task_files, allow_patterns=profiles.files_for(m, task))) == {
        "adapter_config.json", "pytorch_adapter.bin", "head_config.json", "pytorch_model_head.bin"}


def test_second_pattern_merges_only_with_agreeing_configs(mbert):
    heads = set(mbert.model.heads)
    mbert.check_mergeable(["en", "pt"])  # same saved config as the first pattern: merges
    mbert.check_mergeable(["pt", "tr"])  # enhancement: the target's own adapter with a related one
    assert set(mbert.model.heads) == heads  # the masked-LM head of pt was not loaded
    assert mbert.flat["pt"].flat.numel() == mbert.flat["en"].flat.numel()
    with pytest.raises(MergeError, match=r"non_linearity: 'gelu_new' vs 'relu'; reduction_factor: 2 vs 16"):
        mbert.check_mergeable(["en", "am"])  # am: reduction 16, relu (as on the Hub)


def test_second_pattern_without_invertible_adapter_is_refused(tmp_path):
    from hub_fixtures import build_hub_cache

    from langarith.model import LanguageStack

    cache = build_hub_cache(tmp_path / "hub", mbert_langs=("en",), xlmr_langs=("en",), m2qa=False,
                            mbert_second=("cs",), noinv_second=("cs",))
    stack = LanguageStack(profiles.load_profile("mbert-ner", cache_dir=cache), device="cpu")
    with pytest.raises(MergeError, match=r"inv_adapter: 'nice' vs None"):
        stack.check_mergeable(["en", "cs"])
