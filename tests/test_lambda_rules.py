"""The λ rules (dev labels, the masked-LM minimum on unlabelled text, a fixed λ) and their paired
bootstrap, checked against direct computations; ``label_free_lambda`` on the tiny bundle and on
the shipped assets/bundle; the CLI's ``sweep --rule``; ``reproduce --rule mlm`` on the parquet
stand-ins."""

from __future__ import annotations

import gzip
import json
import random
import shutil
import subprocess
import sys
import os
from pathlib import Path

import numpy as np
import pytest

from langarith import lambda_rules as lr
from langarith import stats
from langarith.loading import Bundle

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "bundle"
GRID = [round(i / 10, 1) for i in range(11)]
MLM_GRID = [round(i / 20, 2) for i in range(21)]


# --- each rule against a direct computation on a hand-made curve -----------------------------


def _direct_nearest(lam, grid):
    """Plain Python: the nearest grid point; on a tie, the one closer to 0.5, then the smaller."""
    best = None
    for x in grid:
        key = (round(abs(x - lam), 9), round(abs(x - 0.5), 9), x)
        if best is None or key < best[0]:
            best = (key, x)
    return best[1]


def _direct_best(scores, grid, lower=False):
    """Plain Python: the best score's λ (lowest with ``lower``), ties closer to 0.5."""
    pick = min if lower else max
    b = pick(scores)
    tied = [x for s, x in zip(scores, grid) if abs(s - b) <= 1e-12]
    return min(tied, key=lambda x: (abs(x - 0.5), x))


def test_dev_rule_is_the_best_dev_score_ties_closer_to_half():
    dev = [50, 52, 55, 53, 54, 51, 55, 49, 48, 47, 46]  # 0.2 and 0.6 tie: 0.6 is closer to 0.5
    assert GRID[lr.choose_dev(dev, GRID)] == _direct_best(dev, GRID) == 0.6
    dev[2] = 56
    assert GRID[lr.choose_dev(dev, GRID)] == _direct_best(dev, GRID) == 0.2


@pytest.mark.parametrize("minimum", [0.25, 0.35, 0.7, 0.85, 0.95, 1.0, 0.0, 0.05])
def test_mlm_rule_is_the_unlabelled_minimum_rounded_to_the_task_grid(minimum):
    losses = [(x - minimum) ** 2 + 6.0 for x in MLM_GRID]  # a parabola with its minimum there
    got = GRID[lr.choose_mlm(losses, MLM_GRID, GRID)]
    assert got == _direct_nearest(_direct_best(losses, MLM_GRID, lower=True), GRID)
    expected = {0.25: 0.3, 0.35: 0.4, 0.7: 0.7, 0.85: 0.8, 0.95: 0.9, 1.0: 1.0, 0.0: 0.0, 0.05: 0.1}
    assert got == expected[minimum]  # halfway points go toward 0.5


def test_mlm_rule_ties_of_the_loss_and_a_coarser_grid():
    losses = [7.0] * 21
    losses[4] = losses[13] = 5.0  # λ 0.2 and 0.65 tie: 0.65 is closer to 0.5
    assert MLM_GRID[lr.choose_mlm(losses, MLM_GRID, MLM_GRID)] == _direct_best(losses, MLM_GRID, True) == 0.65
    assert GRID[lr.choose_mlm(losses, MLM_GRID, GRID)] == 0.6  # 0.65 → 0.6 (closer to 0.5 than 0.7)
    losses[14] = 4.9
    coarse = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # the low-resource sweeps' grid
    assert coarse[lr.choose_mlm(losses, MLM_GRID, coarse)] == _direct_nearest(0.7, coarse) == 0.6


def test_fixed_rule():
    assert GRID[lr.choose_fixed(GRID)] == 0.5
    assert GRID[lr.choose_fixed(GRID, 0.45)] == 0.5  # halfway between 0.4 and 0.5: toward 0.5
    assert GRID[lr.choose_fixed(GRID, 0.83)] == 0.8
    assert [0.0, 0.2, 0.4, 0.6, 0.8, 1.0][lr.choose_fixed([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])] == 0.4


# --- the bootstrap of a rule difference against a plain loop with the same draws ----------------


def _toy(seed=1, n_dev=40, n_test=30, n_texts=12):
    rng = np.random.default_rng(seed)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    p = np.array([0.55, 0.62, 0.66, 0.6, 0.58])[:, None]
    dev_ok = rng.random((5, n_dev)) < p
    test_ok = rng.random((5, n_test)) < p
    mgrid = [round(i / 8, 3) for i in range(9)]
    tokens = rng.integers(5, 30, n_texts).astype(float)
    per_token = 6 + (np.asarray(mgrid)[:, None] - rng.uniform(0.2, 0.5, n_texts)[None, :]) ** 2 \
        + rng.normal(0, 0.05, (9, n_texts))
    return grid, dev_ok, test_ok, mgrid, per_token * tokens[None, :], tokens


def test_bootstrap_rules_matches_a_plain_loop_with_the_same_draws():
    grid, dev_ok, test_ok, mgrid, sums, tokens = _toy()
    R, seed = 300, 7
    got = lr.bootstrap_rules(grid, stats.accuracy_counts(dev_ok), stats.accuracy_counts(test_ok), mgrid,
                             stats.loss_counts(sums, np.broadcast_to(tokens, sums.shape)),
                             n_resamples=R, seed=seed)
    # The same draws as stats.resample_counts makes them: dev items, test items, then texts.
    rng = np.random.default_rng(seed)
    n_dev, n_test, n_texts = dev_ok.shape[1], test_ok.shape[1], sums.shape[1]
    idx_dev = rng.integers(0, n_dev, size=(R, n_dev))
    idx_test = rng.integers(0, n_test, size=(R, n_test))
    idx_text = rng.integers(0, n_texts, size=(R, n_texts))
    diffs = {"mlm_minus_dev": [], "mlm_minus_fixed": [], "dev_minus_fixed": []}
    for r in range(R):
        dev_acc = [sum(dev_ok[l][i] for i in idx_dev[r]) / n_dev for l in range(len(grid))]
        test_acc = [100 * sum(test_ok[l][i] for i in idx_test[r]) / n_test for l in range(len(grid))]
        loss = [sum(sums[m][i] for i in idx_text[r]) / sum(tokens[i] for i in idx_text[r])
                for m in range(len(mgrid))]
        lam = {"dev": _direct_best(dev_acc, grid),
               "mlm": _direct_nearest(_direct_best(loss, mgrid, lower=True), grid),
               "fixed": 0.5}
        score = {k: test_acc[grid.index(v)] for k, v in lam.items()}
        diffs["mlm_minus_dev"].append(score["mlm"] - score["dev"])
        diffs["mlm_minus_fixed"].append(score["mlm"] - score["fixed"])
        diffs["dev_minus_fixed"].append(score["dev"] - score["fixed"])
    for key, d in diffs.items():
        lo, hi = np.percentile(d, [2.5, 97.5])
        assert got[key]["ci95"] == pytest.approx([lo, hi], abs=1e-9), key
        assert got[key]["p_positive"] == pytest.approx(np.mean(np.asarray(d) > 0)), key
    # point estimates: each rule on the full data
    full_test = [100 * test_ok[l].mean() for l in range(len(grid))]
    lam_dev = _direct_best([dev_ok[l].mean() for l in range(len(grid))], grid)
    lam_mlm = _direct_nearest(_direct_best(list(sums.sum(1) / tokens.sum()), mgrid, lower=True), grid)
    assert got["rules"]["dev"]["lam"] == lam_dev and got["rules"]["mlm"]["lam"] == lam_mlm
    assert got["mlm_minus_dev"]["points"] == pytest.approx(full_test[grid.index(lam_mlm)]
                                                           - full_test[grid.index(lam_dev)])
    assert got["rules"]["fixed"]["test"] == pytest.approx(full_test[2])
    assert (got["n_dev"], got["n_test"], got["n_texts"], got["texts_redrawn"]) == (40, 30, 12, True)
    # the dev rule's choice is the sweep's (same draws as stats.bootstrap_sweep)
    sweep = stats.bootstrap_sweep(grid, stats.accuracy_counts(dev_ok), stats.accuracy_counts(test_ok),
                                  n_resamples=R, seed=seed)
    assert sweep["best_lam"] == got["rules"]["dev"]["lam"]
    assert sweep["lam_chosen"] == got["rules"]["dev"]["lam_chosen"]


def test_bootstrap_rules_without_texts_holds_the_mlm_choice():
    grid, dev_ok, test_ok, *_ = _toy()
    got = lr.bootstrap_rules(grid, stats.accuracy_counts(dev_ok), stats.accuracy_counts(test_ok),
                             mlm_lam=0.3, n_resamples=200)
    assert got["rules"]["mlm"]["lam"] == 0.25 and got["rules"]["mlm"]["lam_chosen"]["0.25"] == 1.0
    assert got["texts_redrawn"] is False and got["n_texts"] is None
    with pytest.raises(ValueError, match="mlm rule needs"):
        lr.bootstrap_rules(grid, stats.accuracy_counts(dev_ok), stats.accuracy_counts(test_ok))


# --- mlm never reads a label --------------------------------------------------------------------


def test_mlm_choice_is_the_same_with_corrupted_labels():
    grid, dev_ok, test_ok, mgrid, sums, tokens = _toy()
    mc = stats.loss_counts(sums, np.broadcast_to(tokens, sums.shape))
    rng = np.random.default_rng(99)
    a = lr.bootstrap_rules(grid, stats.accuracy_counts(dev_ok), stats.accuracy_counts(test_ok), mgrid, mc)
    b = lr.bootstrap_rules(grid, stats.accuracy_counts(rng.random(dev_ok.shape) < 0.5),
                           stats.accuracy_counts(test_ok), mgrid, mc)
    assert a["rules"]["mlm"]["lam"] == b["rules"]["mlm"]["lam"]
    assert a["rules"]["mlm"]["lam_chosen"] == b["rules"]["mlm"]["lam_chosen"]
    assert a["rules"]["dev"]["lam_chosen"] != b["rules"]["dev"]["lam_chosen"]  # the corruption bit


def _corrupt_labels(root: Path, task: str, seed: int = 0) -> None:
    """Reassign every eval item's label at random (the items, texts and keys stay)."""
    rng = random.Random(seed)
    labels = Bundle.load(root).task(task).labels
    for f in (root / "eval" / task).glob("*.jsonl*"):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            rows = [json.loads(x) for x in fh if x.strip()]
        for r in rows:
            r["label"] = rng.choice([x for x in labels if x != r["label"]])
        with opener(f, "wt", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))


def _rig_shipped_dev_scores(root: Path, task: str, away_from: float) -> None:
    """Rewrite every shipped score that labels produced (each sweep's dev and test metrics per λ,
    its best λ) so that the dev rule's best λ is the grid point farthest from ``away_from``."""
    path = root / "results" / "results.json"
    res = json.loads(path.read_text())
    for setting in ("zero_shot", "enhancement", "low_resource"):
        for sweep in res.get(setting, {}).values():
            if sweep.get("task") != task:
                continue
            best = max((p["lam"] for p in sweep["points"]), key=lambda x: abs(x - away_from))
            for p in sweep["points"]:
                for split in ("dev", "test"):
                    p[split] = {**p[split], "accuracy": 0.9 if p["lam"] == best else 0.1}
            sweep["best_lam"] = best
            sweep.pop("bootstrap", None)
    path.write_text(json.dumps(res))


def test_mlm_rule_on_the_bundle_ignores_the_labels(tiny_bundle, tmp_path):
    """Every labelled input the rules could read is changed (the eval files' labels, which the
    per-item predictions are scored against, and the shipped sweep's dev and test scores and
    best λ): the mlm rule picks the same λ, while the dev rule moves to the other end."""
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, copy)
    task = Bundle.load(copy).default_task
    before = lr.rule_data(lr.Shipped(Bundle.load(copy)), "pt", None, task)
    mlm_before = before.grid[lr.choose("mlm", before)]
    _corrupt_labels(copy, task)
    _rig_shipped_dev_scores(copy, task, away_from=mlm_before)
    after = lr.rule_data(lr.Shipped(Bundle.load(copy)), "pt", None, task)
    dev_after = after.grid[lr.choose("dev", after)]
    assert dev_after != mlm_before  # the corruption bit: a rule that read the labels moves
    assert after.grid[lr.choose("mlm", after)] == mlm_before
    assert before.mlm_lam_first == after.mlm_lam_first
    page = lr.label_free_lambda(lr.Shipped(Bundle.load(copy)), "pt", None, task)
    assert page["ok"] and page["lam"] == mlm_before  # the page's control: the same λ


def test_reproduce_unlabelled_texts_never_use_labels():
    from langarith import reproduce

    ner = [{"tokens": ["Lisboa", "é", "bonita"], "tags": [5, 0, 0]}, {"tokens": ["Olá"], "tags": [0]}]
    bad = [{**r, "tags": [1] * len(r["tags"])} for r in ner]
    spec = {"task": "ner"}
    assert reproduce.unlabelled_texts(spec, ner) == reproduce.unlabelled_texts(spec, bad) \
        == ["Lisboa é bonita", "Olá"]
    qa = [{"id": "1", "context": "C one.", "question": "Q?", "answers": ["one"]},
          {"id": "2", "context": "C one.", "question": "Q2?", "answers": ["C"]},
          {"id": "3", "context": "C two.", "question": "Q3?", "answers": []}]
    assert reproduce.unlabelled_texts({"task": "qa"}, qa) == ["C one.", "C two."]


# --- label_free_lambda: the page's call ----------------------------------------------------------


def test_label_free_lambda_on_the_tiny_bundle(stack):
    r = lr.label_free_lambda(stack, "pt")
    assert r["ok"] and r["lam"] in (0.0, 0.5, 1.0) and r["dev_lam"] in (0.0, 0.5, 1.0)
    from langarith import results

    summary = results.sweep_summary(stack, "pt")
    assert r["dev_lam"] == summary["best_lam"]
    assert r["lam"] == [0.0, 0.5, 1.0][lr.nearest_on_grid(
        results.mlm_summary(stack, "pt")["halves"]["best_lam_first"], [0.0, 0.5, 1.0])]
    acc = {p["lam"]: 100 * p["test"]["accuracy"] for p in summary["points"]}
    assert r["test"]["mlm"] == pytest.approx(acc[r["lam"]]) and r["test"]["dev"] == pytest.approx(acc[r["dev_lam"]])
    g = r["mlm_minus_dev"]
    assert g["points"] == pytest.approx(acc[r["lam"]] - acc[r["dev_lam"]])
    assert g["ci95"][0] <= g["points"] <= g["ci95"][1] or g["ci95"][0] == g["ci95"][1]
    assert "\n" not in r["message"] and "Label-free λ" in r["message"]
    assert r["texts_redrawn"] is False and "mlm_texts" in r["note"]  # the tiny bundle has no sums
    # no curve, no sweep, a bad task, a bad λ: a message, no exception
    for args, kw, words in ((("en",), {}, "no precomputed"), (("de",), {}, "no precomputed"),
                            (("pt", "de"), {}, "with source de"), (("pt",), {"task_name": "nope"}, "unknown task"),
                            (("pt",), {"task_name": "spans"}, "no precomputed spans sweep"),
                            (("pt",), {"fixed_lam": float("nan")}, "finite")):
        bad = lr.label_free_lambda(stack, *args, **kw)
        assert bad["ok"] is False and bad["lam"] is None and words in bad["message"], bad


def test_the_pages_label_free_control_on_every_target_of_the_shipped_bundle(shipped):
    """Issue 22: "use the label-free λ" beside the slider moves λ to the ``mlm`` rule's λ, the one
    ``sweep --rule mlm`` prints, on every target with a sweep, for both tasks; elsewhere λ stays
    and the line says why."""
    from langarith.page import header

    res = json.loads((ASSETS / "results" / "results.json").read_text())
    swept = [t for s in ("zero_shot", "enhancement", "low_resource") for t in res[s]]
    assert len(swept) >= 18
    for task in ("libreoffice", "libreoffice_spans"):
        for target in shipped.bundle.languages:
            lam, line = header.on_label_free(shipped, target, None, task)
            if target in swept:
                rule = lr.sweep_rule(shipped, target, None, task, "mlm")["rule"]
                assert lam == rule["lam"], (target, task)
                assert f"Label-free λ = {lam:g}" in line and "dev-chosen λ" in line and "n = " in line
            else:  # a source language: no sweep of its own
                assert lam == {"__type__": "update"} and "no precomputed" in line, (target, line)
    lam, line = header.on_label_free(shipped, "pt", "fr", "libreoffice")
    assert lam == {"__type__": "update"} and "with source fr" in line


def test_mlm_texts_command_and_the_redrawn_paragraphs(tiny_bundle, tmp_path):
    """``python -m langarith.mlm_texts`` writes per-paragraph sums that reproduce the shipped
    curve; with them the bootstrap redraws the paragraphs."""
    from langarith import mlm_texts
    from langarith.bundle.tiny import TEXTS

    copy = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, copy)
    (copy / "eval" / "mlm").mkdir(parents=True, exist_ok=True)
    (copy / "eval" / "mlm" / "pt.txt").write_text("\n".join(TEXTS["pt"]) + "\n", encoding="utf-8")
    assert mlm_texts.main(["--bundle", str(copy), "--targets", "pt"]) == 0
    shipped = json.loads((copy / "results" / "mlm_texts.json").read_text())["pt"]
    assert shipped["lambdas"] == [0.0, 0.5, 1.0] and len(shipped["counts"]) == len(TEXTS["pt"])
    r = lr.label_free_lambda(lr.Shipped(Bundle.load(copy)), "pt")
    assert r["ok"] and r["texts_redrawn"] is True and r["note"] is None
    assert r["n_texts"] == len(stats.split_halves(len(TEXTS["pt"]))[0])
    summary = json.loads((copy / "results" / "results.json").read_text())["mlm"]["pt"]
    assert r["mlm_lam_unrounded"] == summary["halves"]["best_lam_first"]
    # a curve that no longer matches the shipped one is refused
    (copy / "eval" / "mlm" / "pt.txt").write_text("\n".join(TEXTS["en"]) + "\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="differs from the shipped"):
        mlm_texts.main(["--bundle", str(copy), "--targets", "pt"])


@pytest.fixture(scope="module")
def shipped():
    return lr.Shipped(Bundle.load(ASSETS))


@pytest.mark.parametrize("task", ["libreoffice", "libreoffice_spans"])
@pytest.mark.parametrize("target", ["pt", "gl", "sl", "nl", "sv", "nl@100k", "nl@500k"])
def test_label_free_lambda_on_the_shipped_bundle(shipped, target, task):
    r = lr.label_free_lambda(shipped, target, None, task)
    assert r["ok"], r["message"]
    res = json.loads((ASSETS / "results" / "results.json").read_text())
    spans = json.loads((ASSETS / "results" / "libreoffice_spans.json").read_text())
    src = res if task == "libreoffice" else spans
    sweep = next(src[s][target] for s in ("zero_shot", "enhancement", "low_resource") if target in src.get(s, {}))
    grid = [p["lam"] for p in sweep["points"]]
    assert r["dev_lam"] == sweep["best_lam"]  # the dev rule is the sweep's own choice
    mlm = res["mlm"][target]
    assert r["mlm_lam_unrounded"] == mlm["halves"]["best_lam_first"]  # chosen as the held-out view does
    assert r["lam"] == _direct_nearest(mlm["halves"]["best_lam_first"], grid)
    key = "accuracy" if task == "libreoffice" else "f1"
    test = {p["lam"]: p["test"][key] * (100 if key == "accuracy" else 1) for p in sweep["points"]}
    assert r["test"]["mlm"] == pytest.approx(test[r["lam"]]) and r["test"]["dev"] == pytest.approx(test[r["dev_lam"]])
    assert r["test"]["fixed"] == pytest.approx(test[_direct_nearest(0.5, grid)])
    assert r["mlm_minus_dev"]["points"] == pytest.approx(test[r["lam"]] - test[r["dev_lam"]])
    assert r["n_test"] == sweep["n_test"] and "\n" not in r["message"]
    if r["mlm_minus_dev"]["ci95"] is not None:  # a paired interval around a gain it was drawn for
        lo, hi = r["mlm_minus_dev"]["ci95"]
        assert lo <= hi and lo - 1e-9 <= r["mlm_minus_dev"]["points"] <= hi + 1e-9 or lo == hi
    else:  # the low-resource tagging sweeps ship no per-sentence counts
        assert task == "libreoffice_spans" and "@" in target and "no interval" in r["message"]


@pytest.mark.parametrize("target", ["pt", "gl", "nl@100k"])
def test_label_free_lambda_on_the_shipped_bundle_without_per_text_sums(shipped, target, monkeypatch):
    """Without ``mlm_texts.json`` (an older bundle, a hub profile) the mlm rule takes the shipped
    curve's first-half minimum instead: the same λ, and the message says the paragraphs are not
    redrawn."""
    from langarith import results

    with_texts = lr.label_free_lambda(shipped, target, None, "libreoffice")
    measured = results.measured
    monkeypatch.setattr(results, "measured",
                        lambda stack, name: None if name == "mlm_texts" else measured(stack, name))
    r = lr.label_free_lambda(shipped, target, None, "libreoffice")
    assert with_texts["texts_redrawn"] is True and r["ok"] and r["texts_redrawn"] is False
    summary = json.loads((ASSETS / "results" / "results.json").read_text())["mlm"][target]
    assert r["mlm_lam_unrounded"] == summary["halves"]["best_lam_first"]
    assert r["lam"] == with_texts["lam"] and r["dev_lam"] == with_texts["dev_lam"]
    assert "mlm_texts" in r["note"]


def test_label_free_lambda_refuses_what_the_shipped_bundle_lacks(shipped):
    for target, words in (("en", "no precomputed"), ("fr", "no precomputed"), ("xx", "no precomputed")):
        r = lr.label_free_lambda(shipped, target)
        assert r["ok"] is False and words in r["message"]
    r = lr.label_free_lambda(shipped, "pt", "fr")
    assert r["ok"] is False and "with source fr" in r["message"]


def test_per_text_sums_reproduce_the_shipped_first_half_choice(shipped):
    """Where the bundle ships per-paragraph sums, the mlm rule chosen from them is the held-out
    view's first-half λ, and the whole curve's losses are the shipped ones."""
    texts = json.loads((ASSETS / "results" / "mlm_texts.json").read_text())
    res = json.loads((ASSETS / "results" / "results.json").read_text())
    assert set(texts) >= {"pt", "pt-br"}
    for t, v in texts.items():
        s, c = np.asarray(v["sums"]), np.asarray(v["counts"], float)
        whole = s.sum(1) / c.sum()
        assert whole == pytest.approx([p["loss"] for p in res["mlm"][t]["points"]], abs=2e-3), t
        grid, lam, mc = lr.unlabelled_half(shipped, t, v["a"], v["b"])
        assert mc is not None and mc.shape == (len(grid), len(stats.split_halves(len(c))[0]), 2)
        assert lam == res["mlm"][t]["halves"]["best_lam_first"], t


def test_the_report_prints_the_three_rules_for_both_tasks():
    from langarith.bundle import report

    text = report.lambda_rules_section(ASSETS)
    for task in ("Task libreoffice (", "Task libreoffice_spans ("):
        assert task in text
    for t in ("pt", "pt-br", "gl", "ca", "sl", "es", "nl", "sv", "pl", "ru"):
        assert text.count(f"| {t} | ") == 2, t
    assert "mlm − dev [95 % CI]" in text


# --- the command line ---------------------------------------------------------------------------


def _cli(*args, bundle=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    env.pop("LANGARITH_BUNDLE", None)
    cmd = [sys.executable, "-m", "langarith", *args] + (["--bundle", str(bundle)] if bundle else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)


def test_cli_sweep_rule_mlm_json(stack, tiny_bundle):
    r = _cli("sweep", "--target", "pt", "--points", "3", "--rule", "mlm", "--json", bundle=tiny_bundle)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # pure JSON on stdout
    free = lr.label_free_lambda(stack, "pt")
    assert out["rule"]["name"] == "mlm" and out["rule"]["lam"] == free["lam"]
    # the headline follows the rule: its λ and gains there; the dev rule's headline beside it
    assert out["chosen_by"] == "mlm" and out["best_lam"] == free["lam"]
    assert out["dev_rule"]["best_lam"] == free["dev_lam"]
    test = {p["lam"]: 100 * p["test"]["accuracy"] for p in out["points"]}
    assert out["test_at_best"] == pytest.approx(test[free["lam"]])
    assert out["gain_vs_a"]["points"] == pytest.approx(test[free["lam"]] - test[1.0])
    assert out["gain_vs_better"]["points"] == pytest.approx(test[free["lam"]] - max(test[1.0], test[0.0]))
    assert set(out["rules"]["rules"]) == {"dev", "mlm", "entropy", "fixed"}
    assert out["rules"]["mlm_minus_dev"]["points"] == pytest.approx(free["mlm_minus_dev"]["points"])
    r = _cli("sweep", "--target", "pt", "--points", "3", "--rule", "fixed", "--fixed-lam", "1",
             "--json", bundle=tiny_bundle)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rule"]["lam"] == 1.0
    r = _cli("sweep", "--target", "pt", "--points", "3", "--rule", "fixed", "--fixed-lam", "nan",
             bundle=tiny_bundle)
    assert r.returncode == 2 and "finite" in r.stderr and r.stdout == ""
    r = _cli("sweep", "--target", "pt", "--rule", "best", bundle=tiny_bundle)
    assert r.returncode == 2 and "invalid choice" in r.stderr


# --- reproduce --rule mlm on the parquet stand-ins ---------------------------------------------


@pytest.fixture(scope="module")
def rule_cache(hub_cache):
    from hub_fixtures import build_dataset_cache

    build_dataset_cache(hub_cache, wikiann={"de": {"validation": 12, "test": 10}}, xquad={"de": 20})
    return hub_cache


def _profile_stack(name, cache):
    from langarith import profiles
    from langarith.model import LanguageStack

    return LanguageStack(profiles.load_profile(name, cache_dir=cache), device="cpu")


def test_reproduce_rule_mlm_reports_three_rules(rule_cache, tmp_path, monkeypatch):
    from langarith import reproduce

    stack = _profile_stack("mbert-ner", rule_cache)
    kw = dict(lambdas=[0.0, 0.5, 1.0], cache_dir=rule_cache, stack=stack, rule="mlm", log=lambda m: None)
    res = reproduce.run("mbert-ner", ["de"], out=tmp_path / "a", **kw)
    e = res["full"]["zero_shot"]["de"]
    rules = e["rules"]
    assert rules["rule"] == "mlm" and set(rules["rules"]) == {"dev", "mlm", "fixed"}
    assert rules["rules"]["dev"]["lam"] == e["best_lam"]  # the dev rule is the sweep's choice
    assert rules["rules"]["fixed"]["lam"] == 0.5 and rules["n_texts"] == e["n_dev"] == 12
    assert rules["texts_redrawn"] is True
    losses = [p["loss"] for p in rules["mlm_curve"]["points"]]
    assert rules["rules"]["mlm"]["lam"] == _direct_best(losses, [0.0, 0.5, 1.0], lower=True)
    md = (tmp_path / "a" / "results.md").read_text()
    assert "## λ rules" in md and "| de |" in md.split("## λ rules")[1]
    # a finished target without the rules is not taken for one with them (and the reverse)
    assert json.loads((tmp_path / "a" / "targets" / "de.json").read_text())["key"]["rule"] == "mlm"

    # the same run with every label corrupted: the mlm rule picks exactly as before
    real = reproduce.ner_split

    def corrupted(*a, **k):
        return [{**r, "tags": [3] * len(r["tags"])} for r in real(*a, **k)]

    monkeypatch.setattr(reproduce, "ner_split", corrupted)
    f = reproduce.run("mbert-ner", ["de"], out=tmp_path / "b", **kw)["full"]["zero_shot"]["de"]["rules"]
    assert f["rules"]["mlm"]["lam_chosen"] == rules["rules"]["mlm"]["lam_chosen"]
    assert f["mlm_curve"] == rules["mlm_curve"]
    assert f["rules"]["dev"]["lam_chosen"] != rules["rules"]["dev"]["lam_chosen"] \
        or f["rules"]["dev"]["test"] != rules["rules"]["dev"]["test"]  # the corruption bit


def test_reproduce_rule_mlm_on_xquad_contexts(rule_cache, tmp_path):
    from langarith import reproduce

    stack = _profile_stack("xlmr", rule_cache)
    res = reproduce.run("xlmr", ["de"], {"de": "en"}, [0.0, 1.0], limit=6, out=tmp_path,
                        cache_dir=rule_cache, stack=stack, setting="enhancement", rule="mlm",
                        log=lambda m: None)
    e = res["full"]["enhancement"]["de"]
    dev = reproduce.qa_splits(reproduce.spec_of("xlmr"), "de", rule_cache, limit=6)["dev"]
    assert e["rules"]["n_texts"] == len({r["context"] for r in dev}) and e["rules"]["n_test"] == 6


def test_reproduce_bad_rule_is_refused(tmp_path, monkeypatch):
    from langarith import cli, reproduce

    with pytest.raises(reproduce.ReproduceError, match="--fixed-lam"):
        reproduce.run("mbert-ner", ["de"], lambdas=[0.0, 1.0], out=tmp_path, rule="fixed", fixed_lam=2.0)
    with pytest.raises(reproduce.ReproduceError, match="--rule"):
        reproduce.run("mbert-ner", ["de"], lambdas=[0.0, 1.0], out=tmp_path, rule="best")
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--profile", "mbert-ner", "--rule", "best"])
    assert e.value.code == 2
    assert not list(tmp_path.iterdir())


# --- the entropy rule (issue 28): the task head's uncertainty on unlabelled dev texts -----------


def test_entropy_of_distributions_against_the_formula():
    import math

    got = stats.entropy([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    want = [math.log(2), 0.0, -sum(p * math.log(p) for p in (0.2, 0.3, 0.5))]
    assert got == pytest.approx(want)


def test_entropy_rule_is_the_lowest_mean_entropy_pooled_over_predictions():
    # three items, one of them a sentence of 4 words: pooled per prediction, not per item
    sums = np.array([[0.9, 0.9, 4.0], [0.5, 0.6, 3.6], [0.2, 0.3, 4.4], [0.4, 0.4, 2.0], [1.0, 1.0, 4.0]])
    counts = np.array([1, 1, 4])
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    direct = [sum(row) / counts.sum() for row in sums.tolist()]
    ec = stats.loss_counts(sums, np.broadcast_to(counts, sums.shape))
    assert grid[lr.choose_entropy(ec, grid)] == _direct_best(direct, grid, lower=True) == 0.75
    sums[1] = sums[3] = [0.3, 0.3, 2.2]  # 0.25 and 0.75 tie: 0.75 is no closer to 0.5 than 0.25
    ec = stats.loss_counts(sums, np.broadcast_to(counts, sums.shape))
    assert grid[lr.choose_entropy(ec, grid)] == _direct_best([sum(r) / 6 for r in sums.tolist()], grid, True) == 0.25


def test_bootstrap_re_chooses_the_entropy_lambda_on_the_redrawn_dev_texts():
    grid, dev_ok, test_ok, mgrid, sums, tokens = _toy()
    rng0 = np.random.default_rng(3)
    ent = 1.0 + 0.05 * (np.asarray(grid)[:, None] - rng0.uniform(0.2, 0.9, dev_ok.shape[1])[None, :]) ** 2 \
        + rng0.normal(0, 0.05, (len(grid), dev_ok.shape[1]))  # a shallow minimum: resamples disagree
    ec = stats.loss_counts(ent, np.ones_like(ent))
    R, seed = 300, 7
    mc = stats.loss_counts(sums, np.broadcast_to(tokens, sums.shape))
    got = lr.bootstrap_rules(grid, stats.accuracy_counts(dev_ok), stats.accuracy_counts(test_ok), mgrid, mc,
                             entropy_counts=ec, n_resamples=R, seed=seed)
    without = lr.bootstrap_rules(grid, stats.accuracy_counts(dev_ok), stats.accuracy_counts(test_ok), mgrid, mc,
                                 n_resamples=R, seed=seed)
    for key in ("mlm_minus_dev", "mlm_minus_fixed", "dev_minus_fixed"):  # the other rules' draws unchanged
        assert got[key] == without[key]
    rng = np.random.default_rng(seed)
    n_dev, n_test = dev_ok.shape[1], test_ok.shape[1]
    idx_dev = rng.integers(0, n_dev, size=(R, n_dev))  # the dev draw: its texts are the entropy's
    idx_test = rng.integers(0, n_test, size=(R, n_test))
    idx_text = rng.integers(0, sums.shape[1], size=(R, sums.shape[1]))
    diffs = {"entropy_minus_dev": [], "entropy_minus_mlm": [], "entropy_minus_fixed": []}
    for r in range(R):
        dev_acc = [sum(dev_ok[l][i] for i in idx_dev[r]) / n_dev for l in range(len(grid))]
        test_acc = [100 * sum(test_ok[l][i] for i in idx_test[r]) / n_test for l in range(len(grid))]
        loss = [sum(sums[m][i] for i in idx_text[r]) / sum(tokens[i] for i in idx_text[r])
                for m in range(len(mgrid))]
        mean_ent = [sum(ent[l][i] for i in idx_dev[r]) / n_dev for l in range(len(grid))]
        lam = {"dev": _direct_best(dev_acc, grid), "fixed": 0.5,
               "mlm": _direct_nearest(_direct_best(loss, mgrid, lower=True), grid),
               "entropy": _direct_best(mean_ent, grid, lower=True)}
        score = {k: test_acc[grid.index(v)] for k, v in lam.items()}
        for other in ("dev", "mlm", "fixed"):
            diffs[f"entropy_minus_{other}"].append(score["entropy"] - score[other])
    for key, d in diffs.items():
        assert got[key]["ci95"] == pytest.approx(np.percentile(d, [2.5, 97.5]), abs=1e-9), key
        assert got[key]["p_positive"] == pytest.approx(np.mean(np.asarray(d) > 0)), key
    assert got["rules"]["entropy"]["lam"] == _direct_best(list(ent.mean(1)), grid, lower=True)
    assert len(set(got["rules"]["entropy"]["lam_chosen"].values()) - {0.0}) > 1  # re-chosen, not held


def test_head_entropies_against_the_probabilities_and_blind_to_labels(stack):
    import torch

    from langarith import head_entropy, tasks

    task = stack.bundle.task(None)
    rows, _ = head_entropy.dev_items(stack, "pt", task)
    got = head_entropy.entropies(stack, rows, "en", "es", [0.0, 0.5, 1.0], task)
    p = tasks.classify(stack, [rows[0]["text"]], {"en": 0.5, "es": 0.5}, task.name)[0].double()
    assert got["sums"][1][0] == pytest.approx(float(-(p * p.log()).sum()), abs=1e-4)
    assert got["counts"] == [1] * len(rows)
    flipped = [{**r, "label": task.labels[(task.labels.index(r["label"]) + 1) % len(task.labels)]}
               for r in rows]
    assert head_entropy.entropies(stack, flipped, "en", "es", [0.0, 0.5, 1.0], task) == got


def test_entropy_rule_on_the_bundle_ignores_the_labels(tiny_bundle, tmp_path):
    """As for mlm: every labelled input changed, the entropy rule (and the page's control set to
    it) picks the same λ while the dev rule moves."""
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, copy)
    task = Bundle.load(copy).default_task
    before = lr.rule_data(lr.Shipped(Bundle.load(copy)), "pt", None, task)
    assert before.entropy_counts is not None  # the tiny build writes results/head_entropy.json
    ent_before = before.grid[lr.choose("entropy", before)]
    _corrupt_labels(copy, task)
    _rig_shipped_dev_scores(copy, task, away_from=ent_before)
    after = lr.rule_data(lr.Shipped(Bundle.load(copy)), "pt", None, task)
    assert after.grid[lr.choose("dev", after)] != ent_before
    assert after.grid[lr.choose("entropy", after)] == ent_before
    page = lr.label_free_lambda(lr.Shipped(Bundle.load(copy)), "pt", None, task, rule="entropy")
    assert page["ok"] and page["lam"] == ent_before and "entropy rule" in page["message"]


def test_reproduce_rule_entropy_on_wikiann_reads_the_tokens_only(rule_cache, tmp_path, monkeypatch):
    from langarith import ner, reproduce

    stack = _profile_stack("mbert-ner", rule_cache)
    kw = dict(lambdas=[0.0, 0.5, 1.0], cache_dir=rule_cache, stack=stack, rule="entropy", log=lambda m: None)
    e = reproduce.run("mbert-ner", ["de"], out=tmp_path / "a", **kw)["full"]["zero_shot"]["de"]
    rules = e["rules"]
    assert set(rules["rules"]) == {"dev", "mlm", "entropy", "fixed"} and "entropy_minus_dev" in rules
    dev = reproduce.load_data(reproduce.spec_of("mbert-ner"), "de", rule_cache)["dev"]
    direct = []
    for lam in (0.0, 0.5, 1.0):  # the pooled tag entropy of the dev words, computed here
        got = ner.word_entropies(stack, [r["tokens"] for r in dev], {e["a"]: lam, e["b"]: 1 - lam}, "ner",
                                 max_tokens=512)
        direct.append(sum(h for h, _ in got) / sum(n for _, n in got))
    assert rules["rules"]["entropy"]["lam"] == _direct_best(direct, [0.0, 0.5, 1.0], lower=True)
    real = reproduce.ner_split
    monkeypatch.setattr(reproduce, "ner_split",
                        lambda *a, **k: [{**r, "tags": [3] * len(r["tags"])} for r in real(*a, **k)])
    bad = reproduce.run("mbert-ner", ["de"], out=tmp_path / "b", **kw)["full"]["zero_shot"]["de"]["rules"]
    assert bad["rules"]["entropy"]["lam_chosen"] == rules["rules"]["entropy"]["lam_chosen"]


def test_sweep_rule_entropy_json_puts_the_headline_at_its_lambda(tiny_bundle):
    r = _cli("sweep", "--target", "pt", "--points", "3", "--rule", "entropy", "--json", bundle=tiny_bundle)
    out = json.loads(r.stdout)
    assert out["chosen_by"] == "entropy" and out["best_lam"] == out["rule"]["lam"]
    assert set(out["rules"]["rules"]) == {"dev", "mlm", "entropy", "fixed"}


def test_the_pages_label_free_control_names_the_rule_it_used(stack):
    from langarith.page import header

    for rule in lr.LABEL_FREE:
        want = lr.label_free_lambda(stack, "pt", "es", None, rule=rule)
        lam, note = header.on_label_free(stack, "pt", "es", None, rule)
        assert want["ok"] and lam == want["lam"] and note == want["message"]
        assert f"({rule} rule:" in note
    with pytest.raises(Exception, match="unknown label-free rule"):
        lr.label_free_lambda(stack, "pt", "es", None, rule="dev")
