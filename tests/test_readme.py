"""Every command block of the README and of the docs its depth moved to, run as written: each
``python -m langarith`` line through the command line (in-process, the embedded bundle's stack loaded once; ``similarity`` on the tiny
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
# The documents the README's depth moved to; their command blocks, tables and figures are checked
# as the README's are.
MOVED = ["teaching.md", "results.md", "cli.md", "performance.md", "architecture.md"]
DOCS = {name: (ROOT / "docs" / name).read_text(encoding="utf-8") for name in MOVED + ["hosting.md"]}
ALL = "\n".join([README] + [DOCS[n] for n in MOVED])  # the text the command blocks are read from

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
    return re.findall(rf"^```{lang}\n(.*?)^```", ALL, flags=re.S | re.M)


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
    assert "11 λ values" in DOCS["cli.md"] and "6 for the low-resource" in DOCS["cli.md"]


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
        if not line.startswith("|"):  # "|---|" rows belong to their table
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
    for header, rows in tables(README + "\n" + DOCS["results.md"]).items():
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
        for header, rows in rows_by_label(DOCS["performance.md"]).items():
            for key, row in rows.items():
                if key in written.get(header, {}):
                    assert row == written[header][key], f"README row {key!r} differs from benchmarks/{name}"
                    compared += 1
    assert compared >= 8  # the class table (3 sizes × 2 kinds of λ) and the slider's rows



# --- the README's shape, and the documents its depth moved to ------------------------------------

def test_the_readme_is_short_and_cites_the_paper_on_its_first_screen():
    assert len(README.splitlines()) <= 250
    first = "\n".join(README.splitlines()[:60])
    for must in ("arxiv.org/abs/2404.15737", "github.com/mklimasz/language-arithmetic", "```bibtex",
                 "@inproceedings", "Klimaszewski", "Andruszkiewicz", "Birch", "COLING 2025"):
        assert must in first, f"{must!r} is not in the README's first 60 lines"


def test_every_document_says_who_it_is_for_and_the_readme_links_it():
    for name, text in DOCS.items():
        opening = text.splitlines()[:4]
        assert any(line.startswith("*For ") for line in opening), f"docs/{name} does not open with who it is for"
        assert f"](docs/{name})" in README, f"the README does not link docs/{name}"


def _minus(text: str) -> str:
    return text.replace("−", "-")


def _shipped(name: str) -> dict:
    return json.loads((cli.bundle_path(None) / "results" / name).read_text(encoding="utf-8"))


def test_the_span_tables_are_what_the_tagging_report_prints():
    """docs/results.md's span-tagging tables, row for row, as ``python -m langarith.bundle.tagging
    --report`` prints them from the shipped results."""
    from langarith.bundle import tagging

    printed = tables(tagging.report(_shipped("libreoffice_spans.json")))
    compared = 0
    for header, rows in tables(DOCS["results.md"]).items():
        for key, row in rows.items():
            if key in printed.get(header, {}):
                assert row == printed[header][key], f"docs/results.md span row {key!r} is stale"
                compared += 1
    assert compared >= 35  # span counts (17), the premise (10), the merges (10)


def test_the_masked_lm_intervals_are_the_tables_procedure_and_lie_below_zero():
    """stats.bootstrap_halves on the shipped per-paragraph sums reproduces the masked-LM table
    (λ chosen on the first half, the losses on the second), and what the prose says of its
    intervals: every zero-shot merge's loss minus the better adapter's is below 0."""
    from langarith import stats

    res, texts = _shipped("results.json"), _shipped("mlm_texts.json")
    for target in res["zero_shot"]:
        t = texts[target]
        got = stats.bootstrap_halves(t["lambdas"], t["sums"], t["counts"])
        halves = res["mlm"][target]["halves"]
        assert got["best_lam"] == pytest.approx(halves["best_lam_first"])
        assert -got["test_at_best"] == pytest.approx(halves["second"]["merged"], abs=1e-5)
        assert got["gain_vs_better"]["ci95"][0] > 0, f"{target}: the merge's loss is not clearly lower"
        assert len(t["counts"]) == 40 and len(t["lambdas"]) == 21  # what the caption says


def _printed_reports(capsys) -> str:
    from langarith.bundle import report, tagging

    report.main([])
    out = capsys.readouterr().out + tagging.report(_shipped("libreoffice_spans.json"))
    lowres = _shipped("lowres.json")["languages"]  # variants measured but not shipped (cs, it)
    for lang in lowres.values():
        for point in lang["points"].values():
            g = point.get("mlm", {}).get("gain_vs_better")
            if g:
                out += "\n" + stats_format(g, 3)
    return _minus(out)


def stats_format(g: dict, digits: int) -> str:
    from langarith.stats import format_gain

    return format_gain(g, digits=digits)


INTERVAL = re.compile(r"[+\-−]\d+\.\d+ \[[+\-−]\d+\.\d+, [+\-−]\d+\.\d+\]")


def test_every_interval_in_the_prose_is_in_a_printed_table(capsys):
    """A gain with its interval written in prose (README, docs/results.md, docs/teaching.md) is one
    the reports print from the shipped files: a prose figure cannot drift from its table."""
    printed = _printed_reports(capsys)
    checked = 0
    for name, text in (("README.md", README), ("results.md", DOCS["results.md"]),
                       ("teaching.md", DOCS["teaching.md"])):
        prose = "\n".join(l for l in text.splitlines() if not l.startswith("|"))
        for figure in INTERVAL.findall(prose.replace("\n  ", " ")):
            assert _minus(figure) in printed, f"{name}: {figure} is in no printed table"
            checked += 1
    assert checked >= 30


def test_prose_figures_are_the_files_they_cite():
    """The timings, speeds and sizes the docs quote in prose, against the file each names."""
    stages = _shipped("results.json")["stages"]
    arch = DOCS["architecture.md"]
    for stage in ("corpus", "base", "head", "adapters", "task"):
        assert f"`{stage}` {stages[stage]['seconds']} s" in arch.replace("\n", " ")
    assert f"{stages['adapters']['seconds']:.0f} s of GPU time" in README
    assert stages["adapters"]["device"] == "cuda" and stages["corpus"]["device"] == "cpu"
    runs = [r for r in _shipped("lowres.json")["training"].values() if not r["resumed_at"]]
    rate = [r["steps"] * 16 * 128 / r["train_seconds"] for r in runs]
    assert f"processed {min(rate):.0f}–{max(rate):.0f} token positions a second" in arch.replace("\n", " ")
    bench = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    hosting = DOCS["hosting.md"]
    for quoted, source in (("0.232 ms", "0.232 ms"), ("879 MiB", "| after start | 879 MiB"),
                           ("888 MiB", "| after 20 interactions | 888 MiB"), ("peak 983 MiB", "983 MiB")):
        assert quoted in hosting and source in bench
    assert f"{stages['task']['trainable'] / 1e6:.2f} M topic task" in hosting
    slider = (ROOT / "benchmarks" / "RESULTS_slider.md").read_text(encoding="utf-8")
    perf = DOCS["performance.md"].replace("\n", " ")
    assert "| 0.000 s (0.000–0.103, n=30) |" in slider and "0.000 s median" in perf
    assert "| 0.055 s (0.022–0.064, n=4) |" in slider and "took 0.055 s" in perf
    for gone in ("424–534", "302 k", "8.6 s / p95 17.3", "1.16 GiB", "roughly 200 tokens/s",
                 "merge ≈ 1–6 ms", "`/fill_mask`)", "5 λ values"):
        assert not any(gone in t for t in [README, *DOCS.values()]), f"{gone!r} is back"
