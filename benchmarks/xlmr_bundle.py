"""A bundle whose language adapters have xlm-roberta-base MAD-X size, for merge benchmarks.

The generated test bundle (``langarith.bundle.tiny``) at xlm-roberta-base's encoder shape (hidden
768, 12 layers, 12 heads, intermediate 3072) with its tiny vocabulary: language adapters are
``SeqBnInvConfig(reduction_factor=2)`` with random non-identity weights, 7,387,776 parameters in 56
tensors each. Predictions mean nothing; only the adapter sizes matter.
"""

from __future__ import annotations

from pathlib import Path

from langarith.bundle.tiny import build_tiny_bundle

LANG_PARAMS = 7_387_776  # one MAD-X language adapter at xlm-roberta-base size
LANG_TENSORS = 56


def build_xlmr_size_bundle(out: str | Path, seed: int = 0) -> Path:
    return build_tiny_bundle(out, seed=seed, hidden=768, layers=12, heads=12, intermediate=3072,
                             precompute=False)
