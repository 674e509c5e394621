"""scripts/publish.py: what it would upload to a Space, offline (no network, no token)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
publish = runpy.run_path(str(ROOT / "scripts" / "publish.py"), run_name="publish")

KEEP = ["README.md", "app.py", "requirements.txt", ".gitattributes", "langarith/model.py",
        "langarith/bundle/build.py", "assets/bundle/adapters/de/adapter.safetensors",
        "assets/bundle/eval/topic/de.jsonl.gz", "tests/test_engine.py", "docs/lowres.png"]
DROP = [".venv/lib/python3.11/site-packages/torch/__init__.py", ".venv/bin/python",
        "__pycache__/app.cpython-311.pyc", "langarith/__pycache__/model.cpython-311.pyc",
        "langarith/bundle/__pycache__/build.cpython-311.pyc", "tests/stray.pyc",
        ".pytest_cache/v/cache/nodeids", "tests/.pytest_cache/README.md", "cache/e5/e5-small-q4.bin",
        ".cache/huggingface/hub/x.bin", "out/run.log", "test-results/report.xml", "bench.log",
        "htmlcov/index.html", ".coverage", "langarith.egg-info/PKG-INFO", "build/lib/x.py",
        ".git/config", ".git/objects/ab/cdef", ".carry/x.safetensors", ".env", ".ci/run"]


@pytest.fixture
def space_folder(tmp_path) -> Path:
    for rel in KEEP + DROP:
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    return tmp_path


def test_dry_run_lists_the_repository_and_never_venv_caches_or_test_output(space_folder, capsys):
    assert sorted(publish["planned_files"](space_folder)) == sorted(KEEP)
    assert publish["main"](["--repo-id", "someone/langarith", "--folder", str(space_folder),
                            "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert sorted(out.split()) == sorted(KEEP)
    assert f"{len(KEEP)} files" in err


def test_upload_uses_the_same_patterns_as_the_dry_run(space_folder, monkeypatch):
    import huggingface_hub

    calls = {}

    class FakeApi:  # records instead of calling the Hub
        def create_repo(self, repo_id, **kw):
            calls["create"] = (repo_id, kw)

        def upload_folder(self, **kw):
            calls["upload"] = kw
            return "commit"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert publish["main"](["--repo-id", "someone/langarith", "--folder", str(space_folder)]) == 0
    assert calls["create"] == ("someone/langarith", {"repo_type": "space", "space_sdk": "gradio",
                                                     "private": False, "exist_ok": True})
    up = calls["upload"]
    assert up["repo_type"] == "space" and up["repo_id"] == "someone/langarith"
    assert up["folder_path"] == str(space_folder) and up["ignore_patterns"] == publish["IGNORE"]
    # upload_folder would filter with these patterns (plus its defaults): the dry run's list
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    every = [p.relative_to(space_folder).as_posix() for p in space_folder.glob("**/*") if p.is_file()]
    assert sorted(filter_repo_objects(every, ignore_patterns=up["ignore_patterns"]
                                      + DEFAULT_IGNORE_PATTERNS)) == sorted(KEEP)


def test_a_folder_that_is_not_a_space_is_refused(tmp_path, capsys):
    assert publish["main"](["--repo-id", "someone/x", "--folder", str(tmp_path), "--dry-run"]) == 2
    assert "not a Space folder" in capsys.readouterr().err


def test_the_repository_itself_would_upload_no_venv_or_cache():
    files = publish["planned_files"](ROOT)
    assert "app.py" in files and "README.md" in files and ".gitattributes" in files
    assert not [f for f in files if f.startswith((".venv/", ".git/", "cache/", ".pytest_cache/"))
                or "__pycache__" in f or f.endswith(".pyc")]
