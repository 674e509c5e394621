"""Layer 4: the command line, run as a subprocess: JSON on stdout, errors on stderr, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langarith import tasks

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, bundle=None, timeout=180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    env.pop("LANGARITH_BUNDLE", None)
    cmd = [sys.executable, "-m", "langarith", *args] + (["--bundle", str(bundle)] if bundle else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_languages(tiny_bundle):
    r = cli("languages", bundle=tiny_bundle)
    assert r.returncode == 0, r.stderr
    langs = json.loads(r.stdout)
    assert isinstance(langs, list) and len(langs) == 5
    for item in langs:
        assert {"code", "name", "family", "has_adapter"} <= set(item)
    by_code = {x["code"]: x for x in langs}
    assert by_code["en"] == {"code": "en", "name": "English", "family": "Germanic",
                             "has_adapter": True, "source": None}
    assert by_code["pt"]["has_adapter"] is False and by_code["pt"]["source"] == "es"
    assert by_code["es"]["family"] == "Romance"
    assert sorted(c for c, x in by_code.items() if x["has_adapter"]) == ["de", "en", "es"]


def test_predict_matches_the_engine(stack, tiny_bundle):
    text = "insira uma fórmula na célula"
    r = cli("predict", "--target", "pt", "--source", "es", "--lam", "0.3", "--text", text,
            bundle=tiny_bundle)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["formula"] == "merged = 0.30·en + 0.70·es"
    assert (out["target"], out["a"], out["b"], out["lam"]) == ("pt", "en", "es", 0.3)
    ref = tasks.compare(stack, text, "pt", "es", 0.3, mask_text=tasks.mask_a_word(text))
    for w in ("merged", "A", "B"):
        assert out["probs"][w] == pytest.approx(ref.probs[w], abs=1e-6), w
        assert out["predictions"][w] == ref.prediction(w)
        assert [t for t, _ in out["fill_mask"][w]] == [t for t, _ in ref.fill_mask[w]]
    assert "hidden_shift" not in out


def test_predict_defaults_to_the_targets_example(tiny_bundle):
    r = cli("predict", "--target", "nl", bundle=tiny_bundle)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["a"], out["b"], out["lam"]) == ("en", "de", 0.5)
    assert out["formula"] == "merged = 0.50·en + 0.50·de"


def test_merge_writes_a_loadable_folder(tiny_bundle, tmp_path):
    dest = tmp_path / "pt-merge"
    r = cli("merge", "--target", "pt", "--lam", "0.7", "--out", str(dest), bundle=tiny_bundle)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["weights"] == {"en": 0.7, "es": pytest.approx(0.3)}
    assert out["formula"] == "merged = 0.70·en + 0.30·es"
    assert Path(out["out"]) == dest and (dest / "adapter_config.json").is_file()
    saved = load_file(str(dest / "adapter.safetensors"))
    a = load_file(str(tiny_bundle / "adapters" / "en" / "adapter.safetensors"))
    b = load_file(str(tiny_bundle / "adapters" / "es" / "adapter.safetensors"))
    assert len(saved) == 16 and sum("invertible_adapters" in k for k in saved) == 8
    for k, v in saved.items():
        ka = k.replace(".merged.", ".en.", 1)
        kb = k.replace(".merged.", ".es.", 1)
        torch.testing.assert_close(v.double(), 0.7 * a[ka].double() + 0.3 * b[kb].double(),
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("args,msg", [
    (("predict", "--target", "pt", "--lam", "1.5", "--text", "x"), "λ must lie in [0, 1]"),
    (("merge", "--target", "pt", "--lam", "nan", "--out", "{tmp}/m"), "λ must be a finite number"),
    (("predict", "--target", "pt", "--lam", "abc"), "invalid float value: 'abc'"),
    (("predict", "--target", "xx"), "unknown language 'xx'"),
    (("predict", "--target", "pt", "--source", "nl"), "has no language adapter"),
])
def test_bad_input_exits_nonzero_with_message(tiny_bundle, tmp_path, args, msg):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = cli(*args, bundle=tiny_bundle)
    assert r.returncode != 0
    assert msg in r.stderr, r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "m").exists()


def test_missing_bundle_says_how_to_get_one(tmp_path):
    r = cli("languages", bundle=tmp_path / "nowhere")
    assert r.returncode != 0
    assert "no bundle at" in r.stderr and "langarith.bundle.tiny" in r.stderr


@pytest.mark.parametrize("args", [
    ["languages"], ["profiles"],
    ["predict", "--target", "pt", "--lam", "0.3"],
    ["predict", "--target", "pt", "--task", "spans", "--text", "insira uma fórmula na célula"],
    ["sweep", "--target", "pt", "--points", "3", "--json"],
    ["mlm", "--target", "pt", "--points", "3", "--json"],
    ["similarity", "--target", "pt", "--json"],
    ["merge", "--target", "pt", "--lam", "0.4", "--out", "{tmp}/m"],
    ["export", "--target", "pt", "--lam", "0.4", "--out", "{tmp}/e"]])
def test_every_command_prints_pure_json_on_stdout(tiny_bundle, tmp_path, args):
    """stdout parses as JSON, whatever the command logs (logs go to stderr)."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    extra = [] if args[0] == "profiles" else ["--bundle", str(tiny_bundle)]
    r = subprocess.run([sys.executable, "-m", "langarith", *args, *extra], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)


def test_encoder_messages_are_logs_not_stdout(capsys, caplog):
    from langarith import encoder

    with caplog.at_level("INFO", logger="langarith.encoder"):
        encoder._log("rebuilding the base encoder")
    assert capsys.readouterr().out == ""
    assert "rebuilding the base encoder" in caplog.text
