"""Run by tests/test_trust.py in a child process whose path holds the stand-in ``kernels``
(tests/standins): every project path that hands a config to transformers or adapters is given a
config carrying each key of ``trust.REFUSED``, and what each answered is printed as JSON.

    python tests/trust_probe.py MODE TINY_BUNDLE HUB_CACHE WORK

MODE ``shipped``: the project is imported first, as the app and the CLI do. MODE
``kernels-first``: ``kernels`` was imported before the project (so transformers imports it too),
then, after the project's paths, transformers is asked directly to load a hostile config (the
control: it must reach the stand-in, or the probe proves nothing).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

MODE, TINY, HUB, WORK = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
RECORD = Path(os.environ["KERNELS_RECORD"])
if MODE == "kernels-first":
    import kernels  # noqa: F401

import langarith  # noqa: E402,F401  (what app.py and the CLI import before any model code)

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["HF_HUB_OFFLINE"] = "1"

from langarith import cli, encoder, profiles, trust  # noqa: E402
from langarith.bundle import train  # noqa: E402
from langarith.model import LanguageStack  # noqa: E402

KERNEL = "evil-org/evil-kernel:attn"
HOSTILE = {"auto_map": {"AutoModel": "evil-org/evil--modeling_evil.EvilModel"},
           "custom_pipelines": {"evil": {"impl": "pipeline_evil.EvilPipeline"}},
           "trust_remote_code": True, "use_kernels": True,
           "quantization_config": {"quant_method": "mxfp4"}, "transformers_weights": "../evil.safetensors"}

bundle = WORK / "bundle"
shutil.copytree(TINY, bundle)
hub = WORK / "hub"
shutil.copytree(HUB, hub, ignore=shutil.ignore_patterns(".locks"))
manifest = json.loads((bundle / "manifest.json").read_text())
MBERT_SNAP = profiles.resolve_repo("google-bert/bert-base-multilingual-cased", hub)
DE_SNAP = profiles.resolve_repo("AdapterHub/bert-base-multilingual-cased-de-wiki_pfeiffer", hub)


def no_lock():
    """The hostile file is what the repository held when first fetched (no lock to differ from)."""
    shutil.rmtree(hub / ".locks", ignore_errors=True)


def with_env(**env):
    @contextlib.contextmanager
    def ctx():
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return ctx()


def cli_bundle():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["predict", "--bundle", str(bundle), "--target", "pt"])
    if code == 0:
        return
    raise RuntimeError(err.getvalue().strip().splitlines()[-1])


def hub_language():
    no_lock()
    stack = LanguageStack(profiles.load_profile("mbert-ner", cache_dir=hub), device="cpu")
    stack.check_mergeable(["en", "de"])  # loads de's adapter (lazy)


def embedded_env():
    with with_env(LANGARITH_BUNDLE=str(bundle)):
        LanguageStack(profiles.load_profile("embedded"), device="cpu")


def hub_base():
    no_lock()
    LanguageStack(profiles.load_profile("mbert-ner", cache_dir=hub), device="cpu")


# (name, the file given the key, how the project loads it)
PATHS = [
    ("bundle folder: base config.json", bundle / "base" / "config.json",
     lambda: LanguageStack(bundle, device="cpu")),
    ("bundle folder: tokenizer_config.json", bundle / manifest["tokenizer"] / "tokenizer_config.json",
     lambda: LanguageStack(bundle, device="cpu")),
    ("bundle folder: language adapter_config.json", bundle / "adapters" / "en" / "adapter_config.json",
     lambda: LanguageStack(bundle, device="cpu")),
    ("bundle folder: task head_config.json", bundle / manifest["tasks"][0]["adapter"] / "head_config.json",
     lambda: LanguageStack(bundle, device="cpu")),
    ("bundle folder: masked-LM head_config.json", bundle / manifest["mlm_head"] / "head_config.json",
     lambda: LanguageStack(bundle, device="cpu")),
    ("LANGARITH_BUNDLE: base config.json", bundle / "base" / "config.json", embedded_env),
    ("--bundle (command line): base config.json", bundle / "base" / "config.json", cli_bundle),
    ("hub profile: base config.json", MBERT_SNAP / "config.json", hub_base),
    ("hub profile: language adapter_config.json", DE_SNAP / "adapter_config.json", hub_language),
    ("build: encoder.load_base config.json", bundle / "base" / "config.json",
     lambda: encoder.load_base(bundle / "base")),
    ("build: bundle.train.load_model config.json", bundle / "base" / "config.json",
     lambda: train.load_model(bundle / "base", "cpu")),
]

results = []
for name, path, load in PATHS:
    original = path.read_bytes()
    for key in trust.REFUSED:
        cfg = json.loads(original)
        cfg[key] = HOSTILE.get(key, KERNEL)
        path.write_text(json.dumps(cfg, indent=2))
        try:
            load()
            error = None
        except Exception as e:  # noqa: BLE001 - the probe reports whatever came back
            error = f"{type(e).__name__}: {e}"
        finally:
            path.write_bytes(original)
        results.append({"path": name, "file": str(path), "key": key, "error": error})

control = None
if MODE == "kernels-first":  # transformers alone, the same hostile config: reaches the stand-in
    from transformers import BertModel

    folder = WORK / "control"
    shutil.copytree(bundle / "base", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["_attn_implementation_internal"] = KERNEL
    (folder / "config.json").write_text(json.dumps(cfg))
    with RECORD.open("a") as f:
        f.write("--- control\n")
    try:
        BertModel.from_pretrained(str(folder))
        control = "loaded"
    except Exception as e:  # noqa: BLE001
        control = f"{type(e).__name__}: {e}"

print(json.dumps({"results": results, "control": control,
                  "kernels_module": repr(sys.modules.get("kernels"))}))
