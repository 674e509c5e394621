"""Layer 3: the live masked-LM curves of the texts the page opens on, shipped with the bundle.

A class opens on the same text (each target's first dev text, ``results.first_example``, and its
first example) and slides λ over it; the live curve of a text costs about a hundred scoring
passes (every λ of the slider's grid, every 5th token masked in turn), several seconds on 2
cores, which the first students of a fresh app waited behind. The curve depends only on the text
and the pair, so it is computed once, at build time, and put in the stack's memo when the page
starts (``seed``): a release on an opening text then costs no masked-LM pass.

    python -m langarith.opening_curves [--bundle assets/bundle] [--targets pt,gl]

The masking is deterministic, so the shipped sums equal what the page would compute (a test
checks one text against a fresh computation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from . import results, tasks
from .loading import InputError
from .model import LanguageStack

FILE = "opening_curves"
SLIDER_GRID = tuple(round(i * 0.05, 2) for i in range(21))  # the page's λ slider: 0, 0.05, ..., 1


def opening_texts(stack: LanguageStack, target: str) -> list[str]:
    """The texts the page opens a target on: its first dev text and its first example."""
    first = results.first_example(stack, target)
    examples = list(stack.bundle.language(target).examples)[:1]
    return list(dict.fromkeys(t for t in (first, *examples) if t))


def compute(stack: LanguageStack, target: str, lambdas=SLIDER_GRID) -> list[dict]:
    """Each opening text's masked-LM sums and counts at every λ, under the suggested pair."""
    a, b = tasks.merge_pair(stack, target, None)
    out = []
    for text in opening_texts(stack, target):
        texts, _ = tasks.mlm_text(text)
        got = tasks.mlm_token_losses(stack, tasks.mlm_curve_requests(texts, a, b, lambdas))
        out.append({"text": texts[0], "a": a, "b": b, "lambdas": list(lambdas),
                    "sums": [s.tolist() for s, _ in got], "counts": [c.tolist() for _, c in got]})
    return out


def seed(stack: LanguageStack) -> int:
    """Put the shipped curves in the stack's memo under the keys ``tasks.mlm_token_losses``
    reads; the number of (text, λ) entries put (0 when the bundle ships none)."""
    path = stack.bundle.path("results") / f"{FILE}.json"
    if not path.is_file():
        return 0
    n = 0
    for curves in json.loads(path.read_text(encoding="utf-8")).values():
        for c in curves:
            reqs = tasks.mlm_curve_requests([c["text"]], c["a"], c["b"], c["lambdas"])
            for (texts, adapter), s, k in zip(reqs, c["sums"], c["counts"]):
                value = (np.asarray(s, dtype=float), np.asarray(k, dtype=float))
                stack.memo.get("mlm_loss", (tuple(texts), tasks.adapter_key(adapter)), lambda v=value: v)
                n += 1
    return n


def main(argv=None) -> int:
    from .paths import bundle_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None)
    p.add_argument("--targets", default=None, help="comma-separated (default: every target with a suggested source)")
    args = p.parse_args(argv)
    stack = LanguageStack(bundle_path(args.bundle))
    path = stack.bundle.path("results") / f"{FILE}.json"
    done = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    targets = args.targets.split(",") if args.targets else list(stack.bundle.languages)
    for t in targets:
        if t in done:  # resumable: a target already written is kept
            continue
        t0 = time.perf_counter()
        try:
            done[t] = compute(stack, t)
        except InputError as e:  # no pair for this target (e.g. English): nothing to ship
            print(f"{t}: skipped ({e})", file=sys.stderr)
            continue
        path.write_text(json.dumps(done, separators=(",", ":")), encoding="utf-8")
        print(f"{t}: {len(done[t])} texts in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
