"""Layer 2: what a model folder's config files may say. Every config the project hands to
``transformers`` or ``adapters`` (the embedded bundle, a ``--bundle`` / ``LANGARITH_BUNDLE`` folder,
a hub profile's download) is read here first; keys that select code or kernels are refused with a
line naming the file, and the model is built from an already-checked ``PretrainedConfig``, so
``transformers`` never reads the raw ``config.json`` itself.

Why: in transformers 4.56.0-5.2.x a ``config.json`` whose ``_attn_implementation_internal`` names
a Hub repository makes ``from_pretrained`` fetch and run that repository's kernel through the
``kernels`` package, bypassing ``trust_remote_code`` (CVE-2026-4372, GHSA-29pf-2h5f-8g72; fixed in
5.3.0). The pins hold 4.57.6 (``adapters`` 1.3.0 pins ``~=4.57.6``). docs/security.md says more.

    load_model(AutoAdapterModel, folder)   # from_pretrained(folder, config=<checked config>)
    load_tokenizer(folder)                 # AutoTokenizer, tokenizer_config.json checked first
    check_adapter_folder(folder)           # adapter_config.json / head_config.json checked
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

_CVE = "CVE-2026-4372, GHSA-29pf-2h5f-8g72"
_KERNEL = (f"names the attention code: a Hub repository here (org/name) is downloaded and run "
           f"through the `kernels` package, bypassing trust_remote_code ({_CVE})")

#: Keys that select code or kernels (transformers 4.57.6 read for what loads code), and why each
#: is refused. A key is looked for at every depth (sub-configs such as ``text_config`` too).
REFUSED: dict[str, str] = {
    "_attn_implementation_internal": _KERNEL,
    "_attn_implementation": _KERNEL,
    "attn_implementation": _KERNEL,
    "auto_map": "names classes in the folder's own Python files, which transformers would import and run",
    "trust_remote_code": "asks transformers to run the folder's own Python code",
    "custom_pipelines": "names pipeline classes in the folder's own Python files (remote code)",
    "use_kernels": "swaps layers for kernels downloaded from the Hub through the `kernels` package",
    "quantization_config": ("selects a quantizer backend; some (mxfp4) download and run Hub kernels "
                            "through the `kernels` package"),
    "transformers_weights": "redirects which weights file transformers reads",
}
#: Attention implementations that live inside transformers itself: such a value is dropped with a
#: warning (the project lets transformers pick its default), any other value is refused.
BUILT_IN_ATTENTION = ("eager", "sdpa")
ATTENTION_KEYS = ("_attn_implementation_internal", "_attn_implementation", "attn_implementation")
#: Keys dropped with a warning: real Hub files carry them and they select nothing in 4.57.6.
DROPPED: dict[str, str] = {
    "_attn_implementation_autoset": ("a flag transformers 4.48-4.50 wrote into saved configs; "
                                     "4.57.6 reads it nowhere"),
}
#: The config files ``transformers`` and ``adapters`` read from a folder the project loads.
CONFIG_FILES = ("config.json", "tokenizer_config.json", "adapter_config.json", "head_config.json")


class UntrustedConfig(ValueError):
    """A config file that asks for code or kernels; the message names the file and the key."""


def _inert(value) -> bool:
    """``null``, ``false`` and empty values ask for nothing."""
    return value is None or value is False or value in ("", [], {})


def screen(config, where: str) -> tuple[object, list[str]]:
    """``config`` without the keys above, and what was dropped; raises ``UntrustedConfig`` naming
    ``where`` and every refused key (with its path inside the file) in one line."""
    refused: list[tuple[str, str]] = []  # (path in the file, key)
    dropped: list[tuple[str, str]] = []

    def walk(obj, path: str):
        if isinstance(obj, list):
            return [walk(x, f"{path}[{i}]") for i, x in enumerate(obj)]
        if not isinstance(obj, dict):
            return obj
        out = {}
        for key, value in obj.items():
            at = f"{path}.{key}" if path else str(key)
            if key in REFUSED or key in DROPPED:
                if _inert(value):
                    continue
                built_in = key in ATTENTION_KEYS and isinstance(value, str) and value in BUILT_IN_ATTENTION
                (dropped if key in DROPPED or built_in else refused).append((at, key))
                continue
            out[key] = walk(value, at)
        return out

    clean = walk(config, "")
    if refused:
        raise UntrustedConfig(
            f"refused {where}: it sets {', '.join(at for at, _ in refused)}, which "
            f"{REFUSED[refused[0][1]]}; a model folder may not choose code or kernels (remove the "
            f"key{'s' if len(refused) > 1 else ''}; see docs/security.md)")
    for at, key in dropped:
        why = DROPPED.get(key) or "a built-in attention choice the project leaves to transformers"
        log.warning("%s: ignored %s (%s)", where, at, why)
    return clean, [at for at, _ in dropped]


def read_config(path: Path) -> dict:
    """A JSON config file, screened. Raises ``UntrustedConfig`` (a ``ValueError``) naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UntrustedConfig(f"cannot read {path}: {type(e).__name__}: {e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UntrustedConfig(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UntrustedConfig(f"{path} is not a JSON object")
    return screen(data, str(path))[0]


def check_folder(folder: Path) -> None:
    """Screen every config file in ``folder`` that ``transformers`` or ``adapters`` reads."""
    for name in CONFIG_FILES:
        if (Path(folder) / name).is_file():
            read_config(Path(folder) / name)


def check_adapter_folder(folder: Path) -> None:
    """An adapter (or head) folder: its ``adapter_config.json`` and ``head_config.json``."""
    for name in ("adapter_config.json", "head_config.json"):
        if (Path(folder) / name).is_file():
            read_config(Path(folder) / name)


def model_config(folder: Path):
    """The folder's ``config.json`` as a ``PretrainedConfig`` built by project code from the
    screened dict (a ``model_type`` transformers ships; a folder's own model code never runs)."""
    from transformers import CONFIG_MAPPING

    path = Path(folder) / "config.json"
    data = read_config(path)
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise UntrustedConfig(f"refused {path}: model_type {model_type!r} is not one transformers "
                              "ships (a model folder's own code is never run)")
    config = CONFIG_MAPPING[model_type].from_dict(data)
    config._name_or_path = str(folder)
    if getattr(config, "_attn_implementation_internal", None) is not None:  # nothing may set it
        raise UntrustedConfig(f"refused {path}: it selects an attention implementation")
    return config


def load_model(cls, folder: Path, **kwargs):
    """``cls.from_pretrained(folder, config=<checked config>)``: transformers never reads the raw
    ``config.json``, and ``trust_remote_code`` is off."""
    folder = Path(folder)
    peft = folder / "adapter_config.json"
    if peft.is_file():  # with peft installed, transformers would load the model that file names
        raise UntrustedConfig(f"refused {peft}: a base model folder holding adapter_config.json is "
                              "read by transformers as a PEFT adapter that names another model to load")
    return cls.from_pretrained(str(folder), config=model_config(folder), trust_remote_code=False,
                               **kwargs)


def load_tokenizer(folder: Path, **kwargs):
    """``AutoTokenizer.from_pretrained(folder)`` after its ``tokenizer_config.json`` (and the
    ``config.json`` it would fall back on) are screened; that config is passed as an object."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if (folder / "tokenizer_config.json").is_file():
        read_config(folder / "tokenizer_config.json")
    if (folder / "config.json").is_file():
        kwargs["config"] = model_config(folder)
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, **kwargs)
