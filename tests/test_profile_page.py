"""The page on hub profiles (offline stand-ins under the real repo ids): NER spans for mbert-ner,
fill-mask only for xlmr, driven through gradio_client like a person's browser would."""

from __future__ import annotations

import pytest

import conftest


def _value(update):
    """Components returned as ``gr.update(value=..., label=...)`` arrive as dicts."""
    return update["value"] if isinstance(update, dict) and "__type__" in update else update


@pytest.mark.parametrize("profile,target,source", [("mbert-ner", "is", "de"), ("xlmr", "en", "de")])
def test_page_serves_hub_profiles(hub_cache, profile, target, source):
    from gradio_client import Client

    from langarith import profiles
    from langarith.model import LanguageStack
    from langarith.page import build_demo

    stack = LanguageStack(profiles.load_profile(profile, cache_dir=hub_cache), device="cpu")
    demo = build_demo(stack).queue()
    port = conftest.free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        text = "Angela Merkel met Emmanuel Macron in Paris ."
        mask = f"Angela Merkel met Emmanuel Macron in {stack.tokenizer.mask_token} ."
        out = client.predict(target, source, 0.3, text, mask, api_name="/compare")
        assert "0.30·" in out[0] and f"·{source}" in out[0]
        head, la, lm, lb, pa, pm, pb, geo, hid = out
        fa, fm, fb = client.predict(target, source, 0.3, text, mask, api_name="/fill_mask")
        if profile == "mbert-ner":
            # HighlightedText: the text's segments, reassembled, are the input text
            segs = _value(pm)
            assert "".join(seg["token"] for seg in segs).replace(" ", "") == text.replace(" ", "")
        fm = _value(fm)
        assert fm["label"] and len(fm["confidences"]) == 5
        fa1, fm1, _ = client.predict(target, source, 1.0, text, mask, api_name="/fill_mask")
        assert _value(fm1)["label"] == _value(fa1)["label"]  # λ = 1: the merge is A
    finally:
        demo.close()
