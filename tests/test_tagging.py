"""The span-tagging task: extraction from help HTML, BIO over words and sub-words, span F1, the
tagging view and sweep on the tiny bundle's tagging task, the CLI's --task, bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from langarith import cli, ner, stats
from langarith.bundle import corpus, tagging
from langarith.loading import InputError

ROOT = Path(__file__).resolve().parent.parent

# Nested (emph around menuitem), adjacent (two keycodes in one word; two emph split by a space),
# a hidden switch variant (never shown), an avis tooltip (left out) and sloppy whitespace.
HTML = ('<html><body><p id="par_1" class="paragraph">Choose <span class="emph"><span class="menuitem">'
        'Format - Cells</span></span> or press <span class="keycode">Ctrl</span><span class="keycode">'
        '+1</span>, then\n  type <span class="input">=SUM(A1)</span>. <span class="avis">A tooltip.</span>'
        '<span hidden="true" class="MAC"><span class="keycode">Cmd</span></span> Use '
        '<span class="literal">SUM</span> in <span class="emph">Tools</span> <span class="emph">Options'
        '</span>.</p></body></html>')


def _parse(parser_cls):
    p = parser_cls()
    p.feed(HTML)
    p.close()
    return dict(p.items)


def test_span_extraction_nested_adjacent_hidden():
    raw = _parse(tagging.SpanParser)["par_1"]
    text, spans = tagging.marked_to_spans(raw)
    # the same text as the corpus stage's parser (so the vocabulary and the MLM filter apply)
    assert text == corpus._norm(_parse(corpus.HelpParagraphParser)["par_1"])
    assert text == ("Choose Format - Cells or press Ctrl+1, then type =SUM(A1). A tooltip. Use SUM in "
                    "Tools Options.")
    got = [(text[s:e], kind) for s, e, kind in spans]
    assert got == [("Format - Cells", "UI"), ("Ctrl", "KEY"), ("+1", "KEY"), ("=SUM(A1)", "INPUT"),
                   ("SUM", "CODE"), ("Tools", "UI"), ("Options", "UI")]


def test_bio_tags_over_words():
    text, spans = tagging.marked_to_spans(_parse(tagging.SpanParser)["par_1"])
    words, tags = tagging.bio_tags(text, spans)
    assert words == text.split()
    by_word = dict(zip(words, tags))
    assert [by_word[w] for w in ("Choose", "Format", "-", "Cells", "or")] == ["O", "B-UI", "I-UI", "I-UI", "O"]
    assert by_word["Ctrl+1,"] == "B-KEY"  # one word touched by two adjacent spans: one span
    assert by_word["=SUM(A1)."] == "B-INPUT" and by_word["tooltip."] == "O"
    assert tags[-2:] == ["B-UI", "B-UI"]  # adjacent spans of one type stay two spans
    assert tagging.count_spans(tags) == {"UI": 3, "CODE": 1, "INPUT": 1, "KEY": 1}
    assert tagging.bio_tags("no marked spans here at all", []) == (
        ["no", "marked", "spans", "here", "at", "all"], ["O"] * 6)


def test_whitespace_only_and_unmatched_markers():
    o, c = tagging._OPEN, tagging._CLOSE
    text, spans = tagging.marked_to_spans(f"a {o}0  {c} b {o}1code{c}{c} c {o}2x")
    assert text == "a b code c x" and spans == [(4, 8, "CODE")]


def test_bio_alignment_with_subword_tokens():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ROOT / "assets" / "bundle" / "tokenizer"))
    words = ["Choose", "Tabellendokumentvorlagen", "-", "Zellformatierung", "now"]
    tags = ["O", "B-UI", "I-UI", "I-UI", "O"]
    ids, labels, first = tagging.encode(tok, words, tags)
    pieces = tok.convert_ids_to_tokens(ids)
    assert len(ids) > len(words) + 2  # the long words really split into several pieces
    idx = {lab: i for i, lab in enumerate(tagging.LABELS)}
    assert [labels[p] for p in first] == [idx[t] for t in tags]
    assert sum(lab != -100 for lab in labels) == len(words)  # one label per word, none on specials
    assert labels[0] == -100 and labels[-1] == -100
    for p in first:
        assert pieces[p].startswith("▁")  # a word's first piece carries the word boundary
    ids2, labels2, first2 = tagging.encode(tok, ["word"] * 400, ["B-UI"] + ["I-UI"] * 399)
    assert len(ids2) == tagging.MAX_TOKENS and len(first2) == tagging.MAX_TOKENS - 2


GOLD = [["B-UI", "I-UI", "O", "B-KEY"], ["O", "B-CODE", "O"], ["B-UI", "O", "B-UI"]]
PRED = [["B-UI", "I-UI", "O", "O"], ["O", "B-CODE", "I-CODE"], ["I-UI", "O", "B-KEY"]]
# By hand: s1 UI(0,1) hit, KEY missed; s2 CODE(1,1) vs CODE(1,2): one fp, one fn; s3 UI(0,0) hit
# (an I- after nothing opens a span), UI(2,2) missed, KEY(2,2) false.
HAND = [(1, 0, 1), (0, 1, 1), (1, 1, 1)]


def test_sentence_counts_and_f1_against_hand_count():
    counts = [ner.sentence_counts(g, p) for g, p in zip(GOLD, PRED)]
    assert counts == HAND
    tp, fp, fn = map(sum, zip(*HAND))
    f1 = ner.span_f1(GOLD, PRED)
    assert f1["micro"]["f1"] == pytest.approx(100 * 2 * tp / (2 * tp + fp + fn))  # 4/7
    assert f1["micro"]["precision"] == pytest.approx(100 * 2 / 4)
    assert float(stats.metric(np.array(counts).sum(0))) * 100 == pytest.approx(f1["micro"]["f1"])
    assert f1["per_class"]["UI"]["f1"] == pytest.approx(100 * 2 * 2 / (2 * 2 + 0 + 1))
    assert f1["per_class"]["CODE"]["f1"] == 0 and f1["per_class"]["KEY"]["support"] == 1
    with pytest.raises(InputError, match="tags"):
        ner.sentence_counts(["O", "B-UI"], ["O"])
    with pytest.raises(InputError, match="no sentences"):
        ner.span_f1([], [])


def test_compare_on_tiny_tagging_task(stack):
    text = "insert a formula into the cell"
    cmp = ner.compare_ner(stack, text, "pt", None, 0.3, task="spans")
    assert (cmp.a, cmp.b) == ("en", "es") and cmp.formula == "merged = 0.30·en + 0.70·es"
    for side in ("A", "merged", "B"):
        assert [w["word"] for w in cmp.words[side]] == text.split()
        assert all(w["label"] in {"O", "B-UI", "I-UI", "B-CODE", "I-CODE"} for w in cmp.words[side])
    key = lambda s: (s["start"], s["end"], s["type"])  # noqa: E731
    assert {key(s) for s in cmp.added} == {key(s) for s in cmp.spans["merged"]} - {key(s) for s in cmp.spans["A"]}
    at_one = ner.compare_ner(stack, text, "pt", None, 1.0, task="spans")  # λ = 1 is A itself
    assert at_one.spans["merged"] == at_one.spans["A"] and not at_one.added and not at_one.removed
    # tagging the words of an eval row gives the same labels as tagging its text
    rows = ner.load_tagging_eval(stack, "pt", "spans", "test")
    assert ner.tag_words(stack, [rows[0]["words"]], "en", "spans")[0] == [
        w["label"] for w in ner.tag(stack, rows[0]["text"], "en", "spans")]


def test_bad_input(stack, monkeypatch):
    with pytest.raises(InputError, match="empty"):
        ner.compare_ner(stack, "   ", "pt", None, 0.5, task="spans")
    with pytest.raises(InputError, match="classification, not tagging"):
        ner.compare_ner(stack, "a text", "pt", None, 0.5, task="topic")
    huge = ner.compare_ner(stack, "insert a formula " * 2000, "pt", None, 0.5, task="spans")
    assert "cut" in huge.notice and len(huge.text) <= 2000
    monkeypatch.setattr(ner, "tag", lambda s, text, adapter, task=None: [
        {"start": 0, "end": len(text), "label": "O", "score": 1.0, "word": text}])
    quiet = ner.compare_ner(stack, "nothing to see", "pt", None, 0.5, task="spans")
    assert quiet.notice == "no spans tagged by A, the merge or B" and quiet.highlighted() == [
        ("nothing to see", None)]


def test_sweep_live_then_precomputed_and_flips(tiny_bundle, tmp_path):
    from langarith.model import LanguageStack

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    st = LanguageStack(bundle, device="cpu")
    with pytest.raises(InputError, match="0 .*and 1"):
        ner.tagging_sweep(st, "pt", None, [0.2, 0.5], task="spans")
    with pytest.raises(InputError, match="no stored dev-set tagging predictions"):
        ner.flips(st, "pt", 0.5, task="spans")
    grid = [0.0, 0.5, 1.0]
    live = ner.tagging_sweep(st, "pt", None, grid, task="spans")
    assert live["precomputed"] is False and (live["a"], live["b"]) == ("en", "es")
    assert live["a_alone"] == pytest.approx(live["points"][-1]["test"]["f1"])
    assert live["best_lam"] == grid[stats.choose_lambda([p["dev"]["f1"] for p in live["points"]], grid)]
    res, stored = tagging.evaluate_all(st, {"pt": ("en", "es", "zero_shot")}, grid, tmp_path / "cache",
                                       task="spans")
    c = res["zero_shot"]["pt"]
    for i, p in enumerate(c["points"]):  # counts stored per λ add up to the reported F1
        assert 100 * float(stats.metric(np.array(c["counts"]["test"][i]).sum(0))) == pytest.approx(p["test"]["f1"])
    assert set(res["premise"]) == {"es", "de"} and res["english"]["test"]["n"] == 2
    assert len(list((tmp_path / "cache").glob("pt_*__en+es@0.5.json"))) == 1  # resumable cache
    res["data"] = {"languages": {"en": {"train": {"sentences": 3, "UI": 4, "CODE": 1, "INPUT": 0, "KEY": 2}}}}
    md = tagging.report(res)
    assert "| en | train | 3 | 4 | 1 | 0 | 2 |" in md
    assert f"| pt (zero-shot) | en | es | {c['a_alone']:.1f} | {c['b_alone']:.1f} |" in md
    (bundle / "results").mkdir(exist_ok=True)
    (bundle / "results" / "spans.json").write_text(json.dumps(res))
    with gzip.open(bundle / "results" / "spans_predictions.json.gz", "wt") as f:
        json.dump(stored, f)
    with pytest.raises(InputError, match="no stored dev-set"):  # the page never falls back to test
        ner.flips(st, "pt", 0.5, task="spans")
    tagging.store_page_predictions(st, {"pt": ("en", "es", "zero_shot")}, grid, tmp_path / "dev_cache",
                                   bundle, task="spans")
    keys = {s: {r["key"] for r in ner.load_tagging_eval(st, "pt", "spans", s)} for s in ("dev", "test")}
    assert {f["key"] for f in ner.flips(st, "pt", 0.0, task="spans", limit=99)} <= keys["dev"]
    assert {f["key"] for f in ner.flips(st, "pt", 0.0, task="spans", limit=99, split="test")} <= keys["test"]
    pre = ner.tagging_sweep(st, "pt", None, grid, task="spans")
    assert pre["precomputed"] is True and pre["test_at_best"] == pytest.approx(live["test_at_best"])
    assert ner.tagging_sweep(st, "pt", "de", grid, task="spans")["precomputed"] is False  # other pair
    fl = ner.flips(st, "pt", 0.5, task="spans")
    assert all(f["tags"]["merged"] != f["tags"]["A"] or f["tags"]["merged"] != f["tags"]["B"] for f in fl)
    assert [f["merge_vs_a"] for f in fl] == sorted((f["merge_vs_a"] for f in fl), reverse=True)
    assert ner.flips(st, "pt", 1.0, task="spans") == [f for f in ner.flips(st, "pt", 1.0, task="spans")
                                                      if f["tags"]["merged"] == f["tags"]["A"]]
    with pytest.raises(InputError, match="grid"):
        ner.flips(st, "pt", 0.3, task="spans")
    counts = {c["lam"]: c for c in ner.flip_counts(st, "pt", task="spans", split="dev")}
    assert counts[1.0]["changed_vs_a"] == 0  # λ = 1 is A itself
    half = [f for f in ner.flips(st, "pt", 0.5, task="spans", limit=99) if f["tags"]["merged"] != f["tags"]["A"]]
    assert counts[0.5]["changed_vs_a"] == len(half)
    assert counts[0.5]["helped"] == sum(f["merge_vs_a"] > 0 for f in half)


def _cli(capsys, *args) -> tuple[int, dict | str]:
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else out.err)


def test_cli_task_flag(tiny_bundle, tmp_path, capsys):
    b = str(tiny_bundle)
    rc, out = _cli(capsys, "predict", "--bundle", b, "--target", "pt", "--lam", "0.7", "--task", "spans",
                   "--text", "draw a line and a shape")
    assert rc == 0 and out["task"] == "spans" and set(out["spans"]) == {"A", "merged", "B"}
    assert out["formula"] == "merged = 0.70·en + 0.30·es"
    rc, out = _cli(capsys, "predict", "--bundle", b, "--target", "pt", "--text", "draw a line")
    assert rc == 0 and "probs" in out and "ner" not in out  # the default task is still the topic
    rc, out = _cli(capsys, "sweep", "--bundle", b, "--target", "pt", "--points", "3", "--task", "spans")
    assert rc == 0 and [p["lam"] for p in out["points"]] == [0.0, 0.5, 1.0]
    assert "ci95" in out["bootstrap"]["gain_vs_a"] and out["task"] == "spans"
    rc, out = _cli(capsys, "export", "--bundle", b, "--target", "pt", "--lam", "0.5", "--task", "spans",
                   "--out", str(tmp_path / "ex"))
    assert rc == 0 and out["task_kind"] == "tagging"
    cfg = json.loads((tmp_path / "ex" / "task_adapter" / "head_config.json").read_text())
    assert cfg["config"]["num_labels"] == 5
    rc, err = _cli(capsys, "predict", "--bundle", b, "--target", "pt", "--task", "nope", "--text", "x")
    assert rc == 2 and "unknown task 'nope'" in err


def test_eval_subset_is_a_keyed_sample_alike_across_languages():
    keys = [f"sbasic/a{i:03d}.html#p" for i in range(50)] + [f"swriter/z{i:03d}.html#p" for i in range(50)]
    items = [{"key": k, "lang": l, "split": s, "words": ["w"], "tags": ["O"]}
             for l in ("en", "de") for k in keys for s in ("dev",)]
    items += [{"key": k, "lang": "en", "split": "test", "words": ["w"], "tags": ["O"]} for k in keys[:5]]
    en, de = tagging.eval_subset(items, "en", 20), tagging.eval_subset(items, "de", 20)
    assert [r["key"] for r in en if r["split"] == "dev"] == [r["key"] for r in de]  # same keys
    assert len(en) == 25 and len(de) == 20
    picked = {r["key"].split("/")[0] for r in de}
    assert picked == {"sbasic", "swriter"}  # a hash sample, not the alphabetically first keys


def test_word_offsets_exclude_the_leading_space(stack, monkeypatch):
    from transformers import AutoTokenizer

    # the real sentencepiece tokenizer maps "▁Format" to the space before the word too
    monkeypatch.setattr(stack, "tokenizer", AutoTokenizer.from_pretrained(str(ROOT / "assets" / "bundle" / "tokenizer")))
    monkeypatch.setattr(stack.model, "forward", _all_ui(stack.model.forward))
    text = "Choose  Format - Cells"
    words = ner.tag(stack, text, "en", "spans")
    assert [w["word"] for w in words] == ["Choose", "Format", "-", "Cells"]
    assert [text[s["start"]:s["end"]] for s in ner.entity_spans(words)] == ["Choose  Format - Cells"]


def _all_ui(forward):
    """A stand-in forward that tags every token B-UI then I-UI (ids out of the tiny vocabulary)."""
    import torch
    from types import SimpleNamespace

    def fake(input_ids=None, attention_mask=None, head=None, **kw):
        logits = torch.zeros(*input_ids.shape, 5)
        logits[:, 0, 1] = 1
        logits[:, 1:, 2] = 1
        return SimpleNamespace(logits=logits)

    return fake
