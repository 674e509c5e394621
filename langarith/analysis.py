"""Layer 3: how the weights moved — per-layer statistics of a merge, computed functionally.

These never read the live slot (another request may be rewriting it); they rebuild the merge from
the two adapters with the pure arithmetic layer.
"""

from __future__ import annotations

from .arithmetic import interpolate, merge_geometry
from .model import LanguageStack

ROW_ORDER_LAST = "inv"


def weight_geometry(stack: LanguageStack, a: str, b: str, lam: float) -> list[dict]:
    """Rows (layer L0..Ln and the invertible adapter) × parts (down, up, F, G):
    relative distance of λ·A + (1−λ)·B to A and to B, and cos(A, B)."""
    sa, sb = stack.language_state_dict(a), stack.language_state_dict(b)
    rows = merge_geometry(sa, sb, interpolate(sa, sb, lam))
    return sorted(rows, key=_row_key)


def _row_key(r: dict):
    row = r["row"]
    return (1, 0, r["part"]) if row == ROW_ORDER_LAST else (0, int(row[1:]) if row[1:].isdigit() else 99, r["part"])
