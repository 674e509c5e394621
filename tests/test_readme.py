"""Every command block of the README, run as written: each ``python -m langarith`` line through the
command line (in-process, the embedded bundle's stack loaded once; ``similarity`` on the tiny
bundle, as it takes a minute and a half on the embedded one), its ``# → {keys}`` comment checked
against the JSON it prints; the Python block in a fresh interpreter on the tiny bundle; the report's
tables against the README's. A line this test neither runs nor lists in ``NOT_RUN`` fails it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from langarith import cli
from langarith.model import LanguageStack

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Lines the test does not run, each with the reason (a prefix of the line after its comment is cut).
NOT_RUN = {
    "bash scripts/run.sh": "sets up a venv and serves until stopped (test_app runs app.py)",
    "bash scripts/test.sh": "runs this very suite",
    "python -m langarith.bundle build": "trains adapters for hours (test_build_quick runs --quick)",
    "LANGARITH_LOWRES_ONLY=": "trains a low-resource adapter",
    "python docs/figures.py": "draws a figure (its own test)",
}
SLOW_ON_THE_BUNDLE = {"similarity"}  # run on the tiny bundle instead


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def lines() -> list[tuple[str, str]]:
    """(command, comment) of every line of every bash block."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                cmd, _, comment = line.partition("  #")
                out.append((cmd.strip(), comment.strip()))
    return out


def promised_keys(comment: str) -> list[str]:
    """The keys a ``→ {a, b}`` or ``→ [{a, b}]`` comment names."""
    m = re.search(r"→ \[?\{([^}]*)\}", comment)
    return re.findall(r"[a-z_]+", m.group(1)) if m else []


@pytest.fixture(scope="module")
def stacks(tiny_bundle):
    """One stack per bundle for the whole module: the commands run in-process on them."""
    return {cli.bundle_path(None): LanguageStack(cli.bundle_path(None), device="cpu"),
            Path(tiny_bundle): LanguageStack(tiny_bundle, device="cpu")}


@pytest.fixture
def run(stacks, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # the README's relative --out folders land here
    monkeypatch.delenv("LANGARITH_BUNDLE", raising=False)
    monkeypatch.setattr(cli, "load_stack", lambda path, profile=None: stacks[Path(path)])

    def go(argv: list[str]):
        capsys.readouterr()
        rc = cli.main(argv)
        out, err = capsys.readouterr()
        assert rc == 0, f"{shlex.join(argv)} exited {rc}: {err}"
        return json.loads(out)

    return go


def test_every_bash_line_is_run_or_listed():
    handled = [c for c, _ in lines() if c.startswith("python -m langarith ")
               or c.startswith("python -m langarith.bundle.report")
               or any(c.startswith(p) for p in NOT_RUN)]
    assert handled == [c for c, _ in lines()]
    assert len(handled) >= 14  # the command-line block, the tagging block, the build blocks


def test_the_command_line_blocks(run, tiny_bundle, monkeypatch):
    served = []
    monkeypatch.setattr(cli, "serve", lambda *a: served.append(a))
    ran = 0
    for cmd, comment in lines():
        argv = shlex.split(cmd)
        if argv[:2] != ["python", "-m"] or argv[2] != "langarith":
            continue
        args = argv[3:]
        if args[0] in SLOW_ON_THE_BUNDLE:
            args += ["--bundle", str(tiny_bundle)]
        if args[0] == "serve":
            assert cli.main(args) == 0 and served and "7860" in cmd and served[0][3] == 7860
            continue
        out = run(args)
        row = out[0] if isinstance(out, list) else out
        missing = [k for k in promised_keys(comment) if k not in row]
        assert not missing, f"{cmd}: the README promises {missing}; the output has {sorted(row)}"
        ran += 1
    assert ran >= 12


def test_the_readme_says_what_the_shipped_sweeps_and_curves_are(run):
    """The defaults find the shipped curves, on whatever grid they were computed."""
    for target, n in (("pt", 11), ("nl@100k-conv", 6)):
        out = run(["sweep", "--target", target, "--json"])
        assert out["precomputed"] is True and len(out["points"]) == n
    out = run(["mlm", "--target", "nl@100k-conv", "--json"])
    assert out["precomputed"] is True and len(out["points"]) == 11
    out = run(["sweep", "--target", "nl@100k-conv", "--task", "libreoffice_spans"])
    assert out["precomputed"] is True and len(out["points"]) == 6
    assert "11 λ values" in README and "6 for the low-resource" in README


def test_the_python_block_loads_the_export_as_written(tiny_bundle, tmp_path):
    (code,) = blocks("python")
    env = dict(os.environ, PYTHONPATH=str(ROOT), LANGARITH_BUNDLE=str(tiny_bundle))
    check = "\nprint(json.dumps({'name': name, 'active': str(model.active_adapters)}))\n"
    r = subprocess.run([sys.executable, "-c", code + check], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["name"] == "merged" and "merged" in got["active"]
    assert "# \"merged\"" in code
    cfg = json.loads((tmp_path / "out" / "merged_adapter" / "adapter_config.json").read_text())
    assert not Path(cfg["model_name"]).is_absolute()  # a name, not this machine's cache folder


def tables_all(text: str) -> dict[str, list[str]]:
    """Markdown tables by header line: {header: [row, ...]} (rows whose first cells repeat too)."""
    out: dict[str, list[str]] = {}
    header = None
    for line in text.splitlines():
        if not line.startswith("| "):
            header = None
        elif header is None:
            header = line
            out.setdefault(header, [])
        elif not line.startswith("|---"):
            out[header].append(line)
    return out


def tables(text: str) -> dict[str, dict[str, str]]:
    """Markdown tables by header line: {header: {first cell: row}}."""
    return {h: {r.split("|")[1].strip(): r for r in rows} for h, rows in tables_all(text).items()}


def test_the_report_prints_the_readme_tables(capsys):
    """Every README row of a table the report prints (same header, same first cell) is the
    report's row as it prints it now."""
    from langarith.bundle import report

    report.main([])
    printed = tables(capsys.readouterr().out)
    compared = 0
    for header, rows in tables(README).items():
        for key, row in rows.items():
            if key in printed.get(header, {}):
                assert row == printed[header][key], f"README row for {key} is stale"
                compared += 1
    assert compared > 30


def test_the_readme_quotes_the_benchmarks_as_they_wrote_them():
    """The README's speed tables are copied from what the benchmarks last wrote (same header,
    same first cells): a rerun that changes a figure fails this until the README follows."""
    def rows_by_label(text):  # a row's label: its first cell, or its first two where the first repeats
        out = {}
        for header, rows in tables_all(text).items():
            firsts = [r.split("|")[1] for r in rows]
            width = 2 if len(set(firsts)) < len(firsts) else 1
            out[header] = {tuple(r.split("|")[1:1 + width]): r for r in rows}
        return out

    compared = 0
    for name in ("RESULTS_class.md", "RESULTS_slider.md"):
        written = rows_by_label((ROOT / "benchmarks" / name).read_text(encoding="utf-8"))
        for header, rows in rows_by_label(README).items():
            for key, row in rows.items():
                if key in written.get(header, {}):
                    assert row == written[header][key], f"README row {key!r} differs from benchmarks/{name}"
                    compared += 1
    assert compared >= 8  # the class table (3 sizes × 2 kinds of λ) and the slider's rows
