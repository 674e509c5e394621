"""Under-trained adapters (#11): the training loop resumes exactly, the token shares, a variant
that loads, merges and evaluates like a full adapter, the masked-LM bootstrap, the plot."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from langarith import plots, stats, tasks, typology
from langarith.bundle import lowres, train
from langarith.model import LanguageStack


# --- the training loop: a stopped run resumes where it stopped -----------------------------------


def _toy(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model, list(model.parameters())


def _batches(seed=1):
    gen = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(8, 4, generator=gen)
        yield x, x.sum(1, keepdim=True).sin()


def _run(model, params, sched, checkpoint=None, stop_after=None):
    calls = {"n": 0}

    def loss_fn(b):
        calls["n"] += 1
        if stop_after is not None and calls["n"] > stop_after:
            raise KeyboardInterrupt  # the session stops mid-run
        x, y = b
        return torch.nn.functional.mse_loss(model(x), y)

    return train.train_loop(model, params, _batches(), loss_fn, sched, "toy", torch.device("cpu"),
                            checkpoint=checkpoint, every=3)


def test_train_loop_resumes_bit_for_bit_after_an_interruption(tmp_path):
    # No time budget in reach: the learning rate then depends on the step alone (with a budget,
    # it also follows the wall clock, which no two runs share).
    sched = train.Schedule(steps=12, batch=8, lr=1e-2, max_seconds=1e9)
    ref_model, ref_params = _toy()
    _run(ref_model, ref_params, sched)

    model, params = _toy()
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _run(model, params, sched, ckpt, stop_after=7)  # checkpoints after steps 3 and 6
    assert torch.load(ckpt, weights_only=True)["step"] == 6
    model2, params2 = _toy(seed=5)  # a new process: other weights until the checkpoint loads
    stats_ = _run(model2, params2, sched, ckpt)
    assert stats_["resumed_at"] == 6 and stats_["steps"] == 12
    for p, q in zip(params2, ref_params):
        assert torch.equal(p, q)


def test_early_stop_keeps_the_best_check_and_stops_after_patience_checks():
    """A held-out loss that improves, then gets worse: the loop stops ``patience`` checks after
    the best one and hands back the best check's weights, not the last step's."""
    sched = train.Schedule(steps=40, batch=8, lr=1e-2, max_seconds=1e9)
    model, params = _toy()
    held = iter([5.0, 4.0, 3.0, 3.5, 3.2, 3.004, 4.0, 9.0, 9.0])  # best at the 3rd check (step 9)
    seen = {}

    def held_out():
        value = next(held)
        seen[len(seen) + 1] = [p.detach().clone() for p in params]
        return value

    stop = train.EarlyStop(held_out, patience=3, min_delta=0.005)
    calls = {"n": 0}

    def loss_fn(b):
        calls["n"] += 1
        x, y = b
        return torch.nn.functional.mse_loss(model(x), y)

    out = train.train_loop(model, params, _batches(), loss_fn, sched, "toy", torch.device("cpu"),
                           every=3, early_stop=stop)
    # checks at steps 3..18; 3.004 is not better than 3.0 by 0.005: three checks after step 9
    assert out["stopped"] == "early stop" and out["steps"] == 18 and calls["n"] == 18
    assert out["best_step"] == 9 and out["best_held_out_loss"] == 3.0
    assert [c[0] for c in out["checks"]] == [3, 6, 9, 12, 15, 18]
    for p, q in zip(params, seen[3]):
        assert torch.equal(p, q)  # the weights of the best check


def test_early_stop_state_survives_a_resume(tmp_path):
    sched = train.Schedule(steps=30, batch=8, lr=1e-2, max_seconds=1e9)

    def run(model, params, ckpt, stop_after=None):
        values = {3: 5.0, 6: 4.0, 9: 3.9, 12: 3.8, 15: 3.7, 18: 1.0, 21: 2.0, 24: 2.0, 27: 2.0, 30: 2.0}
        step = {"n": 0}

        def loss_fn(b):
            step["n"] += 1
            if stop_after is not None and step["n"] > stop_after:
                raise KeyboardInterrupt
            x, y = b
            return torch.nn.functional.mse_loss(model(x), y)

        counter = {"k": 0}

        def held_out():
            counter["k"] += 1
            return values[(len(done) + counter["k"]) * 3]

        done = torch.load(ckpt, weights_only=True)["checks"] if ckpt and ckpt.exists() else []
        return train.train_loop(model, params, _batches(), loss_fn, sched, "toy", torch.device("cpu"),
                                checkpoint=ckpt, every=3, early_stop=train.EarlyStop(held_out, patience=3))

    ref_model, ref_params = _toy()
    ref = run(ref_model, ref_params, tmp_path / "ref.ckpt")
    assert ref["stopped"] == "early stop" and ref["best_step"] == 18 and ref["steps"] == 27
    model, params = _toy()
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        run(model, params, ckpt, stop_after=13)  # checkpoint (and check) after step 12
    model2, params2 = _toy(seed=5)
    out = run(model2, params2, ckpt)
    assert out["resumed_at"] == 12 and out["best_step"] == 18 and out["steps"] == 27
    assert out["checks"] == ref["checks"]
    for p, q in zip(params2, ref_params):
        assert torch.equal(p, q)


def test_validation_share_never_overlaps_a_share():
    paras = [" ".join(["w"] * (5 + i % 7)) + f" p{i}" for i in range(400)]
    val, n_val = lowres.validation_share(_WordTokenizer(), paras, 60, widest=1500)
    big, _ = lowres.share(_WordTokenizer(), paras, 1500)
    assert n_val >= 60 and val and not set(val) & set(big)
    assert lowres.validation_share(_WordTokenizer(), paras, 60, widest=1500) == (val, n_val)  # seeded
    everything = sum(len(p.split()) + 1 for p in paras)
    with pytest.raises(ValueError, match="no text is left"):
        lowres.validation_share(_WordTokenizer(), paras, 60, widest=everything)


# --- the shares of text -------------------------------------------------------------------------


class _WordTokenizer:
    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[1] * len(t.split()) for t in texts]}


def test_shares_are_nested_seeded_and_hold_the_asked_tokens():
    paras = [" ".join(["w"] * (5 + i % 7)) + f" p{i}" for i in range(400)]
    small, n_small = lowres.share(_WordTokenizer(), paras, 100)
    big, n_big = lowres.share(_WordTokenizer(), paras, 500)
    assert big[:len(small)] == small  # the 100-token share lies inside the 500-token one
    assert n_small >= 100 and n_small - (len(small[-1].split()) + 1) < 100  # stops once reached
    assert n_big == sum(len(p.split()) + 1 for p in big)
    assert lowres.share(_WordTokenizer(), paras, 100) == (small, n_small)  # seeded
    assert small != paras[:len(small)]  # shuffled, not the first paragraphs of the file


def test_training_paragraphs_leave_out_the_held_out_ones():
    class B:
        def mlm_paragraphs(self, code):
            return [f"{code}{i}" for i in range(120)]

    kept = lowres.training_paragraphs(B(), "nl")
    assert "nl0" not in kept and "nl50" not in kept and "nl100" not in kept and len(kept) == 117


def test_variant_codes_and_the_four_languages():
    class B:
        quick = False

    vs = lowres.variants(B())
    assert [v for v, _, _ in vs][:2] == ["nl@100k", "nl@500k"] and len(vs) == 8
    assert {c for _, c, _ in vs} == {"nl", "da", "cs", "it"}
    both = lowres.all_variants(B())
    assert set(lowres.shipped(B())) <= {v for v, *_ in both} and len(both) == 16
    assert [v for v, *_ in both][:2] == ["nl@100k-conv", "nl@500k-conv"]  # the paper's arm first
    assert {arm for *_, arm in both} == {"equal_compute", "converged"}
    assert {lowres.arm_of(v) for v, *_ in both} == {"equal_compute", "converged"}
    assert all(lowres.arm_of(v) == arm for v, *_, arm in both)


# --- a variant behaves like a full adapter ------------------------------------------------------


@pytest.fixture(scope="module")
def variant_stack(tiny_bundle, tmp_path_factory):
    """The tiny bundle plus ``es@100k``: a perturbed copy of es, declared as a variant of es."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("variant") / "bundle"
    shutil.copytree(tiny_bundle, root)
    src, dst = root / "adapters" / "es", root / "adapters" / "es@100k"
    shutil.copytree(src, dst)
    f = next(dst.glob("*.safetensors"))
    sd = load_file(str(f))
    gen = torch.Generator().manual_seed(3)
    save_file({k.replace(".es.", ".es@100k."): v + 0.01 * torch.randn(v.shape, generator=gen)
               for k, v in sd.items()}, str(f))  # keys carry the adapter's name, as save_adapter writes them
    cfg = json.loads((dst / "adapter_config.json").read_text())
    cfg["name"] = "es@100k"
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    m = json.loads((root / "manifest.json").read_text())
    es = next(e for e in m["languages"] if e["code"] == "es")
    m["languages"].append({**es, "code": "es@100k", "name": "Spanish, 100 k tokens",
                           "adapter": "adapters/es@100k", "source": "en", "text": "es",
                           "tokens": 100_000})
    (root / "manifest.json").write_text(json.dumps(m))
    return LanguageStack(root, device="cpu")


def test_a_variant_reads_its_languages_eval_set_and_text(variant_stack):
    b = variant_stack.bundle
    v = b.language("es@100k")
    assert v.is_variant and v.text_language == "es" and b.text_of("es@100k") == "es"
    assert tasks.load_eval(variant_stack, "es@100k") == tasks.load_eval(variant_stack, "es")
    assert tasks.baseline_language(variant_stack, "es@100k") == "es@100k"  # A: the variant itself


def test_a_variant_is_never_a_source_and_its_full_adapter_is_not_its_source(variant_stack):
    b = variant_stack.bundle
    assert "es@100k" not in b.source_languages("pt")
    assert "es" not in b.source_languages("es@100k") and "en" in b.source_languages("es@100k")
    assert tasks.suggested_source(variant_stack, "es@100k") == "en"


def test_a_variant_merges_like_a_full_adapter(variant_stack):
    """λ·variant + (1−λ)·en in the live slot equals the same sum of the two adapters' weights."""
    text = variant_stack.bundle.language("es").examples[0]
    lam = 0.3
    cmp = tasks.compare(variant_stack, text, "es@100k", "en", lam)
    assert cmp.a == "es@100k" and cmp.b == "en"
    va = variant_stack.language_state_dict("es@100k")
    vb = variant_stack.language_state_dict("en")
    assert any(not torch.equal(va[k], variant_stack.language_state_dict("es")[k]) for k in va)
    with variant_stack.lock:
        variant_stack.write_merge({"es@100k": lam, "en": 1 - lam})
        got = variant_stack.merged_state_dict()
    assert set(got) == set(va)
    for k in va:
        torch.testing.assert_close(got[k], lam * va[k] + (1 - lam) * vb[k], atol=1e-6, rtol=0)
    one = tasks.compare(variant_stack, text, "es@100k", "en", 1.0)
    assert one.probs["merged"] == pytest.approx(one.probs["A"], abs=1e-6)


def test_a_variant_sweeps_with_intervals(variant_stack):
    s = tasks.sweep(variant_stack, "es@100k", "en", (0.0, 0.5, 1.0))
    assert s["a"] == "es@100k" and s["n_test"] == len(tasks.load_eval(variant_stack, "es", split="test"))
    assert set(s["gain_vs_better"]) == {"points", "ci95", "p_positive"}


def test_typology_treats_a_variant_as_its_language(variant_stack):
    row = typology.target_row(variant_stack, "es@100k")
    assert row == typology.target_row(variant_stack, "es")
    assert "es@100k" not in typology.for_stack(variant_stack)["languages"]
    w = typology.merge_weights(variant_stack, "es@100k", k=2, temperature=0.1)
    assert "es@100k" in w and "es" not in w


# --- the masked-LM gain and its interval ---------------------------------------------------------


def test_heldout_mlm_bootstrap_matches_a_direct_computation():
    rng = np.random.default_rng(4)
    lambdas = [0.0, 0.5, 1.0]
    counts = rng.integers(5, 30, size=(1, 10)).repeat(3, 0).astype(float)
    sums = counts * (np.array([[3.0], [2.5], [3.2]]) + rng.normal(0, 0.2, size=(3, 10)))
    curve = {"points": [{"lam": x} for x in lambdas], "sums": sums.tolist(), "counts": counts.tolist()}
    boot = tasks.heldout_mlm_bootstrap(curve)
    first, second = np.arange(0, 10, 2), np.arange(1, 10, 2)
    loss = lambda idx: sums[:, idx].sum(1) / counts[:, idx].sum(1)  # noqa: E731
    chosen = int(np.argmin(loss(first)))
    l2 = loss(second)
    assert boot["best_lam"] == lambdas[chosen]
    assert boot["gain_vs_better"]["points"] == pytest.approx(min(l2[0], l2[2]) - l2[chosen])
    # the interval: the same draws as stats.resample_counts (first-half texts, then second-half
    # texts), λ re-chosen on each resample, in a plain loop
    rng = np.random.default_rng(boot["seed"])
    R = boot["n_resamples"]
    i1, i2 = rng.integers(0, 5, size=(R, 5)), rng.integers(0, 5, size=(R, 5))
    gains = []
    for r in range(R):
        d, t = first[i1[r]], second[i2[r]]
        pick = min(range(3), key=lambda i: (round(loss(d)[i], 12), abs(lambdas[i] - 0.5)))
        gains.append(min(loss(t)[0], loss(t)[2]) - loss(t)[pick])
    assert boot["gain_vs_better"]["ci95"] == pytest.approx(list(np.percentile(gains, [2.5, 97.5])),
                                                         abs=1e-9)
    assert boot["gain_vs_better"]["p_positive"] == pytest.approx(np.mean(np.asarray(gains) > 0))
    # loss_counts: the metric of the counts is minus the mean loss
    assert stats.metric(stats.loss_counts(sums[1], counts[1]).sum(0)) == pytest.approx(
        -sums[1].sum() / counts[1].sum())


def test_lowres_figure_has_one_line_per_language_and_intervals():
    def pt(gain):
        g = {"points": gain, "ci95": [gain - 1, gain + 1], "p_positive": 0.5}
        return {"a_alone": 0.5, "b_alone": 0.4, "merged": 0.6, "best_lam": 0.5, "gain_vs_better": g}

    table = {"languages": {c: {"partner": "de", "tokens": {"100000": 1e5, "500000": 5e5, "full": 5e6},
                               "points": {k: {"topic": pt(1.0), "mlm": pt(0.2), "tagging": None}
                                          for k in ("100000", "500000", "full")}}
                           for c in ("nl", "sv")}}
    fig = plots.lowres_figure(table)
    names = {t.name for t in fig.data}
    assert names == {"nl ← de", "sv ← de"}
    assert len(fig.data) == 4  # two panels with data (mlm, topic) × two languages
    assert list(fig.data[0].x) == [1e5, 5e5, 5e6] and fig.data[0].error_y.array[0] == pytest.approx(1.0)


def test_lowres_figure_draws_both_arms_each_ending_at_the_full_adapter():
    def pt(gain):
        g = {"points": gain, "ci95": [gain - 1, gain + 1], "p_positive": 0.5}
        return {"a_alone": 0.5, "b_alone": 0.4, "merged": 0.6, "best_lam": 0.5, "gain_vs_better": g}

    row = {"partner": "de", "tokens": {"100000": 1e5, "500000": 5e5, "full": 5e6},
           "points": {k: {"topic": pt(1.0), "mlm": pt(0.2), "tagging": None}
                      for k in ("100000", "500000", "full")},
           "converged": {"100000": {"topic": pt(3.0), "mlm": pt(0.5), "tagging": None}}}
    fig = plots.lowres_figure({"languages": {"nl": row}})
    by_name = {}
    for t in fig.data:
        by_name.setdefault(t.name, []).append(t)
    assert set(by_name) == {"nl ← de, little text, trained to convergence",
                            "nl ← de, little training (200 steps)"}
    conv = by_name["nl ← de, little text, trained to convergence"][0]  # the mlm panel
    assert list(conv.x) == [1e5, 5e6] and list(conv.y) == [0.5, 0.2] and conv.line.dash == "solid"
    assert by_name["nl ← de, little training (200 steps)"][0].line.dash == "dot"
    assert "paper's low-resource setting" in fig.layout.title.text


def _gain(points, lo, hi):
    return {"points": points, "ci95": [lo, hi], "p_positive": 0.5}


def test_the_sweep_tab_reads_the_shipped_measurements(variant_stack):
    """The page's measured comparisons and the low-resource plot, from the bundle's result files."""
    from langarith.page import sweep

    res = variant_stack.bundle.root / "results"
    res.mkdir(exist_ok=True)
    (res / "beyond.json").write_text(json.dumps({"pt": {
        "best_gradient": [0.2, 0.8], "best_lam": 0.5, "best_ensemble_lam": 0.4, "n_test": 8,
        "gradient_vs_single": _gain(0.4, -1.0, 1.4), "ensemble_vs_merge": _gain(-2.5, -4.0, -0.5),
        "mlm": {"ensemble_vs_merge": _gain(-0.2, -0.3, -0.1)}}}))
    (res / "typology.json").write_text(json.dumps({"targets": {"pt": {
        "k": 2, "temperature": 0.1, "weights": {"es": 0.7, "en": 0.3}, "n_test": 8,
        "typology_minus_two_way": _gain(1.0, 0.2, 1.8)}}}))
    pt = {"a_alone": 0.5, "b_alone": 0.4, "merged": 0.6, "best_lam": 0.5,
          "gain_vs_better": _gain(1.0, -1.0, 3.0)}
    (res / "lowres.json").write_text(json.dumps({"shipped": ["es@100k"], "languages": {"es": {
        "partner": "en", "tokens": {"100000": 100_000, "full": 600_000},
        "points": {k: {"topic": pt, "mlm": pt, "tagging": None} for k in ("100000", "full")}}}}))
    note, fig, low = sweep.on_measured(variant_stack, "pt")
    assert "+0.4** points [+1.0" not in note and "**+0.4** points [-1.0, +1.4] (inside its interval)" in note
    assert "**-2.5** points [-4.0, -0.5] (clear)" in note  # the ensemble: clearly worse here
    assert "es 0.70, en 0.30" in note and "**+1.0** points [+0.2, +1.8] (clear)" in note
    assert "es@100k" in low and fig is not None and len(fig.data) == 2
    assert sweep.measured_note(variant_stack, "nl") == ""  # nothing measured for nl


def test_the_setting_line_says_which_arm_a_variant_belongs_to(variant_stack, monkeypatch):
    """Issue 21: the page says whether a variant is the paper's setting (little text, trained to
    convergence) or the equal-compute arm (little training)."""
    import dataclasses

    from langarith.page import header

    info = header.on_target(variant_stack, "es@100k")[4]
    assert "100,000 tokens" in info and "little training" in info and "not the paper's setting" in info
    langs = dict(variant_stack.bundle.languages)
    langs["es@100k"] = dataclasses.replace(langs["es@100k"], arm="converged")
    monkeypatch.setattr(variant_stack.bundle, "languages", langs)
    info = header.on_target(variant_stack, "es@100k")[4]
    assert "trained to convergence" in info and "the paper's setting" in info and "little training" not in info


def test_the_languages_command_lists_a_variant_with_its_text_tokens_and_arm(variant_stack, capsys):
    from langarith import cli

    assert cli.main(["languages", "--bundle", str(variant_stack.bundle.root)]) in (0, None)
    rows = {r["code"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["es@100k"]["variant_of"] == "es" and rows["es@100k"]["tokens"] == 100_000
    assert rows["es@100k"]["arm"] == "equal_compute" and "variant_of" not in rows["es"]
