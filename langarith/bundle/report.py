"""The bundle's evaluation as the README's tables, from the shipped results file.

    python -m langarith.bundle.report [--bundle assets/bundle] [--recompute]

``--recompute`` re-evaluates the λ curves on the shipped (small) eval sets on this machine and
checks them against the precomputed ones in results.json (agreement up to float noise).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _pct(m: dict | float) -> str:
    v = m["accuracy"] if isinstance(m, dict) else m
    return f"{100 * v:.1f}"


def tables(results: dict, which: str = "full") -> str:
    r = results[which]
    eng = results["english"]
    out = [f"English test (en adapter + task adapter): accuracy {_pct(eng)}, macro-F1 "
           f"{100 * eng['macro_f1']:.1f}, n = {eng['n']}, majority {_pct(eng['majority'])}.", ""]
    out += ["**Zero-shot** (target has no adapter; A = en, B = related language; λ chosen on dev, "
            "reported on test, accuracy %):", "",
            "| target | B | majority | en alone | B alone | arithmetic (λ) | gain vs better |",
            "|---|---|---|---|---|---|---|"]
    for t, v in r["zero_shot"].items():
        best = max(v["a_alone"]["accuracy"], v["b_alone"]["accuracy"])
        gain = v["test_at_best"]["accuracy"] - best
        out.append(f"| {t} | {v['b']} | {_pct(v['majority'])} | {_pct(v['a_alone'])} | "
                   f"{_pct(v['b_alone'])} | {_pct(v['test_at_best'])} ({v['best_lam']}) | "
                   f"{100 * gain:+.1f} |")
    out += ["", "**Enhancement** (target has its own adapter A, merged with a related B):", "",
            "| target | B | own adapter | B alone | arithmetic (λ) | gain vs own |",
            "|---|---|---|---|---|---|"]
    for t, v in r["enhancement"].items():
        gain = v["test_at_best"]["accuracy"] - v["a_alone"]["accuracy"]
        out.append(f"| {t} | {v['b']} | {_pct(v['a_alone'])} | {_pct(v['b_alone'])} | "
                   f"{_pct(v['test_at_best'])} ({v['best_lam']}) | {100 * gain:+.1f} |")
    own = r["own_adapter"]
    out += ["", "Own-adapter test accuracy: " + ", ".join(f"{c} {_pct(m)}" for c, m in own.items())]
    gate = results.get("mlm_gate", {})
    if gate:
        out += ["", "Held-out MLM loss (no adapter / en adapter / own adapter): " + "; ".join(
            f"{c} {g.get('none', float('nan')):.2f}/{g.get('en', float('nan')):.2f}/{g.get(c, float('nan')):.2f}"
            for c, g in gate.items())]
    return "\n".join(out)


def recompute(bundle: Path, results: dict) -> float:
    """Re-evaluate the shipped curves; returns the largest accuracy difference to results.json."""
    from ..model import LanguageStack
    from ..tasks import sweep

    stack = LanguageStack(bundle)
    worst = 0.0
    for setting in ("zero_shot", "enhancement"):
        for t, v in results["shipped"][setting].items():
            s = sweep(stack, t, v["b"], results["lambdas"])
            for p, q in zip(s["points"], v["points"]):
                for split in ("dev", "test"):
                    worst = max(worst, abs(p[split]["accuracy"] - q[split]["accuracy"]))
            print(f"{t}: best λ {s['best_lam']} (shipped {v['best_lam']})", file=sys.stderr)
    return worst


def main(argv: list[str] | None = None) -> int:
    from ..cli import bundle_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle")
    p.add_argument("--which", choices=["full", "shipped"], default="full")
    p.add_argument("--recompute", action="store_true")
    args = p.parse_args(argv)
    bundle = bundle_path(args.bundle)
    results = json.loads((bundle / "results" / "results.json").read_text(encoding="utf-8"))
    print(tables(results, args.which))
    if args.recompute:
        worst = recompute(bundle, results)
        print(f"\nrecomputed shipped curves: largest accuracy difference {worst:.4f}")
        return 0 if worst <= 0.03 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
