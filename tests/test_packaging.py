"""Packaging and hosting metadata: the Space front matter the Hub accepts (README.md and the one
docs/hosting.md recommends), and pyproject.toml pinned like requirements.txt with its command."""

from __future__ import annotations

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


def hosting_front_matter() -> dict:
    text = (ROOT / "docs" / "hosting.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n---\n(.*?)---\n```", text, re.S)
    assert block, "docs/hosting.md recommends a front matter block"
    return yaml.safe_load(block.group(1))


@pytest.mark.parametrize("which", ["README.md", "docs/hosting.md"])
def test_front_matter_is_what_the_hub_accepts(which):
    fm = readme_front_matter() if which == "README.md" else hosting_front_matter()
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
    reqs = (ROOT / "requirements.txt").read_text().split("# tests")[0]
    runtime = [x.split("#")[0].strip() for x in reqs.splitlines()]
    runtime = [x for x in runtime if x]
    assert meta["dependencies"] == runtime
    tests = [x.split("#")[0].strip() for x in (ROOT / "requirements.txt").read_text().split("# tests")[1].splitlines()]
    assert meta["optional-dependencies"]["test"] == [x for x in tests if x]
    assert meta["scripts"] == {"langarith": "langarith.cli:main"}
    from langarith import cli

    assert callable(cli.main)
