"""Issue 4, parts 3-4: bad input and hostile files. Every case gets a clear message — through the
Python API, the CLI (``cli.main`` in-process; test_cli.py runs it as a subprocess) and the page's
API (gradio_client, or raw HTTP where the client refuses to send the value) — and the next request
is served normally. test_engine.py / test_app.py / test_understanding.py cover the first cases
(empty text, λ out of range on ``tasks.compare``, a pickle through ``load_adapter_checked``...);
this file extends them, it does not repeat them."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys
import threading
import types
from pathlib import Path

import pytest
import torch

import conftest
from langarith import analysis, cli, share, tasks
from langarith.arithmetic import MergeError
from langarith.loading import BundleError, InputError
from langarith.model import LanguageStack, Merge

PT_TEXT = "insira uma fórmula na célula"
PT_MASK = "insira uma <mask> na célula"
NL_TEXT = "voeg een formule in de cel in"
REFUSED = (InputError, MergeError, BundleError)


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def compare(client, lam=0.45, target="pt", source="es", text=PT_TEXT, mask=PT_MASK):
    return client.predict(target, source, lam, text, mask, api_name="/compare")


def served(client):
    """The next request through the page's API is answered normally."""
    out = compare(client, 0.45)
    assert out[0] == "### `merged = 0.45·en + 0.55·es`"
    assert out[2]["label"] == "merged (λ = 0.45)"


def served_engine(stack):
    """The next engine request, from another thread: fails if a refusal left the lock held."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("c", tasks.compare(stack, PT_TEXT, "pt", "es", 0.3)))
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the next request hung"
    assert out["c"].formula == "merged = 0.30·en + 0.70·es"


def app_error(client, fn, match: str):
    from gradio_client.exceptions import AppError, ValidationError

    with pytest.raises((AppError, ValidationError), match=match):  # refused by the engine / at the door
        fn()
    served(client)


def run_cli(capsys, *args) -> tuple[int, dict | list | None, str]:
    """``python -m langarith ARGS`` in-process: exit code, parsed stdout, stderr."""
    capsys.readouterr()
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse errors, missing bundle
        rc = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if out.strip() else None), err


def cli_refuses(capsys, msg: str, *args):
    rc, out, err = run_cli(capsys, *args)
    assert rc != 0 and out is None, (rc, out, err)
    assert msg in err, err


def copy_bundle(tiny_bundle: Path, dest: Path) -> Path:
    shutil.copytree(tiny_bundle, dest)
    return dest


# --- empty and huge text ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\t  \n"])
def test_empty_text_through_the_page_and_cli(client, capsys, tiny_bundle, text):
    app_error(client, lambda: compare(client, text=text), "text is empty")
    cli_refuses(capsys, "text is empty", "predict", "--bundle", tiny_bundle, "--target", "pt",
                "--text", text or "  ")


def long_text(n: int = 100_000) -> str:
    """n characters of Portuguese whose longest word comes last (beyond any cut)."""
    tail = " extraordinariamente"
    body = ("insira uma fórmula na célula " * (n // 29 + 1))[: n - len(tail)]
    text = body.rstrip() + tail
    text += "a" * (n - len(text))  # pad to exactly n characters (lengthens the last word)
    assert len(text) == n and text == text.strip()
    return text


def test_huge_text_is_cut_with_a_notice_that_reaches_the_caller(stack, client, capsys, tiny_bundle):
    text = long_text()
    notice = "text cut from 100,000 to 2,000 characters"
    # the page: the fill-mask probe the page derives from the text (text.submit -> mask_a_word)
    probe = tasks.mask_a_word(text)
    assert probe.index("<mask>") < tasks.MAX_CHARS, "the automatic probe must survive the cut"
    out = compare(client, 0.3, text=text, mask=probe)
    assert out[0] == f"### `merged = 0.30·en + 0.70·es`\n\n*{notice}*"
    cut = compare(client, 0.3, text=text[: tasks.MAX_CHARS], mask=probe)
    assert "cut" not in cut[0]
    for i in (1, 2, 3):  # A, merged, B: the prediction is that of the first 2,000 characters
        assert out[i] == cut[i]
    served(client)
    # the Python API
    c = tasks.compare(stack, text, "pt", "es", 0.3, mask_text=probe)
    assert c.notice == notice and c.fill_mask["merged"]
    served_engine(stack)
    # the CLI (no --mask-text: it masks a word of the text itself)
    rc, js, err = run_cli(capsys, "predict", "--bundle", tiny_bundle, "--target", "pt", "--lam", "0.3",
                          "--text", text)
    assert rc == 0, err
    assert js["notice"] == notice and js["probs"]["merged"] == pytest.approx(c.probs["merged"], abs=1e-6)


# --- unknown and adapter-less languages ---------------------------------------------------------


def test_unknown_language(stack, client, capsys, tiny_bundle, tmp_path):
    known = "this bundle has: de, en, es, nl, pt"
    # the page: the dropdowns refuse at the door, before our code and the queue (page.checks:
    # HTTP 422, which gradio_client raises as its ValidationError); a typed N-way recipe reaches
    # the engine
    from gradio_client.exceptions import ValidationError

    for endpoint, args in (("/set_target", ("xx", "en", "")), ("/sweep", ("xx", "es"))):
        with pytest.raises(ValidationError, match="Target language, parameter target: must be one of "
                                                  r"its choices \(en, es, de, pt, nl\); got 'xx'"):
            client.predict(*args, api_name=endpoint)
        served(client)
    app_error(client, lambda: client.predict("pt", "es", 0.5, PT_TEXT, PT_MASK, "nway", "xx: 0.5, en: 0.5",
                                             0.5, 0, False, api_name="/compare_recipe"),
              f"unknown language 'xx'; {known}")
    # the Python API
    for call in (lambda: tasks.sweep(stack, "xx"),
                 lambda: analysis.rank_sources(stack, "xx"),
                 lambda: tasks.fill_mask(stack, [PT_MASK], ["xx"]),
                 lambda: stack.save_merged({"xx": 0.5, "en": 0.5}, tmp_path / "m")):
        with pytest.raises(InputError, match=f"unknown language 'xx'; {known}"):
            call()
    assert not (tmp_path / "m").exists()
    served_engine(stack)
    # the CLI
    for args in (("sweep", "--target", "xx"), ("similarity", "--target", "xx"),
                 ("merge", "--target", "pt", "--source", "xx", "--out", tmp_path / "m"),
                 ("export", "--target", "xx", "--out", tmp_path / "m")):
        cli_refuses(capsys, "unknown language 'xx'", *args, "--bundle", tiny_bundle)
    assert not (tmp_path / "m").exists()


def test_adapter_less_language_where_an_adapter_is_required(stack, client, capsys, tiny_bundle, tmp_path):
    app_error(client, lambda: client.predict("pt", "es", 0.5, PT_TEXT, PT_MASK, "nway", "nl: 0.5, en: 0.5",
                                             0.5, 0, False, api_name="/compare_recipe"),
              r"Dutch \(nl\) has no language adapter")
    app_error(client, lambda: client.predict("pt", "pt", 0.5, "linear", "", 0.5, 0, False,
                                             api_name="/export"), r"parameter source: must be one of its choices \(en, es, de\); got 'pt'")
    for call in (lambda: tasks.sweep(stack, "pt", "nl"),
                 lambda: stack.save_merged({"en": 0.5, "pt": 0.5}, tmp_path / "m"),
                 lambda: share.Recipe(target="pt", source="nl").merge(stack),
                 lambda: analysis.weight_geometry(stack, "en", "nl", 0.5),
                 lambda: tasks.classify(stack, [PT_TEXT], Merge.of({"en": 0.5, "pt": 0.5}), "topic")):
        with pytest.raises(InputError, match=r"\((nl|pt)\) has no language adapter"):
            call()
    assert not (tmp_path / "m").exists()
    served_engine(stack)
    for args in (("merge", "--target", "pt", "--source", "nl", "--out", tmp_path / "m"),
                 ("sweep", "--target", "pt", "--source", "nl"),
                 ("export", "--target", "es", "--source", "pt", "--out", tmp_path / "m")):
        cli_refuses(capsys, "has no language adapter", *args, "--bundle", tiny_bundle)
    assert not (tmp_path / "m").exists()


# --- λ: NaN, ±inf, out of range -------------------------------------------------------------------


@pytest.mark.parametrize("lam,msg", [(float("nan"), "λ must be a finite number"),
                                     (float("inf"), "λ must be a finite number"),
                                     (float("-inf"), "λ must be a finite number"),
                                     (1.5, r"must lie in \[0, 1\]"),  # λ, or weights
                                     (-0.25, r"must lie in \[0, 1\]")])
def test_bad_lambda_python_api(stack, tmp_path, lam, msg):
    with stack.lock:
        stack.write_merge({"en": 0.25, "es": 0.75})
        before = stack.slot.flat.clone()
    for call in (lambda: tasks.sweep(stack, "pt", "es", lambdas=(0.0, lam, 1.0)),
                 lambda: share.Recipe(target="pt", source="es", lam=lam).merge(stack),
                 lambda: share.export(stack, share.Recipe(target="pt", source="es", lam=lam), tmp_path / "x"),
                 lambda: tasks.fill_mask(stack, [PT_MASK], [{"en": lam, "es": 1 - lam}])):
        with pytest.raises(MergeError, match=msg):
            call()
    with pytest.raises(MergeError, match="finite|sum to 1|lie in"):
        stack.save_merged({"en": lam, "es": 1 - lam}, tmp_path / "m")
    assert not (tmp_path / "m").exists() and not (tmp_path / "x" / "merged_adapter").exists()
    assert torch.equal(stack.slot.flat, before), "a refused λ must not touch the live slot"
    served_engine(stack)


def test_extrapolation_is_bounded(stack):
    for lam in (11.0, -10.5):
        with pytest.raises(MergeError, match="far outside"):
            share.Recipe(target="pt", source="es", lam=lam, allow_extrapolation=True).merge(stack)
    served_engine(stack)


@pytest.mark.parametrize("lam,msg", [("inf", "λ must be a finite number"),
                                     ("-inf", "λ must be a finite number"),
                                     ("-0.5", "λ must lie in [0, 1]"),
                                     ("1e999", "λ must be a finite number")])
def test_bad_lambda_cli(capsys, tiny_bundle, tmp_path, lam, msg):
    cli_refuses(capsys, msg, "predict", "--bundle", tiny_bundle, "--target", "pt", f"--lam={lam}")
    cli_refuses(capsys, msg, "export", "--bundle", tiny_bundle, "--target", "pt", f"--lam={lam}",
                "--out", tmp_path / "x")
    assert not (tmp_path / "x" / "merged_adapter").exists()
    rc, out, err = run_cli(capsys, "predict", "--bundle", tiny_bundle, "--target", "pt", "--lam", "0.2")
    assert rc == 0 and out["formula"] == "merged = 0.20·en + 0.80·es", err


def test_bad_lambda_through_the_page(client, app_url):
    """gradio_client will not even encode NaN/±inf (JSON has none); a hostile caller can, over raw
    HTTP. Every one, and a string (which once failed inside Gradio's slider with no message), is
    refused at the door (page.checks: HTTP 422, before the queue) with the slider's line."""
    with pytest.raises(ValueError, match="not JSON compliant"):
        compare(client, float("nan"))
    line = "λ (weight of A), parameter lam: must be a number between 0 and 1; got "
    app_error(client, lambda: compare(client, -0.1), re.escape(line + "-0.1"))
    import httpx

    url = f"{app_url}gradio_api/call/compare"
    for raw, got in (("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e999", "inf"),
                     ('"abc"', "'abc'"), ("null", None)):
        body = '{"data": ["pt", "es", %s, %s, %s]}' % (raw, json.dumps(PT_TEXT), json.dumps(PT_MASK))
        r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 422, r.text
        [refusal] = r.json()["detail"]
        assert refusal["parameter_name"] == "lam" and refusal["is_valid"] is False
        assert refusal["message"] == (line + got if got else
                                      "λ (weight of A), parameter lam: is missing (null)"), refusal
        served(client)


# --- merging adapters of different shapes or configs ------------------------------------------------


def _variant(tiny_bundle: Path, dest: Path, config, *, lie: bool = False) -> Path:
    """A bundle copy whose ``de`` adapter has another config (``lie``: the weights do, the config
    file still claims the original one)."""
    from adapters import BertAdapterModel

    bundle = copy_bundle(tiny_bundle, dest)
    model = BertAdapterModel.from_pretrained(str(bundle / "base"))
    torch.manual_seed(3)
    model.add_adapter("de", config=config)
    shutil.rmtree(bundle / "adapters" / "de")
    model.save_adapter(str(bundle / "adapters" / "de"), "de", use_safetensors=True)
    if lie:
        shutil.copy(tiny_bundle / "adapters" / "de" / "adapter_config.json", bundle / "adapters" / "de")
    return bundle


@pytest.fixture(scope="module")
def wide_bundle(tiny_bundle, tmp_path_factory):
    from adapters import SeqBnInvConfig

    return _variant(tiny_bundle, tmp_path_factory.mktemp("wide") / "b", SeqBnInvConfig(reduction_factor=4))


def test_merge_of_adapters_with_different_shapes_is_refused(wide_bundle, capsys, tmp_path):
    st = LanguageStack(wide_bundle, device="cpu")  # loads: one odd adapter spoils only its own merges
    msg = r"adapters en and de have different configs .*\(reduction_factor: 2 vs 4\)"
    for call in (lambda: tasks.compare(st, NL_TEXT, "nl", "de", 0.5),
                 lambda: st.save_merged({"en": 0.5, "de": 0.5}, tmp_path / "m"),
                 lambda: share.Recipe(target="pt", weights={"en": 0.5, "de": 0.5}).merge(st),
                 lambda: share.Recipe(target="nl", source="de", method="ties", density=0.5).merge(st),
                 lambda: tasks.sweep(st, "nl", "de")):
        with pytest.raises(MergeError, match=msg):
            call()
    with pytest.raises(MergeError, match=r"tensor '.*adapter_down.0.bias' has shape \(16,\) vs \(8,\)"):
        analysis.weight_geometry(st, "en", "de", 0.5)  # the arithmetic layer names the tensor
    assert not (tmp_path / "m").exists()
    # the rest of the bundle still works, similarity included (it leaves the odd adapter out)
    assert tasks.compare(st, PT_TEXT, "pt", "es", 0.5).formula == "merged = 0.50·en + 0.50·es"
    assert analysis.similarity(st)["languages"] == ["en", "es"]
    with pytest.raises(InputError, match="another config"):
        analysis.rank_sources(st, "de")
    from langarith.page import build_demo

    build_demo(st)  # the page starts on such a bundle
    cli_refuses(capsys, "different configs", "predict", "--bundle", wide_bundle, "--target", "nl")


def test_merge_of_adapters_with_different_configs_same_shapes_is_refused(tiny_bundle, tmp_path):
    from adapters import SeqBnInvConfig

    b = _variant(tiny_bundle, tmp_path / "gelu", SeqBnInvConfig(reduction_factor=2, non_linearity="gelu"))
    st = LanguageStack(b, device="cpu")
    with pytest.raises(MergeError, match=r"different configs .*non_linearity: 'relu' vs 'gelu'"):
        tasks.compare(st, NL_TEXT, "nl", "de", 0.5)
    assert tasks.compare(st, PT_TEXT, "pt", "es", 0.5).formula == "merged = 0.50·en + 0.50·es"


def test_weights_that_contradict_their_config_are_refused(tiny_bundle, tmp_path):
    from adapters import SeqBnInvConfig

    b = _variant(tiny_bundle, tmp_path / "liar", SeqBnInvConfig(reduction_factor=4), lie=True)
    with pytest.raises(BundleError, match=r"cannot load adapter 'de' from .*adapters/de: .*size mismatch"
                                          r".*more lines\)$"):
        LanguageStack(b, device="cpu")


# --- missing, corrupt or truncated files in a bundle -----------------------------------------------


def _truncate(p: Path):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


BROKEN = {
    "adapter weights missing": (lambda b: (b / "adapters/de/adapter.safetensors").unlink(),
                                r"adapters/de has no weights file \(adapter.safetensors"),
    "adapter weights truncated": (lambda b: _truncate(b / "adapters/de/adapter.safetensors"),
                                  r"adapters/de/adapter.safetensors is corrupt or truncated"),
    "adapter weights garbage": (lambda b: (b / "adapters/es/adapter.safetensors").write_bytes(os.urandom(4096)),
                                r"adapters/es/adapter.safetensors is corrupt or truncated"),
    "adapter weights empty": (lambda b: (b / "adapters/en/adapter.safetensors").write_bytes(b""),
                              r"adapters/en/adapter.safetensors is corrupt or truncated"),
    "adapter config corrupt": (lambda b: (b / "adapters/de/adapter_config.json").write_text("{oops"),
                               r"adapters/de/adapter_config.json is not valid JSON"),
    "adapter folder missing": (lambda b: shutil.rmtree(b / "adapters/de"),
                               r"adapters/de has no adapter_config.json"),
    "task head truncated": (lambda b: _truncate(b / "tasks/topic/model_head.safetensors"),
                            r"tasks/topic/model_head.safetensors is corrupt or truncated"),
    "init adapter truncated": (lambda b: _truncate(b / "adapters/_init/adapter.safetensors"),
                               r"adapters/_init/adapter.safetensors is corrupt or truncated"),
    "MLM head missing": (lambda b: shutil.rmtree(b / "heads/mlm"), r"masked-LM head: .*heads/mlm is missing"),
    "base weights truncated": (lambda b: _truncate(b / "base/model.safetensors"),
                               r"base/model.safetensors is corrupt or truncated"),
    "tokenizer missing": (lambda b: shutil.rmtree(b / "tokenizer"), r"tokenizer: .*/tokenizer is missing"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_bundle_file_is_refused_naming_it(stack, tiny_bundle, tmp_path, case):
    mutate, msg = BROKEN[case]
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    mutate(bundle)
    with pytest.raises(BundleError, match=msg):
        LanguageStack(bundle, device="cpu")
    served_engine(stack)


def test_broken_bundle_through_the_cli_and_app_start(tiny_bundle, tmp_path, capsys):
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    _truncate(bundle / "adapters" / "es" / "adapter.safetensors")
    cli_refuses(capsys, "adapters/es/adapter.safetensors is corrupt or truncated",
                "predict", "--bundle", bundle, "--target", "pt")
    with pytest.raises(SystemExit, match=r"^error: .*adapters/es/adapter.safetensors is corrupt"):
        cli.launch_app(["--bundle", str(bundle), "--port", str(conftest.free_port())])


# --- hostile files: pickles that run code -------------------------------------------------------


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _pickle(path: Path, marker: Path, writer: str = "pickle"):
    if writer == "torch.save":
        torch.save({"weight": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"weight": Payload(marker)}))


HOSTILE = {  # where: (file to remove, pickle to write, writer, message)
    "language adapter": ("adapters/de/adapter.safetensors", "adapters/de/pytorch_adapter.bin", "pickle",
                         r"cannot load adapter 'de' from .*adapters/de: .*pickle in pytorch_adapter.bin"),
    "shared init": ("adapters/_init/adapter.safetensors", "adapters/_init/pytorch_adapter.bin", "torch.save",
                    r"cannot load adapter '_init' .*pickle in pytorch_adapter.bin"),
    "task adapter": ("tasks/topic/adapter.safetensors", "tasks/topic/pytorch_adapter.bin", "pickle",
                     r"cannot load adapter 'topic' .*pickle in pytorch_adapter.bin"),
    "task head": ("tasks/topic/model_head.safetensors", "tasks/topic/pytorch_model_head.bin", "torch.save",
                  r"cannot load adapter 'topic' .*pickle in pytorch_model_head.bin"),
    "MLM head": ("heads/mlm/pytorch_model_head.bin", "heads/mlm/pytorch_model_head.bin", "torch.save",
                 r"cannot load the masked-LM head from .*heads/mlm: .*pickle in pytorch_model_head.bin"),
    "base encoder": ("base/model.safetensors", "base/pytorch_model.bin", "torch.save",
                     r"cannot load the base encoder from .*base: .*pickle in pytorch_model.bin"),
}


def test_the_payload_is_live(tmp_path):
    """Control: unpickling the payload the way a careless loader would does run it."""
    marker = tmp_path / "control"
    _pickle(tmp_path / "x.bin", marker, "torch.save")
    torch.load(tmp_path / "x.bin", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("where", list(HOSTILE))
def test_hostile_pickle_in_a_bundle_never_runs(stack, tiny_bundle, tmp_path, where):
    remove, write, writer, msg = HOSTILE[where]
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    marker = tmp_path / "pwned"
    (bundle / remove).unlink()
    _pickle(bundle / write, marker, writer)
    with pytest.raises(BundleError, match=msg + r".*it was not run"):
        LanguageStack(bundle, device="cpu")
    assert not marker.exists(), "loading the bundle ran code from a pickle"
    served_engine(stack)


def test_hostile_pickle_beside_safetensors_is_never_read(tiny_bundle, tmp_path):
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    marker = tmp_path / "pwned"
    _pickle(bundle / "adapters" / "es" / "pytorch_adapter.bin", marker)
    st = LanguageStack(bundle, device="cpu")
    assert not marker.exists()
    assert tasks.compare(st, PT_TEXT, "pt", "es", 0.5).formula == "merged = 0.50·en + 0.50·es"


def test_hostile_pickle_as_a_recipe_upload(client, tmp_path):
    from gradio_client import handle_file

    marker = tmp_path / "pwned"
    path = tmp_path / "recipe.json"
    _pickle(path, marker)
    app_error(client, lambda: client.predict(handle_file(str(path)), api_name="/load_recipe"),
              "the recipe is not valid JSON")
    assert not marker.exists()


# --- malformed recipes ------------------------------------------------------------------------------

R = '{"langarith_recipe": 1, "target": "pt", %s}'


@pytest.mark.parametrize("text,msg", [
    ("x" * 100_001, "the recipe is too large"),
    ("[" * 50_000, "nested too deeply"),
    ('{"a":' * 20_000, "nested too deeply"),
    (R % '"lam": %s' % ("1" * 5000), "not valid JSON: Exceeds the limit"),
    (bytes(range(256)) * 4, "not valid JSON"),
    ("null", "not a langarith recipe"),
    ("[]", "not a langarith recipe"),
    (R % '"lam": NaN', "'lam' must be a finite number"),
    (R % '"lam": 1e999', "'lam' must be a finite number"),
    (R % '"lam": 1%s' % ("0" * 400), "'lam' must be a finite number"),
    (R % '"lam": true', "'lam' must be a finite number"),
    (R % '"seed": 1e300', "'seed' must be a whole number"),
    (R % '"seed": 1.5', "'seed' must be a whole number"),
    (R % '"seed": -1', "'seed' must be a whole number"),
    (R % '"density": true', "'density' must lie in"),
    (R % '"source": 5', "'source' has the wrong type"),
    (R % '"weights": [0.5, 0.5]', "'weights' has the wrong type"),
    (R % '"weights": {"en": "x"}', "weights must map language codes to numbers"),
    (R % '"allow_extrapolation": "yes"', "'allow_extrapolation' has the wrong type"),
])
def test_malformed_recipe_from_json(text, msg):
    with pytest.raises(InputError, match=msg):
        share.Recipe.from_json(text)


@pytest.mark.parametrize("content,msg", [
    ("not json at all", "the recipe is not valid JSON"),
    ('{"target": "pt"}', "not a langarith recipe"),
    (R % '"colour": "red"', r"unknown recipe field\(s\): colour"),
    (R % '"lam": "0.5"', "'lam' must be a finite number"),
    ('{"langarith_recipe": 1, "target": "xx"}', "unknown language 'xx'"),
    (R % '"source": "nl"', r"Dutch \(nl\) has no language adapter"),
    (R % '"method": "magic"', "unknown merge method 'magic'"),
    (R % '"seed": 1e300', "'seed' must be a whole number"),
    ("[" * 60_000, "nested too deeply"),
    ('{"langarith_recipe": 1, "target": "pt", "pad": "%s"}' % ("a" * 200_000), "too large to be a recipe"),
])
def test_malformed_recipe_upload(client, tmp_path, content, msg):
    from gradio_client import handle_file

    path = tmp_path / "recipe.json"
    path.write_text(content, encoding="utf-8")
    app_error(client, lambda: client.predict(handle_file(str(path)), api_name="/load_recipe"), msg)


def test_recipe_upload_of_another_type_and_then_a_good_one(client, tmp_path):
    from gradio_client import handle_file

    good = share.Recipe(target="pt", source="es", lam=0.3).to_json()
    (tmp_path / "recipe.txt").write_text(good)
    app_error(client, lambda: client.predict(handle_file(str(tmp_path / "recipe.txt")),
                                             api_name="/load_recipe"), "Invalid file type")
    (tmp_path / "recipe.json").write_text(good)
    out = client.predict(handle_file(str(tmp_path / "recipe.json")), api_name="/load_recipe")
    assert out[:4] == ("pt", "es", 0.3, "linear") and "Loaded recipe" in out[-1]


# --- malformed URL parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("lam,msg", [("abc", "not a number: 'abc'"), ("", "not a number: ''"),
                                     ("0x1", "not a number"), ("NaN", "finite"), ("inf", "finite"),
                                     ("-Infinity", "finite"), ("1e999", "finite"),
                                     ("-0.5", r"lie in \[0, 1\]"), ("7", r"lie in \[0, 1\]")])
def test_malformed_lambda_in_a_link(lam, msg):
    with pytest.raises((InputError, MergeError), match=msg):
        share.from_query({"target": "pt", "lam": lam})
    assert share.from_query({"target": "pt", "lam": " 0.25 "}).lam == 0.25


@pytest.fixture(scope="module")
def on_url(stack):
    """The page's load handler for ``?target=..&source=..&lam=..`` (as the browser would call it)."""
    from langarith.page import build_demo

    demo = build_demo(stack)
    fn = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_url")
    return lambda **q: fn(types.SimpleNamespace(query_params=q))


@pytest.mark.parametrize("query,msg", [
    (dict(target="xx"), "Link ignored: unknown language 'xx'; this bundle has: de, en, es, nl, pt"),
    (dict(target="pt", lam="abc"), "Link ignored: λ in the link is not a number: 'abc'"),
    (dict(target="pt", lam="nan"), "Link ignored: λ must be a finite number, got nan"),
    (dict(target="pt", lam="2"), "Link ignored: λ must lie in [0, 1], got 2.0 (extrapolation is off)"),
    (dict(target="pt", source="xx"), "Link ignored: unknown language 'xx'"),
    (dict(target="pt", source="nl"), "Link ignored: nl has no adapter"),
    (dict(target="pt", task="qa"), "Link ignored: unknown task 'qa' in the link; this page has: "),
    (dict(target="pt", example="99"), "Link ignored: the link's example 99 is not one of pt's"),
    (dict(target="pt", example="-1"), "Link ignored: example in the link must be a whole number ≥ 0"),
    (dict(target="pt", step="two"), "Link ignored: step in the link must be a whole number ≥ 0"),
    (dict(target="pt", text="x" * 1001), "Link ignored: the link's text is 1,001 characters"),
    (dict(target="pt", text="hi", example="0"), "Link ignored: the link names both an example and a text"),
])
def test_malformed_link_is_ignored_with_a_reason(on_url, query, msg):
    *fields, note = on_url(**query)
    assert note.startswith(msg), note
    assert all(f == {"__type__": "update"} for f in fields)  # the page keeps its defaults
    keep = {"__type__": "update"}
    none = dict(task=None, text=None, step=None, what="")
    assert on_url(target="pt", source="es", lam="0.7") == ("pt", "es", 0.7, keep, keep, keep, keep, none,
                                                           "Restored from the link: pt.")


def test_a_class_link_restores_the_task_the_text_and_the_tour_step(on_url, stack):
    keep = {"__type__": "update"}
    ex = stack.bundle.language("pt").examples
    task = [t for t in stack.bundle.tasks.values() if t.kind == "tagging"][0].name
    *_, shown_task, lesson, note = on_url(target="pt", lam="0.3", task=task, example="1", step="3")
    assert (shown_task, lesson["text"], lesson["step"]) == (task, ex[1], 3)
    assert note == "Restored from the link: pt, the task, the text, tour step 3."
    *_, shown_task, lesson, note = on_url(target="pt", text="Um texto da aula.")
    assert (shown_task, lesson["text"], lesson["step"]) == (keep, "Um texto da aula.", None)


def test_a_per_layer_link_restores_the_method_and_its_anchors(on_url):
    assert on_url(target="pt", source="es", lam="0.5", lam_layers="0.2,0.8", lam_inv="0.4") == (
        "pt", "es", 0.5, "layer_gradient", "0.2, 0.8", 0.4, {"__type__": "update"},
        dict(task=None, text=None, step=None, what=""), "Restored from the link: pt.")
    *fields, note = on_url(target="pt", lam_layers="0.2,nan")
    assert note.startswith("Link ignored:") and all(f == {"__type__": "update"} for f in fields)
    *fields, note = on_url(target="pt", lam_layers="0.2,1.5")
    assert note.startswith("Link ignored:") and "1.5" in note
