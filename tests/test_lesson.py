"""The lesson on the page: the paired bootstrap, where the merge matters, the masked-LM curves.

Each statistic is checked against an independent computation: a plain-Python loop for the
bootstrap, a direct count over items for the flips, the library's own masked-LM head for the loss.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from langarith import results, stats, tasks
from langarith.page import flips, mlm, sweep
from langarith.loading import InputError

# --- the paired bootstrap -------------------------------------------------------------------


LAMS = [0.0, 0.5, 1.0]
DEV = [[1, 0, 1, 0, 1, 0], [1, 1, 1, 0, 1, 0], [0, 1, 0, 0, 1, 1]]  # rows: λ = 0 (B), 0.5, 1 (A)
TEST = [[1, 0, 0, 1, 0], [1, 1, 0, 1, 0], [0, 1, 0, 0, 1]]


def _loop_bootstrap(lams, dev, test, n_resamples, seed):
    """The procedure written out item by item, with the same draws as ``resample_counts``."""
    rng = np.random.default_rng(seed)
    idx_dev = rng.integers(0, len(dev[0]), size=(n_resamples, len(dev[0])))
    idx_test = rng.integers(0, len(test[0]), size=(n_resamples, len(test[0])))
    gains = {"a": [], "b": [], "better": []}
    for r in range(n_resamples):
        dev_acc = [sum(row[i] for i in idx_dev[r]) / len(idx_dev[r]) for row in dev]
        best = max(dev_acc)
        chosen = min((j for j, v in enumerate(dev_acc) if abs(v - best) < 1e-12),
                     key=lambda j: abs(lams[j] - 0.5))
        acc = [100 * sum(row[i] for i in idx_test[r]) / len(idx_test[r]) for row in test]
        m, a, b = acc[chosen], acc[lams.index(1.0)], acc[lams.index(0.0)]
        gains["a"].append(m - a)
        gains["b"].append(m - b)
        gains["better"].append(m - max(a, b))
    return gains


def test_bootstrap_matches_a_hand_computation():
    out = stats.bootstrap_sweep(LAMS, stats.accuracy_counts(DEV), stats.accuracy_counts(TEST),
                                n_resamples=400, seed=3)
    hand = _loop_bootstrap(LAMS, DEV, TEST, 400, 3)
    for key in ("a", "b", "better"):
        g = out[f"gain_vs_{key}"]
        assert g["ci95"] == pytest.approx(list(np.percentile(hand[key], [2.5, 97.5])))
        assert g["p_positive"] == pytest.approx(np.mean(np.array(hand[key]) > 0))
    # the point estimate: λ chosen on the full dev set (0.5: 4/6 vs 3/6), reported on test
    assert out["best_lam"] == 0.5
    assert out["gain_vs_a"]["points"] == pytest.approx(100 * (3 / 5 - 2 / 5))
    assert out["gain_vs_b"]["points"] == pytest.approx(100 * (3 / 5 - 2 / 5))
    assert out["gain_vs_better"]["points"] == pytest.approx(20.0)
    assert sum(out["lam_chosen"].values()) == pytest.approx(1.0)


def test_bootstrap_of_a_merge_equal_to_a_is_exactly_zero():
    dev = [DEV[2]] * 3  # every λ predicts what A predicts, item by item
    test = [TEST[2]] * 3
    out = stats.bootstrap_sweep(LAMS, stats.accuracy_counts(dev), stats.accuracy_counts(test),
                                n_resamples=200)
    for key in ("gain_vs_a", "gain_vs_b", "gain_vs_better"):
        assert out[key] == {"points": 0.0, "ci95": [0.0, 0.0], "p_positive": 0.0}


def test_f1_counts_metric_and_paired_difference():
    counts = stats.f1_counts([3, 1], [1, 0], [2, 1])  # Σ: tp 4, fp 1, fn 3
    assert stats.metric(counts.sum(0)) == pytest.approx(2 * 4 / (2 * 4 + 1 + 3))
    x = stats.accuracy_counts([1, 1, 0, 1])
    d = stats.bootstrap_difference(x, x)
    assert d == {"points": 0.0, "ci95": [0.0, 0.0], "p_positive": 0.0}
    with pytest.raises(ValueError, match="same shape"):
        stats.bootstrap_difference(x, stats.accuracy_counts([1, 0]))
    with pytest.raises(ValueError, match="needs 1"):
        stats.bootstrap_sweep([0.0, 0.5], stats.accuracy_counts(DEV[:2]), stats.accuracy_counts(TEST[:2]))


def test_sweep_carries_the_bootstrap_of_its_own_predictions(stack):
    s = tasks.sweep(stack, "pt", "es", (0.0, 0.5, 1.0))
    gold = {sp: tasks.gold_labels(stack, tasks.load_eval(stack, "pt", None, sp)) for sp in ("dev", "test")}
    correct = {sp: [[p == g for p, g in zip(tasks.decode_predictions(row), gold[sp])]
                    for row in s["predictions"][sp]] for sp in gold}
    again = stats.bootstrap_sweep([0.0, 0.5, 1.0], stats.accuracy_counts(correct["dev"]),
                                  stats.accuracy_counts(correct["test"]))
    for key in ("gain_vs_a", "gain_vs_b", "gain_vs_better"):
        assert s[key] == again[key]
    for i, p in enumerate(s["points"]):  # per-λ accuracy is the share of correct items
        assert p["test"]["accuracy"] == pytest.approx(np.mean(correct["test"][i]))


# --- where the merge matters ------------------------------------------------------------------


def test_flips_counts_equal_a_direct_count(stack):
    rows = tasks.load_eval(stack, "pt", None, "dev")
    gold = tasks.gold_labels(stack, rows)
    pred = {k: tasks.predict_labels(stack, rows, w) for k, w in
            (("A", "en"), ("merged", {"en": 0.5, "es": 0.5}), ("B", "es"))}
    f = results.flips(stack, "pt", "es", 0.5)
    assert f["lam"] == 0.5 and f["n"] == len(rows)
    for k in ("A", "B"):
        fixed = sum(m == g != o for m, o, g in zip(pred["merged"], pred[k], gold))
        broken = sum(o == g != m for m, o, g in zip(pred["merged"], pred[k], gold))
        assert (f[f"fixed_vs_{k.lower()}"], f[f"broken_vs_{k.lower()}"]) == (fixed, broken)
    differ = [i for i in range(len(rows)) if len({pred[k][i] for k in pred}) > 1]
    assert f["n_differ"] == len(differ)
    labels = stack.bundle.task(None).labels
    by_text = {r["text"]: i for i, r in enumerate(rows)}
    for row in f["rows"]:
        i = by_text[f["texts"][row["key"]]]
        assert [row[k] for k in ("A", "merged", "B")] == [labels[pred[k][i]] for k in ("A", "merged", "B")]
    # a λ off the precomputed grid reads its nearest point, and says so on the page
    assert results.flips(stack, "pt", "es", 0.8)["lam"] == 1.0
    note, table, pick = flips.on_flips(stack, "pt", "es", 0.8, "topic")
    assert "nearest point to 0.80" in note
    f8 = results.flips(stack, "pt", "es", 0.8)  # the table's rows, and the same items in the picker
    assert table.count("<tr>") == len(f8["rows"]) + 1 and len(pick["choices"]) == len(f8["rows"])
    assert all(html.escape(r["text"][:30]) in table for r in f8["rows"])


def test_flips_without_precomputed_predictions_say_so(stack):
    with pytest.raises(InputError, match="no precomputed predictions for nl"):
        results.flips(stack, "nl", "de", 0.5)
    note, table, pick = flips.on_flips(stack, "nl", "de", 0.5, "topic")
    assert "no precomputed predictions" in note and "<tbody></tbody>" in table and pick["choices"] == []


# --- masked-LM loss ---------------------------------------------------------------------------


TEXTS = ["insira uma fórmula na célula", "desenhe uma linha e uma forma"]


@torch.inference_mode()
def _library_mlm_loss(stack, texts, adapter):
    """The same masking, scored through the library's own MLM head at every position."""
    total, n = 0.0, 0
    with stack.use(adapter, None) as model:
        for inputs, att, where, true, _, _ in tasks._mlm_batches(stack, texts):
            logits = model(input_ids=inputs, attention_mask=att, head="mlm").logits
            total += float(torch.nn.functional.cross_entropy(
                logits[where[:, 0], where[:, 1]].float(), true, reduction="sum"))
            n += len(true)
    return total / n


def test_mlm_loss_matches_the_library_head_and_masks_every_token_once(stack):
    assert tasks.mlm_loss(stack, TEXTS, "es") == pytest.approx(_library_mlm_loss(stack, TEXTS, "es"), rel=1e-5)
    w = {"en": 0.3, "es": 0.7}
    assert tasks.mlm_loss(stack, TEXTS, w) == pytest.approx(_library_mlm_loss(stack, TEXTS, w), rel=1e-5)
    _, counts = tasks.mlm_token_losses(stack, [(TEXTS, "es")])[0]
    words = [len(stack.tokenizer(t)["input_ids"]) - 2 for t in TEXTS]  # minus <s> and </s>
    assert counts.tolist() == words


def test_mlm_curve_endpoints_are_the_single_adapters(stack):
    c = tasks.mlm_curve(stack, TEXTS, "en", "es", (0.0, 0.25, 0.5, 0.75, 1.0))
    loss = {p["lam"]: p["loss"] for p in c["points"]}
    assert loss[1.0] == pytest.approx(tasks.mlm_loss(stack, TEXTS, "en"))
    assert loss[0.0] == pytest.approx(tasks.mlm_loss(stack, TEXTS, "es"))
    assert loss[0.5] == pytest.approx(_library_mlm_loss(stack, TEXTS, {"en": 0.5, "es": 0.5}), rel=1e-5)
    assert c["best_lam"] == min(loss, key=lambda x: (loss[x], abs(x - 0.5)))


def test_heldout_summary_chooses_on_one_half_and_reports_on_the_other(stack):
    texts = tasks.load_eval(stack, "pt")
    texts = [r["text"] for r in texts]
    c = tasks.mlm_curve(stack, texts, "en", "es", (0.0, 0.5, 1.0))
    h = tasks.heldout_mlm_summary(c)["halves"]
    first, second = texts[0::2], texts[1::2]
    by_lam = {lam: tasks.mlm_loss(stack, first, a) for lam, a in
              ((0.0, "es"), (0.5, {"en": 0.5, "es": 0.5}), (1.0, "en"))}
    chosen = min(by_lam, key=lambda x: (by_lam[x], abs(x - 0.5)))
    assert h["best_lam_first"] == chosen
    merged = "en" if chosen == 1.0 else "es" if chosen == 0.0 else {"en": chosen, "es": 1 - chosen}
    assert h["second"]["merged"] == pytest.approx(tasks.mlm_loss(stack, second, merged), rel=1e-6)
    assert h["second"]["a"] == pytest.approx(tasks.mlm_loss(stack, second, "en"), rel=1e-6)


@pytest.mark.parametrize("text, message", [
    ("", "text is empty"), ("   ", "text is empty"),
    ("<s></s><pad>", "no word tokens to mask")])
def test_mlm_bad_text_is_refused(stack, text, message):
    with pytest.raises(InputError, match=message):
        texts, _ = tasks.mlm_text(text)
        tasks.mlm_curve(stack, texts, "en", "es")


def test_mlm_huge_text_is_cut(stack):
    texts, notice = tasks.mlm_text("uma fórmula " * 20_000)
    assert "cut from 239,999" in notice and len(texts[0]) == tasks.MAX_CHARS  # stripped first
    assert tasks.mlm_curve(stack, texts, "en", "es", (0.0, 1.0))["n_tokens"] > 0


@pytest.mark.parametrize("grid, message", [
    ((0.0, float("nan"), 1.0), "finite"), ((0.0, 1.5, 1.0), r"lie in \[0, 1\]"),
    ((0.2, 0.5), "must include 0"), ((), "empty")])
def test_bad_lambda_grids_are_refused(stack, grid, message):
    from langarith.arithmetic import MergeError

    with pytest.raises((InputError, MergeError), match=message):
        tasks.mlm_curve(stack, TEXTS, "en", "es", grid)
    with pytest.raises((InputError, MergeError), match=message):
        tasks.sweep(stack, "pt", "es", grid)


def test_a_target_without_eval_items_gets_a_clear_message(stack, tiny_bundle, tmp_path):
    import shutil

    from langarith.model import LanguageStack

    with pytest.raises(InputError, match="unknown language"):
        tasks.sweep(stack, "xx", "es")
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / "eval" / "topic" / "nl.jsonl").unlink()  # a missing data set
    other = LanguageStack(copy, device="cpu")
    with pytest.raises(InputError, match="no topic eval set for nl"):
        tasks.sweep(other, "nl", "de")
    note, *_ = flips.on_flips(other, "nl", "de", 0.5, "topic")
    assert "no precomputed predictions" in note
    (copy / "results" / "results.json").write_text("{not json")  # a corrupt results file
    with pytest.raises(InputError, match="results.json is not readable"):
        results.sweep_summary(other, "pt")


def test_page_handlers_work_without_a_page(stack):
    fig, note = mlm.on_mlm_heldout(stack, "pt", "es", 0.5)
    assert "held-out pt text" in fig.data[0].name and "first half" in note  # the legend names the text
    fig, note = mlm.on_mlm_live(stack, "pt", "es", 0.33, TEXTS[0])
    # every λ the slider can show (its 0.05 steps); a λ off them is read at the nearest one
    assert [p for p in fig.data[0].x] == [round(i * 0.05, 2) for i in range(21)]
    assert "merged (λ = 0.35, the slider's point nearest 0.33)" in note
    assert "merged (λ = 0.30)" in mlm.on_mlm_live(stack, "pt", "es", 0.3, TEXTS[0])[1]
    fig, note = sweep.on_sweep_tab(stack, "pt", "es", "topic")
    assert "95 % CI" in note and fig.data[1].error_y.array is not None


# --- the command line: pure JSON on stdout ------------------------------------------------------


def _cli(tiny_bundle, *args):
    r = subprocess.run([sys.executable, "-m", "langarith", *args, "--bundle", str(tiny_bundle)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr  # fails on anything but JSON


def test_cli_sweep_and_mlm_json(tiny_bundle):
    out, _ = _cli(tiny_bundle, "sweep", "--target", "pt", "--points", "3", "--json")
    assert out["precomputed"] is True
    for key in ("gain_vs_a", "gain_vs_b", "gain_vs_better"):
        assert set(out[key]) == {"points", "ci95", "p_positive"} and len(out[key]["ci95"]) == 2
    live, err = _cli(tiny_bundle, "sweep", "--target", "pt", "--points", "3", "--recompute", "--json")
    assert live["precomputed"] is False and "3/3" in err
    assert live["gain_vs_better"] == out["gain_vs_better"]
    mlm, _ = _cli(tiny_bundle, "mlm", "--target", "pt", "--points", "3", "--json")
    assert set(mlm) >= {"target", "a", "b", "points", "best_lam"} and mlm["precomputed"] is True
    text, _ = _cli(tiny_bundle, "mlm", "--target", "pt", "--points", "3", "--text", TEXTS[0])
    assert [p["lam"] for p in text["points"]] == [0.0, 0.5, 1.0] and text["text"] == "given"


def test_report_rebuilds_the_tables_from_the_shipped_files(tiny_bundle):
    r = subprocess.run([sys.executable, "-m", "langarith.bundle.report", "--bundle", str(tiny_bundle),
                        "--recompute", "--reevaluate", "pt"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "gain vs better, 95 % CI" in r.stdout and "| pt | es |" in r.stdout
    assert "largest difference 0.0000 points" in r.stdout
    assert "predictions differing from the shipped ones: 0.00 %" in r.stdout
