"""``python -m langarith reproduce`` end to end on tiny stand-ins: the hub profiles' adapters and
WikiANN / XQuAD parquet files in the Hub's layout and column types, in an HF cache (offline),
through the same code path a GPU machine runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from langarith import reproduce, stats
from langarith.reproduce import ReproduceError

ROOT = Path(__file__).resolve().parent.parent
PAPER_TARGETS = {"ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "tr", "ur", "vi", "zh"}
SOURCE_MAP = json.dumps({"bg": "de", "pt": "de", "is": "de", "tr": "de"})


@pytest.fixture(scope="module")
def data_cache(hub_cache):
    """WikiANN for de, bg, pt; a corrupt file for is; nothing for tr; XQuAD for de."""
    from hub_fixtures import build_dataset_cache, write_wikiann

    build_dataset_cache(hub_cache, wikiann={"de": {"validation": 12, "test": 10},
                                            "bg": {"validation": 8, "test": 8},
                                            "pt": {"validation": 8, "test": 8}},
                        xquad={"de": 20})
    snap = write_wikiann(hub_cache, "is", {"validation": 4, "test": 4})
    (snap / "is" / "validation-00000-of-00001.parquet").write_bytes(b"PAR1 this is not parquet")
    return hub_cache


def _cli(monkeypatch, cache, *args) -> int:
    from langarith import cli

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cli.main(["reproduce", *args])


@pytest.fixture(scope="module")
def ner_run(data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("ner")
    mp = pytest.MonkeyPatch()
    try:
        rc = _cli(mp, data_cache, "--profile", "mbert-ner", "--targets", "de,bg,pt,is,tr,xx",
                  "--source-map", SOURCE_MAP, "--lambdas", "0:1:0.5", "--out", str(out))
    finally:
        mp.undo()
    return rc, out, json.loads((out / "results.json").read_text())


def test_ner_results_follow_the_bundle_format_and_the_procedure(ner_run, data_cache):
    rc, out, res = ner_run
    assert rc == 2  # some targets failed (below); the others ran
    assert res["metric"] == "f1" and res["profile"] == "mbert-ner" and res["lambdas"] == [0.0, 0.5, 1.0]
    bundle = json.loads((ROOT / "assets/bundle/results/results.json").read_text())
    keys = {"target", "a", "b", "points", "best_lam", "test_at_best", "a_alone", "b_alone", "n_dev", "n_test"}
    assert keys <= set(bundle["zero_shot"]["pt"])  # the format the page reads
    assert set(res["full"]["zero_shot"]) == {"de", "bg", "pt"}
    for t, e in res["full"]["zero_shot"].items():
        assert keys | {"bootstrap"} <= set(e)
        assert e["a"] == "en" and [p["lam"] for p in e["points"]] == [0.0, 0.5, 1.0]
        dev = [p["dev"]["f1"] for p in e["points"]]
        assert e["best_lam"] == [0.0, 0.5, 1.0][stats.choose_lambda(dev, [0.0, 0.5, 1.0])]
        assert e["a_alone"] == e["points"][2]["test"] and e["b_alone"] == e["points"][0]["test"]
        b = e["bootstrap"]
        assert b["best_lam"] == e["best_lam"] and b["n_dev"] == e["n_dev"] and b["n_test"] == e["n_test"]
        assert b["a"] == pytest.approx(100 * e["a_alone"]["f1"]) and b["gain_vs_better"]["ci95"][0] <= b["gain_vs_better"]["ci95"][1]
    assert res["full"]["zero_shot"]["de"]["b"] == "is"  # the catalogue's pair
    assert res["full"]["zero_shot"]["de"]["n_dev"] == 12 and res["full"]["zero_shot"]["de"]["n_test"] == 10
    # the target's own adapter is the reference line (pt: second pattern); bg has none
    assert set(res["full"]["own_adapter"]) == {"de", "pt"} and 0 <= res["full"]["own_adapter"]["pt"]["f1"] <= 1
    md = (out / "results.md").read_text()
    assert all(f"| {t} | en |" in md for t in ("de", "bg", "pt"))
    assert not list(out.rglob("*.tmp"))


def test_f1_is_seqeval_on_the_predictions(ner_run, data_cache):
    """The stored test F1 of A alone equals seqeval's own f1_score on an independent prediction."""
    from seqeval.metrics import f1_score

    from hub_fixtures import WIKIANN_TAGS
    from langarith import profiles
    from langarith.model import LanguageStack

    _, _, res = ner_run
    spec = reproduce.spec_of("mbert-ner")
    rows = reproduce.ner_split(spec, "de", "test", data_cache)
    stack = LanguageStack(profiles.load_profile("mbert-ner", cache_dir=data_cache), device="cpu")
    pred, cut = reproduce.predict_ner(stack, rows, "en", "ner")
    gold = [[WIKIANN_TAGS[t] for t in r["tags"]] for r in rows]
    assert cut == 0 and [len(p) for p in pred] == [len(g) for g in gold]
    assert res["full"]["zero_shot"]["de"]["a_alone"]["f1"] == pytest.approx(f1_score(gold, pred))


def test_bad_targets_get_a_clear_message_and_nothing_is_written_for_them(ner_run):
    _, out, res = ner_run
    f = res["failed"]
    assert set(f) == {"is", "tr", "xx"}
    assert "corrupt or not a parquet file" in f["is"] and "delete it" in f["is"]
    assert "not in the Hugging Face cache" in f["tr"] and "no such language" in f["tr"]
    assert "unimelb-nlp/wikiann" in f["tr"] and "tr/validation-00000-of-00001.parquet" in f["tr"]
    assert "does not exist in this profile" in f["xx"] or "no related language" in f["xx"]
    assert sorted(p.stem for p in (out / "targets").iterdir()) == ["bg", "de", "pt"]


def test_related_adapter_that_does_not_exist(data_cache, tmp_path, monkeypatch):
    rc = _cli(monkeypatch, data_cache, "--profile", "mbert-ner", "--targets", "de,bg",
              "--source-map", '{"de": "nl", "bg": "qq"}', "--lambdas", "0,1", "--out", str(tmp_path))
    res = json.loads((tmp_path / "results.json").read_text())
    assert rc == 2 and res["full"]["zero_shot"] == {}
    assert "related adapter 'nl' does not exist" in res["failed"]["de"]
    assert "related adapter 'qq' does not exist" in res["failed"]["bg"]
    assert "--source-map" in res["failed"]["de"]


def test_rerun_skips_finished_targets(ner_run, data_cache, monkeypatch, capsys):
    _, out, first = ner_run

    def boom(*a, **k):
        raise AssertionError("a finished target was computed again")

    monkeypatch.setattr(reproduce, "run_target", boom)
    rc = _cli(monkeypatch, data_cache, "--profile", "mbert-ner", "--targets", "de,bg,pt",
              "--source-map", SOURCE_MAP, "--lambdas", "0:1:0.5", "--out", str(out))
    assert rc == 0 and "skipped" in capsys.readouterr().err
    again = json.loads((out / "results.json").read_text())
    assert again["full"]["zero_shot"] == first["full"]["zero_shot"]


def test_interrupted_run_leaves_whole_files_and_resumes(data_cache, tmp_path, monkeypatch):
    real = reproduce.score
    calls = {"n": 0, "stop": True}

    def score(*a, **k):  # Ctrl-C in the middle of the second target
        calls["n"] += 1
        if calls["stop"] and calls["n"] > 4 + 1:  # de: 2 λ × 2 splits + its own adapter
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(reproduce, "score", score)
    args = ["--profile", "mbert-ner", "--targets", "de,bg", "--source-map", SOURCE_MAP,
            "--lambdas", "0,1", "--out", str(tmp_path)]
    assert _cli(monkeypatch, data_cache, *args) == 130
    res = json.loads((tmp_path / "results.json").read_text())  # whole, parseable
    assert set(res["full"]["zero_shot"]) == {"de"}
    assert [p.name for p in (tmp_path / "targets").iterdir()] == ["de.json"]
    assert not list(tmp_path.rglob("*.tmp"))
    calls.update(n=0, stop=False)
    assert _cli(monkeypatch, data_cache, *args) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["full"]["zero_shot"]) == {"de", "bg"}
    assert calls["n"] == 4  # bg only (no own adapter): de was not redone


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    reproduce.write_atomic(path, '{"old": 1}\n')

    def fail(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce.os, "fsync", fail)
    with pytest.raises(KeyboardInterrupt):
        reproduce.write_atomic(path, '{"new": 2, "half": ')
    assert json.loads(path.read_text()) == {"old": 1} and list(tmp_path.iterdir()) == [path]


def test_xlmr_qa_halves_and_squad_scores(data_cache, tmp_path, monkeypatch):
    rc = _cli(monkeypatch, data_cache, "--profile", "xlmr", "--targets", "de", "--source-map",
              '{"de": "en"}', "--setting", "enhancement", "--lambdas", "0,0.5,1", "--out", str(tmp_path))
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    e = res["full"]["enhancement"]["de"]
    assert (e["a"], e["b"], e["n_dev"], e["n_test"]) == ("de", "en", 10, 10)
    assert res["metric"] == "f1" and set(e["a_alone"]) == {"f1", "exact_match", "n"}
    assert all(int(c["id"].split("-")[1]) >= 10 for c in e["changed"])  # test = second half
    # the stored F1 of A alone is the mean SQuAD F1 of its answers on the second half
    from langarith import profiles
    from langarith.model import LanguageStack

    rows = reproduce.qa_splits(reproduce.spec_of("xlmr"), "de", data_cache)["test"]
    stack = LanguageStack(profiles.load_profile("xlmr", cache_dir=data_cache), device="cpu")
    preds, _ = reproduce.predict_qa(stack, rows, "de", "qa")
    f1 = np.mean([reproduce.qa_item(p, r["answers"])[0] for p, r in zip(preds, rows)])
    assert e["a_alone"]["f1"] == pytest.approx(f1)
    assert e["bootstrap"]["a"] == pytest.approx(100 * f1)


def test_squad_normalisation_and_scores():
    assert reproduce.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert reproduce.squad_f1("a cat sat", "the cat") == pytest.approx(2 / 3)
    assert reproduce.qa_item("", ["Paris"]) == (0.0, 0.0)  # "no answer" against a real one
    assert reproduce.qa_item("in Paris.", ["Lyon", "paris"]) == (pytest.approx(2 / 3), 0.0)
    assert reproduce.qa_item("The Paris", ["paris"]) == (1.0, 1.0)


def test_per_sentence_counts_sum_to_seqevals_f1():
    from seqeval.metrics import f1_score

    rng = np.random.default_rng(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [[tags[i] for i in rng.integers(0, 5, rng.integers(1, 9))] for _ in range(60)]
    pred = [[tags[i] if rng.random() < 0.6 else g for i, g in zip(rng.integers(0, 5, len(s)), s)]
            for s in gold]
    c = reproduce.ner_counts(gold, pred)
    assert c.shape == (60, 3)
    assert reproduce.ner_scores(c)["f1"] == pytest.approx(f1_score(gold, pred))
    assert reproduce.ner_counts([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]]).tolist() == [[0, 1, 1]]


def test_lambda_grids():
    assert reproduce.parse_lambdas("0:1:0.1") == [round(i / 10, 1) for i in range(11)]
    assert reproduce.parse_lambdas("1,0,0.5") == [0.0, 0.5, 1.0]
    for bad, why in [("0.2:0.8:0.1", "needs 0 and 1"), ("a:b", "start:stop:step"), ("0,1.5", r"\[0, 1\]")]:
        with pytest.raises(ReproduceError, match=why):
            reproduce.parse_lambdas(bad)
    with pytest.raises(ReproduceError, match="not valid JSON"):
        reproduce.parse_source_map("{de: nl}")


def test_bad_parquet_columns_are_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"tokens": [["a"]]}), path)
    with pytest.raises(ReproduceError, match="lacks the column.*ner_tags"):
        reproduce.read_table(path, ["tokens", "ner_tags"])


def test_find_results(ner_run, tmp_path):
    _, out, _ = ner_run
    res = json.loads((out / "results.json").read_text())
    assert reproduce.find_results("mbert-ner", out) == res and res["full"]["zero_shot"]
    assert reproduce.find_results("xlmr", out) is None  # another profile's results
    assert reproduce.find_results("mbert-ner", tmp_path) is None
    (tmp_path / "results.json").write_text("{half")
    with pytest.raises(ReproduceError, match="rerun reproduce"):
        reproduce.find_results("mbert-ner", tmp_path)


def test_find_results_default_folder(ner_run, tmp_path, monkeypatch):
    _, out, _ = ner_run
    res = json.loads((out / "results.json").read_text())
    monkeypatch.setenv("LANGARITH_CACHE", str(tmp_path))
    assert reproduce.find_results("mbert-ner") is None
    shutil.copytree(out, tmp_path / "reproduce" / "mbert-ner")
    assert reproduce.find_results("mbert-ner") == res


def test_catalogue_pairs_for_the_papers_targets():
    from langarith import profiles

    m = profiles.manifest_for("mbert-ner")
    has = {lang["code"] for lang in m["languages"] if lang["adapter"]}
    targets = profiles.catalogue()["profiles"]["mbert-ner"]["reproduce"]["targets"]
    assert set(targets) == PAPER_TARGETS
    for t, pair in targets.items():
        assert pair["b"] in has and pair["b"] != "en" and pair["why"], t
    assert {"bg", "ur"} <= {lang["code"] for lang in m["languages"] if not lang["adapter"]}
    x = profiles.catalogue()["profiles"]["xlmr"]
    xhas = {lang["code"] for lang in x["languages"] if lang["adapter"]}
    assert all(p["b"] in xhas and t in xhas for t, p in x["reproduce"]["targets"].items())


def test_no_reproduce_for_the_embedded_profile():
    with pytest.raises(ReproduceError, match="--profile mbert-ner"):
        reproduce.spec_of("embedded")
