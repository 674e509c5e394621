"""Layer 2: what a hub profile downloaded is what runs.

A lock per profile records, per repository, the revision asked for, the commit it resolved to and
each file's sha256. ``fetch`` writes it, and so does the first load of a repository nobody fetched
(the first download is the one trusted); every later load checks the cached files against it and
refuses a changed file in one line that says how to accept the change on purpose.

Where: ``<Hugging Face cache>/.locks/langarith/<profile>.json``, inside the cache whose files it
describes, so it travels with a copied cache (the offline set-up copies HF_HUB_CACHE) and two
caches never share one. huggingface_hub's cache scan skips ``.locks``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = 1
_WRITE = threading.Lock()  # read-modify-write of a lock file (lazy languages load on any thread)
_HASHES: dict[tuple, str] = {}  # (path, size, mtime, inode) -> sha256: a 700 MB base is hashed once


class LockMismatch(ValueError):
    """A cached file differs from what the profile's lock recorded."""


def lock_path(cache_dir: str | Path | None, profile: str) -> Path:
    from huggingface_hub import constants

    root = Path(cache_dir) if cache_dir else Path(constants.HF_HUB_CACHE)
    return root / ".locks" / "langarith" / f"{profile}.json"


def sha256(path: Path) -> str:
    path = Path(path)
    st = path.stat()  # follows the cache's snapshot -> blob symlink
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def snapshot_entry(folder: Path, files: list[str], revision: str | None) -> dict:
    """What a snapshot folder (``snapshots/<commit>``) holds of ``files``."""
    folder = Path(folder)
    return {"revision": revision, "commit": folder.name,
            "files": {f: sha256(folder / f) for f in sorted(files) if (folder / f).is_file()}}


def difference(old: dict, new: dict) -> str | None:
    """The first way ``new`` differs from the locked ``old``, in words (None: the same)."""
    for f in sorted(set(old["files"]) | set(new["files"])):
        a, b = old["files"].get(f), new["files"].get(f)
        if a != b:
            if a is None:
                return f"{f} is new (not in the lock)"
            if b is None:
                return f"{f} is gone"
            return f"{f} changed (sha256 {b[:12]}…, locked {a[:12]}…)"
    if old.get("commit") != new.get("commit"):
        return f"it resolved to commit {new.get('commit')}, locked {old.get('commit')}"
    return None


class Lock:
    """One profile's lock file in one cache."""

    def __init__(self, cache_dir: str | Path | None, profile: str):
        self.profile = profile
        self.path = lock_path(cache_dir, profile)

    def read(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LockMismatch(f"the lock {self.path} is unreadable ({type(e).__name__}); "
                               f"delete it to trust the cache as it is now") from None
        return data.get("repos", {})

    def check(self, repo: str, entry: dict, *, accept: bool = False, how: str = "") -> None:
        """Refuse ``entry`` if it differs from the lock; record it if the lock has none for
        ``repo`` or ``accept`` is set (a fetch asked to take the change)."""
        with _WRITE:
            repos = self.read()
            old = repos.get(repo)
            why = None if old is None else difference(old, entry)
            if why and not accept:
                raise LockMismatch(f"{repo} in the Hugging Face cache differs from what profile "
                                   f"{self.profile!r} first fetched: {why}. To accept it on purpose run "
                                   f"{how or f'`python -m langarith fetch --profile {self.profile} --accept-changes`'}"
                                   f" (or delete {self.path})")
            if old is None or why:
                if why:
                    log.warning("%s: accepted a change to %s (%s)", self.path, repo, why)
                repos[repo] = entry
                self._write(repos)

    def _write(self, repos: dict) -> None:
        data = {"format": FORMAT, "profile": self.profile, "repos": dict(sorted(repos.items()))}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only cache: loads still work, unchecked next time
            log.warning("cannot write the lock %s (%s): later loads will not be checked", self.path, e)
