"""Where things live by default: the embedded bundle and the cache folder. A leaf module (no
imports from the package), so the command line, the bundle build and its report share it."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "assets" / "bundle"


def bundle_path(arg: str | None = None) -> Path:
    """--bundle, else $LANGARITH_BUNDLE, else the repository's assets/bundle."""
    return Path(arg or os.environ.get("LANGARITH_BUNDLE") or DEFAULT_BUNDLE)


def cache_dir() -> Path:
    """$LANGARITH_CACHE, else ~/.cache/langarith (downloads, builds, resumable runs). Read at call
    time, so a variable set after import (``hosting.use_encoder_cache``) counts."""
    return Path(os.environ.get("LANGARITH_CACHE") or Path.home() / ".cache" / "langarith")
