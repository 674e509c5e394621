"""A model folder cannot run code (trust.py): every config the project hands to transformers or
adapters is read first, and keys that choose code or kernels are refused naming the file.

The end-to-end tests run ``tests/trust_probe.py`` in a child process with a stand-in ``kernels``
package (tests/standins) on its path that records its import and every call: each key of
``trust.REFUSED``, through every project path (bundle folder, LANGARITH_BUNDLE, --bundle, hub
profile, the bundle build's loaders), is refused, and nothing of ``kernels`` is imported or
called. The control in the same child shows the stand-in is reached when transformers is handed
the same config directly (CVE-2026-4372), so the probe could fail.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from langarith import trust
from langarith.loading import BundleError
from langarith.model import LanguageStack

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
KERNEL = "evil-org/evil-kernel:attn"


# --- the screen itself -------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(trust.REFUSED))
def test_each_listed_key_is_refused_at_any_depth_naming_the_file_and_the_key(key):
    with pytest.raises(trust.UntrustedConfig, match=rf"^refused /m/config\.json: it sets {key}, which "):
        trust.screen({"model_type": "bert", key: KERNEL}, "/m/config.json")
    with pytest.raises(trust.UntrustedConfig, match=rf"it sets text_config\.{key}\b"):
        trust.screen({"text_config": {key: {"x": 1}}}, "/m/config.json")
    with pytest.raises(trust.UntrustedConfig) as e:  # several at once: all named, one line
        trust.screen({key: KERNEL, "layers": [{"auto_map": "m.C"}]}, "/m/config.json")
    assert "\n" not in str(e.value) and "layers[0].auto_map" in str(e.value)


def test_inert_and_built_in_values_are_not_refused(caplog):
    clean, dropped = trust.screen({"trust_remote_code": False, "auto_map": None, "quantization_config": {},
                                   "hidden_size": 8}, "f")
    assert clean == {"hidden_size": 8} and dropped == []
    with caplog.at_level(logging.WARNING, logger="langarith.trust"):
        clean, dropped = trust.screen({"attn_implementation": "eager", "_attn_implementation_autoset": True,
                                       "hidden_size": 8}, "/m/config.json")
    assert clean == {"hidden_size": 8}
    assert dropped == ["attn_implementation", "_attn_implementation_autoset"]
    assert "/m/config.json: ignored _attn_implementation_autoset" in caplog.text
    with pytest.raises(trust.UntrustedConfig):  # flash attention may fall back to a Hub kernel
        trust.screen({"attn_implementation": "flash_attention_2"}, "f")


def test_the_real_hub_files_pass_unchanged():
    files = sorted((TESTS / "hub_verbatim").glob("*.json"))
    assert len(files) >= 8
    for f in files:
        data = json.loads(f.read_text())
        assert trust.screen(data, str(f)) == (data, []), f


# --- loading ---------------------------------------------------------------------------------


def _base_copy(tiny_bundle, tmp_path, **changes) -> Path:
    base = tmp_path / "base"
    shutil.copytree(tiny_bundle / "base", base)
    cfg = json.loads((base / "config.json").read_text())
    cfg.update(changes)
    (base / "config.json").write_text(json.dumps(cfg))
    return base


def test_the_model_is_built_from_the_checked_config(stack):
    # transformers chose the attention itself: nothing came from a file
    assert stack.model.config._attn_implementation == "sdpa"


def test_a_dropped_key_loads_with_a_warning(tiny_bundle, tmp_path, caplog):
    from transformers import BertModel

    base = _base_copy(tiny_bundle, tmp_path, _attn_implementation_autoset=True)
    with caplog.at_level(logging.WARNING, logger="langarith.trust"):
        model = trust.load_model(BertModel, base)
    assert model.config._attn_implementation == "sdpa"
    assert not hasattr(model.config, "_attn_implementation_autoset")
    assert f"{base / 'config.json'}: ignored _attn_implementation_autoset" in caplog.text


def test_an_unknown_model_type_and_a_peft_file_are_refused(tiny_bundle, tmp_path):
    from transformers import BertModel

    base = _base_copy(tiny_bundle, tmp_path, model_type="evil")
    with pytest.raises(trust.UntrustedConfig, match=r"config\.json: model_type 'evil' is not one transformers ships"):
        trust.load_model(BertModel, base)
    base = _base_copy(tiny_bundle, tmp_path / "p")
    (base / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "evil-org/model"}))
    with pytest.raises(trust.UntrustedConfig, match=r"adapter_config\.json: a base model folder holding"):
        trust.load_model(BertModel, base)


def test_a_refused_bundle_changes_nothing_and_names_the_file(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    cfg = bundle / "adapters" / "de" / "adapter_config.json"
    data = json.loads(cfg.read_text())
    data["auto_map"] = {"AutoModel": "m.C"}
    cfg.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=rf"^refused {cfg}: it sets auto_map"):
        LanguageStack(bundle, device="cpu")
    assert json.loads(cfg.read_text()) == data  # nothing rewritten


# --- every path, with a recording stand-in for `kernels` ---------------------------------------


def _probe(mode: str, tiny_bundle, hub_cache, tmp_path) -> tuple[dict, list[str]]:
    record = tmp_path / "kernels-record.txt"
    record.write_text("")
    env = dict(os.environ, KERNELS_RECORD=str(record), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(TESTS / "standins"), str(ROOT)]))
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run([sys.executable, str(TESTS / "trust_probe.py"), mode, str(tiny_bundle),
                          str(hub_cache), str(work)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1]), record.read_text().splitlines()


def _assert_every_path_refused_every_key(out: dict) -> None:
    paths = {r["path"] for r in out["results"]}
    assert len(paths) == 11 and len(out["results"]) == 11 * len(trust.REFUSED)
    for r in out["results"]:
        assert r["error"] is not None, f"{r['path']} took {r['key']}"
        assert f"refused {r['file']}: it sets {r['key']}, which" in r["error"], r
        assert "\n" not in r["error"]


def test_as_shipped_every_path_refuses_every_key_and_kernels_is_never_imported(
        tiny_bundle, hub_cache, tmp_path):
    out, record = _probe("shipped", tiny_bundle, hub_cache, tmp_path)
    _assert_every_path_refused_every_key(out)
    assert record == []  # not even imported: langarith/__init__ makes it unimportable
    assert out["kernels_module"] == "None"


def test_with_kernels_imported_first_the_screen_alone_keeps_its_kernels_from_being_fetched(
        tiny_bundle, hub_cache, tmp_path):
    out, record = _probe("kernels-first", tiny_bundle, hub_cache, tmp_path)
    _assert_every_path_refused_every_key(out)
    before, control = record[:record.index("--- control")], record[record.index("--- control") + 1:]
    # transformers' own import registered its built-in layer mapping; no config fetched a kernel
    assert before[0] == "import kernels"
    assert not [line for line in before if line.startswith("call get_kernel") or "kernelize" in line]
    # the control: transformers handed the same config itself fetches the named Hub kernel
    assert control[0] == "call get_kernel 'evil-org/evil-kernel'"
