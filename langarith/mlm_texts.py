"""Layer 3: the held-out masked-LM curves with their per-text sums, for the λ rules.

``results.json`` keeps each target's held-out masked-LM curve as a summary (losses per λ, the
first-half λ); a bootstrap that redraws the unlabelled paragraphs needs each paragraph's summed
loss and token count at every λ. This writes them once (a model run: about a minute a target on a
CPU) into ``results/mlm_texts.json``; ``langarith.lambda_rules`` reads them.

    python -m langarith.mlm_texts [--bundle assets/bundle] [--targets pt,es]   # all swept targets

The masking is deterministic (every 5th token in turn), so the counts are the same at every λ and
the curve's losses equal the shipped summary's: the command checks that and refuses otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import results, tasks
from .model import LanguageStack

FILE = "mlm_texts"


def swept_targets(stack: LanguageStack) -> list[str]:
    """Every target with a precomputed task sweep and a held-out masked-LM curve."""
    res = results.bundle_results(stack)
    out = []
    for setting in results.SETTINGS:
        out += [t for t in res.get(setting, {}) if t in res.get("mlm", {}) and t in stack.bundle.languages]
    return out


def text_sums(stack: LanguageStack, target: str, lambdas) -> dict:
    """One target's held-out masked-LM curve with per-text sums (its A and B from results.json)."""
    shipped = results.mlm_summary(stack, target)
    texts = results.heldout_texts(stack, target)
    curve = tasks.mlm_curve(stack, texts, shipped["a"], shipped["b"], lambdas)
    for p, q in zip(curve["points"], shipped["points"]):
        if abs(p["lam"] - q["lam"]) > 1e-9 or abs(p["loss"] - q["loss"]) > 2e-3:
            raise RuntimeError(f"{target}: λ {p['lam']} loss {p['loss']:.4f} differs from the shipped "
                               f"{q['loss']:.4f}: the bundle changed since its results were built")
    counts = np.asarray(curve["counts"])
    if not (counts == counts[0]).all():
        raise RuntimeError(f"{target}: masked-token counts differ between λ values")
    return {"a": curve["a"], "b": curve["b"], "lambdas": [p["lam"] for p in curve["points"]],
            "counts": [int(c) for c in counts[0]],
            "sums": [[round(float(x), 5) for x in row] for row in curve["sums"]]}


def main(argv: list[str] | None = None) -> int:
    from .paths import bundle_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle")
    p.add_argument("--targets", default="", help="comma-separated (default: every swept target)")
    args = p.parse_args(argv)
    stack = LanguageStack(bundle_path(args.bundle))
    out_path = stack.bundle.path("results") / f"{FILE}.json"
    out = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else {}
    targets = [t for t in args.targets.split(",") if t] or swept_targets(stack)
    for t in targets:
        lambdas = [p["lam"] for p in results.mlm_summary(stack, t)["points"]]
        start = time.time()
        out[t] = text_sums(stack, t, lambdas)
        print(f"{t}: {len(lambdas)} λ × {len(out[t]['counts'])} texts in {time.time() - start:.0f} s",
              file=sys.stderr)
        out_path.write_text(json.dumps(out, separators=(",", ":")), encoding="utf-8")  # resumable
    return 0


if __name__ == "__main__":
    sys.exit(main())
