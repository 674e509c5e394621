"""The build's stages as data (``bundle/build.py``): the registry's order and invalidations, and
``main``'s --stages / --force / skipping, run on stand-in stages (no training)."""

from __future__ import annotations

import json

import pytest

from langarith.bundle import build
from langarith.bundle.context import Build


def test_the_registry_lists_every_stage_once_in_order():
    assert build.STAGES == ["corpus", "base", "head", "adapters", "task", "evaluate", "package",
                            "tagging", "tagging_eval", "entropy", "lowres", "lowres_eval"]
    assert [s.name for s in build.REGISTRY] == build.STAGES and set(build.BY_NAME) == set(build.STAGES)
    for s in build.REGISTRY:
        assert callable(s.run) and s.writes
        # a stage only voids stages after it (their output builds on its own)
        assert all(build.STAGES.index(x) > build.STAGES.index(s.name) for x in s.invalidates)
    # both write what lowres_eval files its results into: it must run again after either
    assert build.BY_NAME["evaluate"].invalidates == ("lowres_eval", "entropy")
    assert build.BY_NAME["tagging_eval"].invalidates == ("lowres_eval", "entropy")
    assert build.BY_NAME["package"].invalidates == ("entropy",)  # it rewrites results/


@pytest.fixture
def fake_stages(monkeypatch):
    """Every stage replaced by one that records its call and returns a small record."""
    calls: list[str] = []

    def make(name):
        def run(b: Build):
            calls.append(name)
            return {"ran": name}
        return run

    registry = tuple(build.Stage(s.name, make(s.name), s.writes, s.invalidates)
                     for s in build.REGISTRY)
    monkeypatch.setattr(build, "REGISTRY", registry)
    monkeypatch.setattr(build, "BY_NAME", {s.name: s for s in registry})
    return calls


def _main(tmp_path, *args):
    return build.main(["build", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"),
                       "--device", "cpu", *args])


def _stages(tmp_path) -> dict:
    return json.loads((tmp_path / "w" / "stages.json").read_text())


def test_main_runs_the_asked_stages_then_skips_them(tmp_path, fake_stages, capsys):
    assert _main(tmp_path, "--stages", "corpus,base") == 0
    assert fake_stages == ["corpus", "base"]
    assert list(_stages(tmp_path)) == ["corpus", "base"]
    assert _stages(tmp_path)["base"]["ran"] == "base" and _stages(tmp_path)["base"]["device"] == "cpu"
    assert _main(tmp_path, "--stages", "corpus,base,head") == 0
    assert fake_stages == ["corpus", "base", "head"]
    assert capsys.readouterr().out.count("done before, skipped") == 2


def test_force_redoes_a_stage_and_a_stage_voids_the_ones_it_invalidates(tmp_path, fake_stages):
    _main(tmp_path, "--stages", "evaluate,lowres_eval")
    assert list(_stages(tmp_path)) == ["evaluate", "lowres_eval"]
    _main(tmp_path, "--stages", "evaluate", "--force", "evaluate")
    assert fake_stages == ["evaluate", "lowres_eval", "evaluate"]
    assert list(_stages(tmp_path)) == ["evaluate"]  # lowres_eval's record is gone: it runs again
    _main(tmp_path, "--stages", "lowres_eval")
    assert fake_stages[-1] == "lowres_eval" and "lowres_eval" in _stages(tmp_path)


def test_a_stage_that_returns_nothing_is_not_marked_done(tmp_path):
    b = Build(tmp_path, quick=True, device="cpu", cache=tmp_path, dest=tmp_path / "o")
    build.run_stage(b, build.Stage("lowres_eval", lambda b: None, "checkpoints only"))
    assert "lowres_eval" not in b.stages and not (tmp_path / "stages.json").exists()
    build.run_stage(b, build.Stage("corpus", lambda b: {"n": 1}, "x"))
    assert b.stages["corpus"]["n"] == 1 and json.loads((tmp_path / "stages.json").read_text())


def test_an_unknown_stage_is_refused_before_anything_runs(tmp_path, fake_stages, capsys):
    with pytest.raises(SystemExit):
        _main(tmp_path, "--stages", "corpus,evalute")
    assert fake_stages == [] and "evalute" in capsys.readouterr().err


def test_the_context_defaults_and_quick_languages(tmp_path):
    from langarith.paths import DEFAULT_BUNDLE

    b = Build(tmp_path, quick=True, device="cpu", cache=tmp_path)
    assert b.dest == DEFAULT_BUNDLE and b.smoke and b.adapter_langs == ["en", "es", "de"]
    assert b.eval_languages() == ["en", "es", "de", "pt"]
    assert Build(tmp_path, quick=False, device="cpu", cache=tmp_path, smoke=True).smoke
