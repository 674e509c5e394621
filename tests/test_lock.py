"""What a hub profile downloaded is what runs (lock.py, profiles): ``fetch`` locks each repository
(revision, resolved commit, every file's sha256); later loads refuse a changed byte in one line
that says how to accept it, and ``fetch --accept-changes`` takes it.

On the hub fixtures (tests/hub_fixtures.py), copied per test so the session's cache stays as
built. ``fetch`` must reach the Hub; here the "Hub" is the fixture cache itself
(``snapshot_download`` answered from it, no network).
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil

import pytest

import hub_fixtures as hf
from langarith import lock, profiles
from langarith.model import LanguageStack

DE = hf.MBERT_LANG.format("de")


@pytest.fixture
def cache(hub_cache, tmp_path):
    out = tmp_path / "hub"
    shutil.copytree(hub_cache, out, ignore=shutil.ignore_patterns(".locks"))  # no lock yet
    return out


@pytest.fixture
def online(monkeypatch):
    """``fetch`` as on a machine with network access, the fixture cache standing in for the Hub."""
    import huggingface_hub

    real = huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda *a, **k: real(*a, **{**k, "local_files_only": True}))
    monkeypatch.setattr(profiles, "hub_offline", lambda: False)


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def test_fetch_locks_each_repository_with_its_commit_revision_and_file_hashes(cache, online):
    out = profiles.fetch_profile("mbert-ner", ["de"], cache_dir=cache)
    locked = json.loads(lock.lock_path(cache, "mbert-ner").read_text())
    assert locked["profile"] == "mbert-ner"
    assert set(locked["repos"]) == {r["repo"] for r in out} == {hf.MBERT, hf.NER, hf.MBERT_LANG.format("en"), DE}
    for r in out:
        entry = locked["repos"][r["repo"]]
        assert entry["commit"] == r["commit"] == hashlib.sha1(r["repo"].encode()).hexdigest()  # the fixture's
        assert entry["revision"] == "main"
        folder = profiles.resolve_repo(r["repo"], cache)
        want = profiles.files_for(profiles.manifest_for("mbert-ner"), r["repo"])
        assert entry["files"] == {f: hashlib.sha256((folder / f).read_bytes()).hexdigest()
                                  for f in sorted(want) if (folder / f).is_file()}
    assert "pytorch_adapter.bin" in locked["repos"][DE]["files"]
    assert "._adapter_config.json" not in locked["repos"][DE]["files"]  # junk is not fetched


def test_a_changed_byte_is_refused_and_a_new_fetch_accepts_it(cache, online):
    profiles.fetch_profile("mbert-ner", ["de"], cache_dir=cache)
    weights = profiles.resolve_repo(DE, cache) / "pytorch_adapter.bin"
    _flip_a_byte(weights)
    stack = LanguageStack(profiles.load_profile("mbert-ner", cache_dir=cache), device="cpu")
    with pytest.raises(profiles.ProfileChanged) as e:  # de loads lazily, on first use
        stack.check_mergeable(["en", "de"])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{DE} in the Hugging Face cache differs from what profile 'mbert-ner' first fetched: "
                          f"pytorch_adapter.bin changed (sha256 {lock.sha256(weights)[:12]}")
    assert "`python -m langarith fetch --profile mbert-ner --languages de --accept-changes`" in msg
    assert "de" not in stack.flat
    with pytest.raises(profiles.ProfileChanged, match="pytorch_adapter.bin changed"):  # a plain fetch too
        profiles.fetch_profile("mbert-ner", ["de"], cache_dir=cache)
    profiles.fetch_profile("mbert-ner", ["de"], cache_dir=cache, accept_changes=True)
    assert json.loads(lock.lock_path(cache, "mbert-ner").read_text())["repos"][DE]["files"][
        "pytorch_adapter.bin"] == lock.sha256(weights)
    stack.check_mergeable(["en", "de"])  # now it loads
    assert "de" in stack.flat


def test_a_changed_base_config_refuses_the_profile_before_any_model_loads(cache, online):
    profiles.fetch_profile("mbert-ner", ["en"], cache_dir=cache)
    cfg = profiles.resolve_repo(hf.MBERT, cache) / "config.json"
    cfg.write_text(cfg.read_text().replace('"hidden_act"', ' "hidden_act"', 1))
    with pytest.raises(profiles.ProfileChanged, match=rf"^{hf.MBERT} .*: config\.json changed .*--languages en "):
        profiles.load_profile("mbert-ner", cache_dir=cache)


def test_without_a_fetch_the_first_load_is_what_is_trusted(cache):
    stack = LanguageStack(profiles.load_profile("mbert-ner", cache_dir=cache), device="cpu")
    stack.check_mergeable(["en", "de"])
    locked = json.loads(lock.lock_path(cache, "mbert-ner").read_text())["repos"]
    assert {hf.MBERT, hf.NER, DE} <= set(locked)
    (profiles.resolve_repo(DE, cache) / "adapter.safetensors").write_bytes(b"new file")
    with pytest.raises(profiles.ProfileChanged, match="adapter.safetensors is new"):
        profiles.load_profile("mbert-ner", cache_dir=cache).path(f"hub:{DE}")


def test_the_catalogue_names_a_revision_for_every_repository_it_ships():
    for name in ("mbert-ner", "xlmr"):
        revisions = profiles.manifest_for(name)["revisions"]
        assert set(revisions) == set(profiles.hub_repos(name)), name
        assert set(revisions.values()) == {"main"}  # no commit hash is known here (catalogue _note)


def test_a_named_revision_is_the_one_loaded(cache):
    cat = copy.deepcopy(profiles.catalogue())
    commit = hashlib.sha1(DE.encode()).hexdigest()  # the fixture's commit of de
    cat["profiles"]["mbert-ner"]["revisions"][DE] = commit
    b = profiles.load_profile("mbert-ner", cache_dir=cache, cat=cat)
    assert b.path(f"hub:{DE}").name == commit
    assert json.loads(lock.lock_path(cache, "mbert-ner").read_text())["repos"][DE]["revision"] == commit
    cat["profiles"]["mbert-ner"]["revisions"][DE] = "0" * 40  # not in the cache, and offline
    with pytest.raises(profiles.ProfileUnavailable, match=rf"{DE} at revision 0{{40}} is not in the"):
        profiles.load_profile("mbert-ner", cache_dir=cache, cat=cat).path(f"hub:{DE}")
