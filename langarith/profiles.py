"""Profiles: which encoder and which adapters the engine runs, from ``catalogue.json``.

``embedded`` is the offline bundle in ``assets/bundle``. The hub profiles (``mbert-ner``,
``xlmr``) name real Hugging Face Hub repositories (ids live only in ``catalogue.json``); for them
this module synthesises a bundle manifest whose references are ``hub:<repo id>`` and a
``HubBundle`` that resolves them through ``huggingface_hub.snapshot_download`` — the same cache,
the same ``HF_HUB_OFFLINE`` / ``HF_HUB_CACHE`` rules as ``adapters``' own ``load_adapter(id)`` —
so ``LanguageStack`` loads a profile exactly as it loads a bundle folder. Language adapters load
lazily, the first time a language is used.

    list_profiles()                 -> [{"name", "title", "kind", ...}]
    load_profile("mbert-ner")       -> HubBundle (base, tokenizer, task and English adapters checked)
    LanguageStack(load_profile(..)) -> the engine
    fetch_profile("xlmr", ["de"])   -> download into the HF cache (for preloading a machine)

Offline (``HF_HUB_OFFLINE=1`` or no network) a hub profile whose files are not cached fails at
once with ``ProfileUnavailable``, naming every missing repository and the command that gets it.

What runs is what was first fetched: each repository is downloaded at the revision the catalogue
names for it (``revisions``), and its files are checked against the profile's lock (``lock.py``);
a changed file is refused with ``ProfileChanged`` until ``fetch --accept-changes`` takes it.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from .lock import Lock, LockMismatch, snapshot_entry
from .loading import Bundle, BundleError, InputError

CATALOGUE = Path(__file__).resolve().parent / "catalogue.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
HUB = "hub:"
ENV = "LANGARITH_PROFILE"

# What to take from a base model repo (the Hub repos also hold TF/Flax/ONNX copies).
BASE_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "vocab.txt", "sentencepiece.bpe.model", "special_tokens_map.json"]
# Exact names, never globs: the second-pattern mBERT repos also hold a 370 MB masked-LM head
# (``pytorch_model_head.bin``) and macOS junk (``._adapter_config.json``) that must not be fetched.
LANGUAGE_FILES = ["adapter_config.json", "pytorch_adapter.bin", "adapter.safetensors"]
ADAPTER_FILES = LANGUAGE_FILES + ["head_config.json", "pytorch_model_head.bin",
                                  "model_head.safetensors"]


class ProfileError(BundleError):
    """An unknown profile or a broken catalogue entry."""


class ProfileUnavailable(BundleError):
    """A hub profile whose files are neither cached nor downloadable (offline, no network)."""


class ProfileChanged(BundleError):
    """A cached repository whose files differ from the profile's lock (what was first fetched)."""


# --- the catalogue -------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _read_catalogue(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def catalogue(path: str | Path | None = None) -> dict:
    return _read_catalogue(str(path or CATALOGUE))


def default_profile() -> str:
    return os.environ.get(ENV) or catalogue()["default"]


def profile_entry(name: str, cat: dict | None = None) -> dict:
    cat = cat or catalogue()
    if name not in cat["profiles"]:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(cat['profiles'])}")
    return cat["profiles"][name]


def _adapter_ref(entry: dict, lang: dict) -> str | None:
    """A language's adapter reference: ``hub:<id>`` (pattern or explicit id) or a local folder."""
    a = lang.get("adapter")
    if a is True:
        return HUB + entry["language_adapter"]["pattern"].format(code=lang["code"])
    if a == "pattern2":  # mBERT's second naming pattern (..._<lang>_wiki_pfeiffer)
        return HUB + entry["language_adapter"]["second_pattern"].format(code=lang["code"])
    if isinstance(a, str):
        return a if a.startswith(HUB) or Path(a).is_absolute() else HUB + a
    return None


def manifest_for(name: str, cat: dict | None = None) -> dict:
    """The bundle manifest a hub profile stands for (references are ``hub:<repo id>``)."""
    e = profile_entry(name, cat)
    if e["kind"] != "hub":
        raise ProfileError(f"profile {name!r} is a bundle folder, not a hub profile")
    base = e["base"]
    return {
        "format": 1,
        "name": name,
        "description": e.get("description", ""),
        "base": {"hub": base},
        "tokenizer": HUB + base,
        "mlm_head": "from_base" if e.get("mlm_head") == "from_base" else e["mlm_head"],
        "task_language": e.get("task_language", "en"),
        "lazy_languages": True,
        # with_head=False: a language adapter's own head (a masked-LM head) is never used.
        "language_adapter_kwargs": {"with_head": False, **e["language_adapter"].get("load", {})},
        "languages": [{"code": lang["code"], "name": lang["name"], "family": lang["family"],
                       "adapter": _adapter_ref(e, lang), "source": lang.get("source"),
                       "examples": list(lang.get("examples", []))} for lang in e["languages"]],
        "tasks": [_task_manifest(t) for t in e.get("tasks", [])],
        "revisions": {k: v for k, v in e.get("revisions", {}).items() if not k.startswith("_")},
    }


def _hub_ref(ref: str) -> str:
    return ref if ref.startswith(HUB) or Path(ref).is_absolute() else HUB + ref


def _task_manifest(t: dict) -> dict:
    """A catalogue task as a manifest task; ``stack_before`` (adapters stacked between the
    language adapter and the task adapter, e.g. M2QA's domain adapter) only when it has some."""
    out = {"name": t["name"], "title": t["title"], "kind": t["kind"],
           "adapter": _hub_ref(t["adapter"]), "labels": list(t.get("labels", []))}
    if t.get("stack_before"):
        out["stack_before"] = [{"name": x["name"], "adapter": _hub_ref(x["adapter"])}
                               for x in t["stack_before"]]
    return out


def _task_refs(tasks) -> list[str]:
    """Every adapter reference of manifest tasks (dicts) or ``Task``s: stacked ones, then the task's."""
    refs = []
    for t in tasks:
        if isinstance(t, dict):
            refs += [x["adapter"] for x in t.get("stack_before", [])] + [t["adapter"]]
        else:
            refs += [ref for _, ref in t.stack_before] + [t.adapter]
    return refs


def hub_repos(name: str, languages: list[str] | None = None, cat: dict | None = None) -> list[str]:
    """Every hub repository a profile uses (all its languages unless ``languages`` is given)."""
    m = manifest_for(name, cat)
    _check_codes(name, m, languages)
    refs = [m["tokenizer"]] + _task_refs(m["tasks"])
    refs += [lang["adapter"] for lang in m["languages"]
             if lang["adapter"] and (languages is None or lang["code"] in languages
                                     or lang["code"] == m["task_language"])]
    out = []
    for r in refs:
        if r.startswith(HUB) and r[len(HUB):] not in out:
            out.append(r[len(HUB):])
    return out


def _check_codes(name: str, manifest: dict, languages: list[str] | None) -> None:
    """Refuse codes the profile lacks or has no adapter for: skipping them would look like a
    successful download of nothing."""
    have = {lang["code"] for lang in manifest["languages"] if lang["adapter"]}
    bad = sorted(set(languages or ()) - have)
    if bad:
        raise InputError(f"profile {name!r} has no language adapter for {', '.join(bad)}; "
                         f"it has: {', '.join(sorted(have))}")


def _bundle_tasks(entry: dict) -> list[str]:
    """A bundle profile's tasks as its manifest says (names, as for hub profiles), + fill-mask."""
    path = Path(REPO_ROOT / entry["bundle"]) / "manifest.json"
    if not path.is_file():
        return entry.get("tasks", [])
    tasks = json.loads(path.read_text(encoding="utf-8")).get("tasks", [])
    return [t["name"] for t in tasks] + ["fill-mask"]


def list_profiles(cat: dict | None = None) -> list[dict]:
    cat = cat or catalogue()
    out = []
    for name, e in cat["profiles"].items():
        row = {"name": name, "title": e["title"], "kind": e["kind"],
               "default": name == cat["default"], "description": e.get("description", "")}
        if e["kind"] == "hub":
            langs = e["languages"]
            row.update(base=e["base"],
                       languages=[lang["code"] for lang in langs if lang.get("adapter")],
                       zero_shot_targets=[lang["code"] for lang in langs if not lang.get("adapter")],
                       tasks=[t["name"] for t in e.get("tasks", [])] + ["fill-mask"],
                       language_adapter=e["language_adapter"]["pattern"],
                       second_pattern=e["language_adapter"].get("second_pattern"),
                       reproduce_targets=sorted(e.get("reproduce", {}).get("targets", {})),
                       load_options=e["language_adapter"].get("load", {}),
                       not_yet=[t["name"] for t in e.get("not_yet", [])],
                       memory=memory_estimate(name, cat=cat))
        else:
            row.update(bundle=e["bundle"], tasks=_bundle_tasks(e))
        out.append(row)
    return out


# --- memory ----------------------------------------------------------------------------------


def madx_adapter_params(hidden: int, layers: int, reduction_factor: int = 2,
                        inv_reduction_factor: int | None = 2, leave_out=()) -> int:
    """Parameters of one MAD-X (Pfeiffer + NICE) language adapter: a bottleneck after each layer's
    output (down + up, with biases) except ``leave_out``, and the invertible adapter's F and G."""
    b = hidden // reduction_factor
    per_layer = hidden * b + b + b * hidden + hidden
    n = per_layer * sum(1 for i in range(layers) if i not in set(leave_out))
    if inv_reduction_factor:
        half = hidden // 2
        ib = half // inv_reduction_factor
        n += 2 * (half * ib + ib + ib * half + half)
    return n


def memory_estimate(name: str, n_languages: int | None = None, bytes_per_param: int = 4,
                    cat: dict | None = None) -> dict:
    """Parameter memory of a hub profile with ``n_languages`` language adapters loaded (default:
    all of them) plus the live merged slot, the task adapters and heads (fp32 unless told)."""
    e = profile_entry(name, cat)
    s = e["sizes"]
    n = len([lang for lang in e["languages"] if lang.get("adapter")]) if n_languages is None \
        else n_languages
    fixed = (s["base_params"] + s.get("mlm_head_params", 0) + s.get("task_adapter_params", 0)
             + s.get("stack_adapter_params", 0) + s.get("head_params", 0))
    per = s["language_adapter_params"]
    params = fixed + (n + 1) * per  # + 1: the merged slot
    return {"languages_loaded": n, "params": params, "bytes": params * bytes_per_param,
            "gib": round(params * bytes_per_param / 2**30, 3),
            "per_language_mb": round(per * bytes_per_param / 1e6, 1)}


# --- resolving hub references ------------------------------------------------------------------


def hub_offline() -> bool:
    from huggingface_hub import constants

    v = os.environ.get("HF_HUB_OFFLINE", "")
    return v.upper() in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir(cache_dir: str | Path | None) -> str | None:
    """The Hugging Face cache to download into: ``cache_dir``, else $HF_HUB_CACHE, else None
    (huggingface_hub's default)."""
    # Read at call time (huggingface_hub reads HF_HUB_CACHE once, at import).
    c = cache_dir or os.environ.get("HF_HUB_CACHE")
    return str(c) if c else None


def _how_to_get(repo_ids: list[str], profile: str | None) -> str:
    """What to do about missing repositories, in one line (a CLI error is one line)."""
    each = " ".join(f"`huggingface-cli download {r}`" for r in repo_ids)
    fetch = f"`python -m langarith fetch --profile {profile}` (or {each})" if profile else each
    return (f"On a machine with network access (HF_HUB_OFFLINE unset) run {fetch}, then copy its "
            f"Hugging Face cache (HF_HUB_CACHE) here; or use --profile embedded, which needs no network.")


def resolve_repo(repo_id: str, cache_dir: str | Path | None = None, *, local_only: bool | None = None,
                 profile: str | None = None, files: list[str] | None = None,
                 revision: str | None = None) -> Path:
    """The local snapshot folder of ``repo_id`` at ``revision`` (default: main), downloaded
    unless offline or ``local_only``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    local_only = hub_offline() if local_only is None else local_only
    patterns = files or ADAPTER_FILES
    try:
        folder = snapshot_download(repo_id, cache_dir=hub_cache_dir(cache_dir), revision=revision,
                                   allow_patterns=patterns, local_files_only=local_only,
                                   library_name="langarith")
    except LocalEntryNotFoundError:
        why = ("HF_HUB_OFFLINE is set" if hub_offline() else
               "it is not cached" if local_only else "the Hub could not be reached")
        at = f" at revision {revision}" if revision else ""
        raise ProfileUnavailable(
            f"{repo_id}{at} is not in the Hugging Face cache ({hub_cache_dir(cache_dir) or 'default cache'})"
            f" and {why}. " + _how_to_get([repo_id], profile)) from None
    except Exception as e:  # noqa: BLE001 - wrong id, gated repo, HTTP error: say which repo
        raise ProfileUnavailable(f"cannot get {repo_id} from the Hugging Face Hub: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    return Path(folder)


def files_for(manifest: dict, repo_id: str) -> list[str]:
    """What to download of a repo: the base's files, a task adapter with its head, or a language
    adapter's own files only (no head)."""
    if repo_id == manifest["base"].get("hub"):
        return BASE_FILES
    tasks = manifest["tasks"]
    if HUB + repo_id in _task_refs(tasks) or HUB + repo_id == manifest["tokenizer"]:
        return ADAPTER_FILES
    return LANGUAGE_FILES


def revision_for(manifest: dict, repo_id: str) -> str | None:
    """The revision the profile names for ``repo_id`` (None: the Hub's default branch)."""
    return manifest.get("revisions", {}).get(repo_id)


def accept_command(manifest: dict, repo_id: str) -> str:
    """The fetch that accepts a change to ``repo_id`` (its language, else the task language)."""
    code = next((lang["code"] for lang in manifest["languages"] if lang["adapter"] == HUB + repo_id),
                manifest["task_language"])
    return f"`python -m langarith fetch --profile {manifest['name']} --languages {code} --accept-changes`"


def check_lock(manifest: dict, repo_id: str, folder: Path, files: list[str],
               cache_dir: str | None, *, accept: bool = False) -> None:
    """Refuse ``folder`` (a snapshot of ``repo_id``) if it differs from the profile's lock;
    record it if the lock has no entry for it yet, or if ``accept``."""
    entry = snapshot_entry(folder, files, revision_for(manifest, repo_id))
    try:
        Lock(cache_dir, manifest["name"]).check(repo_id, entry, accept=accept,
                                                how=accept_command(manifest, repo_id))
    except LockMismatch as e:
        raise ProfileChanged(str(e)) from None


class HubBundle(Bundle):
    """A bundle whose references may be ``hub:<repo id>``; resolved (and downloaded) on use."""

    cache_dir: str | None = None
    profile: str | None = None

    def _files(self, repo_id: str) -> list[str]:
        return files_for(self.manifest, repo_id)

    def _resolve(self, repo: str, local_only: bool | None = None) -> Path:
        files = self._files(repo)
        folder = resolve_repo(repo, self.cache_dir, local_only=local_only, profile=self.profile,
                              files=files, revision=revision_for(self.manifest, repo))
        check_lock(self.manifest, repo, folder, files, self.cache_dir)
        return folder

    def path(self, rel: str) -> Path:
        if isinstance(rel, str) and rel.startswith(HUB):
            return self._resolve(rel[len(HUB):])
        return super().path(rel)

    def base_path(self) -> Path:
        base = self.manifest["base"]
        if "hub" in base:
            return self._resolve(base["hub"])
        return super().base_path()

    def required_repos(self) -> list[str]:
        """What a stack needs before it starts: base, tokenizer, tasks, the task language."""
        m = self.manifest
        refs = [HUB + m["base"]["hub"], m["tokenizer"]] + _task_refs(self.tasks.values())
        refs.append(self.languages[self.task_language].adapter)
        out = []
        for r in refs:
            if r and r.startswith(HUB) and r[len(HUB):] not in out:
                out.append(r[len(HUB):])
        return out

    def preflight(self) -> None:
        """Fail fast: every missing required repo in one message (offline), else download them."""
        missing = []
        for repo in self.required_repos():
            try:
                self._resolve(repo, local_only=True)
            except ProfileUnavailable:
                missing.append(repo)
        if not hub_offline():  # online: download (huggingface_hub shows tqdm progress)
            missing = [repo for repo in missing if not self._downloaded(repo)]
        if missing:  # one message naming every repository still missing, offline or not
            why = "HF_HUB_OFFLINE is set" if hub_offline() else "the Hub could not be reached"
            raise ProfileUnavailable(
                f"profile {self.profile!r} needs {len(missing)} repositories that are not in the "
                f"Hugging Face cache ({hub_cache_dir(self.cache_dir) or 'default cache'}) and {why}: "
                f"{', '.join(missing)}. " + _how_to_get(missing, self.profile))

    def _downloaded(self, repo: str) -> bool:
        try:
            self._resolve(repo)
        except ProfileUnavailable:
            return False
        return True


def load_profile(name: str | None = None, cache_dir: str | Path | None = None, *,
                 check: bool = True, cat: dict | None = None) -> Bundle:
    """The bundle for profile ``name`` (default: ``$LANGARITH_PROFILE`` or the catalogue default).

    A hub profile is checked (``check=True``): base, tokenizer, task adapters and the task
    language's adapter must be cached or downloadable, else ``ProfileUnavailable`` at once.
    Other language adapters are fetched when first used."""
    name = name or default_profile()
    e = profile_entry(name, cat)
    if e["kind"] == "bundle":
        root = Path(os.environ.get("LANGARITH_BUNDLE") or REPO_ROOT / e["bundle"])
        return Bundle.load(root)
    b = HubBundle.from_manifest(REPO_ROOT, manifest_for(name, cat), where=f"profile {name}")
    b.cache_dir = hub_cache_dir(cache_dir)
    b.profile = name
    if check:
        b.preflight()
    return b


def fetch_profile(name: str, languages: list[str] | None = None,
                  cache_dir: str | Path | None = None, cat: dict | None = None, *,
                  accept_changes: bool = False) -> list[dict]:
    """Download a hub profile's repositories into the HF cache (for preloading a machine) and
    lock what was downloaded; a repository that differs from the lock is refused unless
    ``accept_changes``."""
    out = []
    m = manifest_for(name, cat)
    repos = hub_repos(name, languages, cat)
    if hub_offline():  # fetch is the one command that must reach the Hub
        raise ProfileUnavailable("fetch downloads from the Hugging Face Hub, and HF_HUB_OFFLINE is "
                                 "set: unset it (on a machine with network access) and run it again")
    cache = hub_cache_dir(cache_dir)
    for repo in repos:
        files = files_for(m, repo)
        folder = resolve_repo(repo, cache, profile=name, files=files, revision=revision_for(m, repo))
        check_lock(m, repo, folder, files, cache, accept=accept_changes)
        out.append({"repo": repo, "folder": str(folder), "commit": folder.name})
    return out
