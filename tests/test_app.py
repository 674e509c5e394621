"""Layer 4: the Gradio page, launched on a local port and driven through its API with gradio_client."""

from __future__ import annotations

import json

import pytest

from langarith import tasks

PT_TEXT = "insira uma fórmula na célula"
PT_MASK = "insira uma <mask> na célula"


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def confidences(label_update) -> dict[str, float]:
    value = label_update["value"] if "__type__" in label_update else label_update
    return {c["label"]: c["confidence"] for c in value["confidences"]}


def compare(client, lam, target="pt", source="es", text=PT_TEXT, mask=PT_MASK):
    return client.predict(target, source, lam, text, mask, api_name="/compare")


def test_compare_formula_and_probabilities_follow_lambda(stack, client):
    heads = {}
    for lam in (0.3, 0.8, 1.0):
        out = compare(client, lam)
        assert len(out) == 9  # predictions and per-layer plots only (issue 20): fill-mask is its own call
        head, a, merged, b, sa, sm, sb, geometry, hidden = out
        fa, fm, fb = client.predict("pt", "es", lam, PT_TEXT, PT_MASK, api_name="/fill_mask")
        heads[lam] = head
        ref = tasks.compare(stack, PT_TEXT, "pt", "es", lam, mask_text=PT_MASK)
        assert ref.formula in head
        assert merged["label"] == f"merged (λ = {lam:.2f})"
        assert a["label"] == "A = en alone" and b["label"] == "B = es alone"
        for which, upd in (("merged", merged), ("A", a), ("B", b)):
            got = confidences(upd)
            assert set(got) == set(ref.labels)
            for label, p in zip(ref.labels, ref.probs[which]):
                assert got[label] == pytest.approx(p, abs=1e-6), (lam, which, label)
            assert upd["value"]["label"] == ref.prediction(which)
        for which, upd in (("A", fa), ("merged", fm), ("B", fb)):
            assert list(confidences(upd)) == [t for t, _ in ref.fill_mask[which]]
            assert [p for _, p in ref.fill_mask[which]] == pytest.approx(list(confidences(upd).values()), abs=1e-6)
        for plot in (geometry, hidden):
            assert f"λ = {lam:.2f}" in plot["label"]  # the caption: the plot's numbers in words (issue 39)
            plot = plot["value"]
            assert plot["type"] == "plotly"
            fig = json.loads(plot["plot"])
            assert fig["data"] and f"λ={lam:.2f}" in fig["layout"]["title"]["text"]
    assert heads[0.3] == "### `merged = 0.30·en + 0.70·es`"
    assert heads[0.8] == "### `merged = 0.80·en + 0.20·es`"
    assert len(set(heads.values())) == 3
    # at λ=1 the merged stack is A
    out = compare(client, 1.0)
    assert confidences(out[2]) == pytest.approx(confidences(out[1]), abs=1e-6)


def test_set_target(stack, client):
    """A target's first text is a dev item on which A, the merge at λ = 0.5 and B disagree,
    labelled so; never a test item."""
    for target, src, a in (("es", "en", "es"), ("pt", "es", "en")):
        source, example, text, mask_text, info = client.predict(target, "en", "", api_name="/set_target")
        assert source["value"] == src
        assert text == example["value"] and [c[1] for c in example["choices"]][0] == text
        assert "<mask>" in mask_text and f"**{a}**" in info
        assert ("enhancement" if a == target else "zero-shot") in info
        assert "from the dev set; the merge changes this prediction" in info
        splits = {r["text"]: r["split"] for r in tasks.load_eval(stack, target)}
        assert splits[text] == "dev"
        cmp = tasks.compare(stack, text, target, src, 0.5)  # independent of the precomputed flips
        assert len({cmp.prediction(w) for w in ("A", "merged", "B")}) > 1


def test_bad_input_gives_error_and_next_call_works(client):
    from gradio_client.exceptions import AppError, ValidationError

    # The slider's range and the dropdown's choices are checked at the door (page.checks: HTTP
    # 422, gradio_client's ValidationError); the engine refuses an empty text.
    with pytest.raises(ValidationError, match="λ .weight of A., parameter lam: must be a number between 0 and 1"):
        compare(client, 1.5)
    with pytest.raises(AppError, match="text is empty"):
        compare(client, 0.5, text="   ")
    with pytest.raises(ValidationError, match="parameter source: must be one of its choices"):
        compare(client, 0.5, source="nl")
    out = compare(client, 0.45)
    assert out[0] == "### `merged = 0.45·en + 0.55·es`"


def test_sweep_export_and_recipe_through_the_page(client, tmp_path):
    """The λ sweep (with gr.Progress), export and recipe upload endpoints, as the page calls them."""
    from gradio_client import handle_file

    fig, note = client.predict("pt", "es", api_name="/sweep")
    assert "Best λ on dev" in note
    zip_path, recipe_path, note = client.predict("pt", "es", 0.3, "ties", "", 0.5, 0, False,
                                                  api_name="/export")
    assert zip_path.endswith(".zip") and "TIES" in note and "?target=pt&lam=0.3&source=es" in note
    recipe = json.loads(open(recipe_path).read())
    assert recipe["method"] == "ties" and recipe["lam"] == 0.3
    recipe["lam"] = 0.8
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    out = client.predict(handle_file(str(path)), api_name="/load_recipe")
    assert out[0] == "pt" and out[2] == 0.8 and out[3] == "ties"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(Exception, match="not valid JSON"):
        client.predict(handle_file(str(bad)), api_name="/load_recipe")
