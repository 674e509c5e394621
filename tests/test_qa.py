"""Extractive QA in the ``xlmr`` profile through the M2QA adapters (MAD-X+Domain), loaded offline
from tiny stand-ins under the real repo ids: ``Stack(language or merged, domain, qa)``."""

from __future__ import annotations

import shutil

import pytest
import torch

from langarith import profiles
from langarith.loading import BundleError, InputError

QUESTION = "Angela Merkel met whom ?"
CONTEXT = "Angela Merkel met Emmanuel Macron in Paris on Tuesday . The United Nations has its headquarters"


@pytest.fixture(scope="module")
def xlmr(hub_cache):
    from langarith.model import LanguageStack

    return LanguageStack(profiles.load_profile("xlmr", cache_dir=hub_cache), device="cpu")


def test_catalogue_names_the_m2qa_stack():
    m = profiles.manifest_for("xlmr")
    (t,) = m["tasks"]
    assert t["kind"] == "extractive_qa"
    assert t["adapter"] == "hub:AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-qa-head"
    assert t["stack_before"] == [{"name": "m2qa_wiki",
                                  "adapter": "hub:AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-wiki"}]
    assert "AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-wiki" in profiles.hub_repos("xlmr", ["en"])
    row = next(r for r in profiles.list_profiles() if r["name"] == "xlmr")
    assert "qa" in row["tasks"] and row["not_yet"] == []


def test_three_adapter_stack_with_the_qa_head(xlmr):
    from adapters.composition import Stack

    assert xlmr.model.heads["qa"].config["head_type"] == "question_answering"
    with xlmr.use("en", "qa") as model:
        active = model.active_adapters
    assert isinstance(active, Stack) and list(active) == ["en", "m2qa_wiki", "qa"]
    with xlmr.use({"en": 0.5, "de": 0.5}, "qa") as model:
        assert list(model.active_adapters) == ["merged", "m2qa_wiki", "qa"]
    with xlmr.use("en") as model:  # fill-mask: the language adapter alone, as before
        assert list(model.active_adapters) == ["en"]


def test_answer_is_a_span_of_the_context(xlmr):
    from langarith import qa

    ans = qa.answer(xlmr, QUESTION, CONTEXT, "en")
    assert ans["text"] in CONTEXT and CONTEXT[ans["start"]:ans["end"]] == ans["text"]
    assert ans["no_answer"] == (ans["null_logit"] > ans["logit"]) == (ans["text"] == "")
    assert 0 < ans["score"] <= 1 and ans["cut_chars"] == 0
    assert len(ans["text"].split()) <= qa.MAX_ANSWER_TOKENS + 1


def test_no_answer_when_the_null_score_beats_the_best_span():
    from langarith.qa import best_span, null_wins

    ctx = torch.tensor([False, False, True, True])  # [CLS], question, two context tokens
    start, end = torch.tensor([4.0, 9.0, 1.0, 2.0]), torch.tensor([4.0, 9.0, 0.5, 1.0])
    s, e, logit, _ = best_span(start, end, ctx)
    assert (s, e, logit) == (3, 3, 3.0)  # the question's logits never count
    assert null_wins(start, end, logit) == (True, 8.0)
    start[0] = -10.0
    assert null_wins(start, end, logit) == (False, -6.0)


def test_long_context_is_cut_at_the_adapters_length_and_says_so(xlmr):
    from langarith import qa

    t = xlmr.bundle.task("qa")
    assert profiles.catalogue()["profiles"]["xlmr"]["tasks"][0]["max_seq_length"] == qa.MAX_QA_TOKENS == 512
    n = qa.max_qa_tokens(xlmr, t)
    assert n == min(512, xlmr.model.config.max_position_embeddings - 2)  # tiny model: 64
    long = " ".join([CONTEXT] * 6)
    ans = qa.answer(xlmr, QUESTION, long, "en")
    assert 0 < ans["cut_chars"] < len(long) and ans["end"] <= len(long) - ans["cut_chars"]


def test_best_span_respects_order_and_length():
    from langarith.qa import best_span

    start = torch.tensor([9.0, 0.0, 1.0, 5.0, 0.0])
    end = torch.tensor([9.0, 4.0, 0.0, 0.0, 3.0])
    ctx = torch.tensor([False, True, True, True, True])  # token 0 is the question
    s, e, logit, _ = best_span(start, end, ctx)
    assert (s, e, logit) == (3, 4, 8.0)  # not (3, 1): the end may not precede the start
    s, e, _, _ = best_span(start, end, ctx, max_len=0)
    assert s == e


def test_lambda_one_is_adapter_a_exactly(xlmr):
    from langarith import qa

    a = qa.answer(xlmr, QUESTION, CONTEXT, "en")
    cmp = qa.compare_qa(xlmr, QUESTION, CONTEXT, "en", "de", 1.0)
    assert cmp.answers["A"] == a and cmp.answers["merged"] == a  # same span, same score
    assert cmp.answers["B"] == qa.answer(xlmr, QUESTION, CONTEXT, "de")
    assert cmp.a == "en" and cmp.b == "de" and "1.00·en" in cmp.formula
    mid = qa.compare_qa(xlmr, QUESTION, CONTEXT, "nl", "de", 0.3)  # zero-shot target: A = en
    assert mid.a == "en" and mid.answers["merged"]["text"] in CONTEXT
    assert mid.answers["merged"]["logit"] != a["logit"]


def test_bad_requests(xlmr):
    from langarith import qa

    with pytest.raises(InputError, match="empty"):
        qa.answer(xlmr, QUESTION, "  ", "en")
    with pytest.raises(InputError, match="both en"):
        qa.compare_qa(xlmr, QUESTION, CONTEXT, "en", "en", 0.5)


def test_missing_m2qa_repos_fail_fast_offline(tmp_path):
    from hub_fixtures import build_hub_cache

    cache = build_hub_cache(tmp_path / "hub", mbert_langs=("en",), xlmr_langs=("en",), m2qa=False)
    with pytest.raises(profiles.ProfileUnavailable) as e:
        profiles.load_profile("xlmr", cache_dir=cache)
    msg = str(e.value)
    assert "AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-wiki" in msg
    assert "AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-qa-head" in msg
    assert "HF_HUB_OFFLINE" in msg and "fetch --profile xlmr" in msg


def test_qa_adapter_without_weights_is_refused(hub_cache, tmp_path):
    from langarith.model import LanguageStack

    snap = profiles.resolve_repo("AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-qa-head", hub_cache)
    broken = tmp_path / "qa"
    shutil.copytree(snap, broken)
    (broken / "pytorch_adapter.bin").unlink()
    cat = profiles.catalogue()
    import copy

    cat = copy.deepcopy(cat)
    cat["profiles"]["xlmr"]["tasks"][0]["adapter"] = str(broken)
    with pytest.raises(BundleError, match=r"has no weights file"):
        LanguageStack(profiles.load_profile("xlmr", cache_dir=hub_cache, cat=cat), device="cpu")


def test_page_answers_questions_for_qa_profiles(xlmr):
    from gradio_client import Client

    import conftest
    from langarith.page import build_demo

    demo = build_demo(xlmr).queue()
    port = conftest.free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        head, a, m, b = client.predict("en", "de", 1.0, QUESTION, CONTEXT, api_name="/qa")
        a, m, b = (x["value"] if isinstance(x, dict) and "__type__" in x else x for x in (a, m, b))
        assert "1.00·en" in head and a == m and a in CONTEXT and b in CONTEXT
    finally:
        demo.close()
