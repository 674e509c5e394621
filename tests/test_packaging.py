"""Packaging and hosting metadata: the Space front matter the Hub accepts (README.md and the one
docs/hosting.md recommends), and pyproject.toml pinned like requirements.txt with its command."""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# The Spaces configuration reference: every accepted key (plus the model-card `license`).
KNOWN_KEYS = {"title", "emoji", "colorFrom", "colorTo", "sdk", "python_version", "sdk_version",
              "suggested_hardware", "suggested_storage", "app_file", "app_port", "base_path",
              "fullWidth", "header", "short_description", "models", "datasets", "tags", "thumbnail",
              "pinned", "hf_oauth", "hf_oauth_scopes", "hf_oauth_expiration_minutes",
              "hf_oauth_authorized_org", "disable_embedding", "startup_duration_timeout",
              "custom_headers", "preload_from_hub", "license"}
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "a10g-small",
            "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large"}


def pinned(name: str) -> str:
    line = next(x for x in (ROOT / "requirements.txt").read_text().splitlines()
                if re.match(rf"{re.escape(name)}==", x))
    return line.split("==")[1].split()[0]


def readme_front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def hosting_front_matters() -> list[dict]:
    """Every front matter block docs/hosting.md recommends (a T4/CPU one and a ZeroGPU one)."""
    text = (ROOT / "docs" / "hosting.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n---\n(.*?)---\n```", text, re.S)
    assert len(blocks) >= 2, "docs/hosting.md recommends a front matter block per hardware"
    return [yaml.safe_load(b) for b in blocks]


def hosting_front_matter() -> dict:
    return hosting_front_matters()[0]


def requirement_lines(name: str) -> list[str]:
    lines = [x.split("#")[0].strip() for x in (ROOT / name).read_text().splitlines()]
    return [x for x in lines if x]


# What ZeroGPU runs (hub-docs docs/hub/spaces-zerogpu.md, 2026-08: "Supported Versions"; its
# builder installs only a torch version of that list). Evidence and commands: docs/hosting.md.
ZEROGPU_PYTHON = {"3.12.12", "3.10.13"}
ZEROGPU_TORCH = {"2.8.0", "2.9.1", "2.10.0", "2.11.0"}


@pytest.mark.parametrize("which", ["README.md", "docs/hosting.md", "docs/hosting.md (ZeroGPU)"])
def test_front_matter_is_what_the_hub_accepts(which):
    fm = (readme_front_matter() if which == "README.md" else
          hosting_front_matters()[1 if "ZeroGPU" in which else 0])
    assert set(fm) <= KNOWN_KEYS, set(fm) - KNOWN_KEYS
    assert fm["sdk"] == "gradio" and str(fm["sdk_version"]) == pinned("gradio")
    for key in ("colorFrom", "colorTo"):
        assert key not in fm or fm[key] in COLOURS, fm[key]
    # the Hub's pre-receive hook refuses a short_description over 60 characters
    assert "short_description" in fm and 0 < len(fm["short_description"]) <= 60
    assert "suggested_hardware" not in fm or fm["suggested_hardware"] in HARDWARE
    assert isinstance(fm.get("python_version", "3.11"), str)  # 3.10 as a number would be 3.1
    assert (ROOT / fm.get("app_file", "app.py")).is_file()


def test_pyproject_pins_what_requirements_pins_and_names_the_command():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["dependencies"] == requirement_lines("requirements.txt")
    tests = requirement_lines("requirements-test.txt")
    assert tests[0] == "-r requirements.txt"
    assert meta["optional-dependencies"]["test"] == tests[1:]
    assert meta["scripts"] == {"langarith": "langarith.cli:main"}
    # the declared entry point resolves and answers like the command a user types
    import importlib

    module, name = meta["scripts"]["langarith"].split(":")
    main = getattr(importlib.import_module(module), name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "usage:" in out.getvalue() and "predict" in out.getvalue()


def test_front_matter_python_and_torch_are_ones_zerogpu_runs():
    from packaging.requirements import Requirement

    for fm in (readme_front_matter(), hosting_front_matters()[1]):
        assert fm["python_version"] in ZEROGPU_PYTHON, fm["python_version"]
    python = readme_front_matter()["python_version"]
    env = {"python_version": ".".join(python.split(".")[:2]), "python_full_version": python}
    torch_lines = [Requirement(x) for x in requirement_lines("requirements.txt") if x.startswith("torch")]
    on_space = [r for r in torch_lines if r.marker is None or r.marker.evaluate(env)]
    assert len(on_space) == 1 and str(on_space[0].specifier).removeprefix("==") in ZEROGPU_TORCH
    here = [r for r in torch_lines if r.marker is None or r.marker.evaluate()]  # this interpreter
    assert len(here) == 1  # 3.11 here: the local CPU wheel's pin
    assert ZEROGPU_PYTHON >= {fm["python_version"] for fm in hosting_front_matters()[1:]}


def test_front_matter_models_are_the_hub_profiles_repositories():
    from langarith import profiles

    known = set(profiles.hub_repos("mbert-ner")) | set(profiles.hub_repos("xlmr"))
    for fm in (readme_front_matter(), *hosting_front_matters()):
        assert fm.get("models"), "models: names the Hub repositories the Space can use"
        assert set(fm["models"]) <= known, set(fm["models"]) - known
        for line in fm.get("preload_from_hub", []):
            assert line.split()[0] in known, line
    readme = set(readme_front_matter()["models"])
    for name in ("mbert-ner", "xlmr"):  # each hub profile's encoder and English adapter at least
        m = profiles.hub_repos(name, ["en"])
        assert set(m) <= readme, (name, set(m) - readme)


def test_runtime_requirements_hold_no_test_tools_and_test_sh_installs_them():
    runtime = {x.split("==")[0].split(";")[0].strip() for x in requirement_lines("requirements.txt")}
    assert not runtime & {"pytest", "playwright"}
    test = requirement_lines("requirements-test.txt")
    assert {"pytest", "playwright==1.65.2"} <= set(test)
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    run_sh = (ROOT / "scripts" / "run.sh").read_text()
    setup_sh = (ROOT / "scripts" / "setup.sh").read_text()
    assert test_sh.index("REQUIREMENTS=requirements-test.txt") < test_sh.index("setup.sh")
    assert "REQUIREMENTS" not in run_sh and "requirements-test" not in run_sh
    assert '-r "${REQUIREMENTS:-requirements.txt}"' in setup_sh
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec bash scripts/test.sh")


def _binary(path: Path) -> bool:
    """As git decides: a NUL byte in the first 8000 bytes."""
    with open(path, "rb") as f:
        return b"\0" in f.read(8000)


def test_every_binary_file_of_the_repository_goes_through_lfs():
    import fnmatch
    import subprocess

    lfs = [line.split()[0] for line in (ROOT / ".gitattributes").read_text().splitlines()
           if line.strip() and not line.startswith("#")
           and {"filter=lfs", "diff=lfs", "merge=lfs", "-text"} <= set(line.split()[1:])]
    assert {"*.safetensors", "*.bin", "*.gz", "*.png", "*.pt", "*.parquet", "*.q4"} <= set(lfs)
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    binaries = [f for f in files if (ROOT / f).is_file() and _binary(ROOT / f)]
    assert binaries, "the repository holds binary files (adapters, the bundle's data)"
    missing = [f for f in binaries if not any(fnmatch.fnmatch(Path(f).name, p) for p in lfs)]
    assert missing == [], f"binary files the Hub would refuse: {missing[:5]}"
