"""The bundle's evaluation as the README's tables, from the shipped files.

    python -m langarith.bundle.report [--bundle assets/bundle]              # from results.json
    python -m langarith.bundle.report --recompute                           # from the shipped items
    python -m langarith.bundle.report --reevaluate pt,es                    # run the model again

``--recompute`` rebuilds every table from the shipped eval items and per-item predictions
(``eval/``, ``results/sweeps/``): metrics, the dev-chosen λ and the paired bootstrap, and checks
them against ``results.json``. ``--reevaluate`` also runs the model on the shipped eval items of
the named targets (minutes per target on a CPU) and checks that it predicts what was shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..paths import bundle_path
from ..stats import bootstrap_halves, format_gain


def _pct(m: dict | float) -> str:
    v = m["accuracy"] if isinstance(m, dict) else m
    return f"{100 * v:.1f}"


def _ci(g: dict) -> str:
    return format_gain(g)


def _mlm_gain(texts: dict | None, target: str, s: dict) -> str:
    """merge − better on the second half with its paired-bootstrap interval over paragraphs
    (``stats.bootstrap_halves`` on ``results/mlm_texts.json``); the point alone where the bundle
    ships no per-paragraph sums for the target."""
    t = (texts or {}).get(target)
    if not t:
        return f"{s['merged'] - min(s['a'], s['b']):+.3f} (–)"
    g = bootstrap_halves(t["lambdas"], t["sums"], t["counts"])["gain_vs_better"]
    lo, hi = g["ci95"]  # a gain is a loss drop: the table writes the loss difference
    d = [round(-x, 3) + 0.0 for x in (g["points"], hi, lo)]  # + 0.0: no "-0.000"
    return f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"


def tables(results: dict, texts: dict | None = None) -> str:
    """The bundle's main tables; ``texts`` (``results/mlm_texts.json``) gives the masked-LM
    table its intervals."""
    out = []
    eng = results.get("english")
    if eng:
        out += [f"English test (en adapter + task adapter): accuracy {_pct(eng)}, macro-F1 "
                f"{100 * eng['macro_f1']:.1f}, n = {eng['n']}, majority {_pct(eng['majority'])}.", ""]
    prem = results.get("premise", {})
    if prem:
        out += ["**The premise** — how much this task depends on the language adapter: each "
                "language's test set under its own adapter and under the English one (accuracy %, "
                "paired bootstrap 95 % CI of the difference):", "",
                "| language | own adapter | en adapter | own − en (95 % CI) | n |", "|---|---|---|---|---|"]
        for c, v in prem.items():
            out.append(f"| {c} | {_pct(v['own'])} | {_pct(v['en'])} | {_ci(v['own_minus_en'])} | {v['n']} |")
        out.append("")
    head = ("| target | B | majority | A alone | B alone | arithmetic (λ) | gain vs better, 95 % CI "
            "| P(gain > 0) | n dev / test |")
    out += ["**Zero-shot** (the target has no adapter; A = en, B = a related language; λ chosen on "
            "dev, reported on test, accuracy %; the interval covers the λ choice too):", "", head,
            "|---|---|---|---|---|---|---|---|---|"]
    out += [_row(t, v) for t, v in results["zero_shot"].items()]
    out += ["", "**Enhancement** (A = the target's own adapter, merged with a related B):", "", head,
            "|---|---|---|---|---|---|---|---|---|"]
    out += [_row(t, v) for t, v in results["enhancement"].items()]
    own = results.get("own_adapter")
    if own:
        out += ["", "Own-adapter test accuracy: " + ", ".join(f"{c} {_pct(m)}" for c, m in own.items())]
    mlm = results.get("mlm", {})
    if mlm:
        grid = results.get("mlm_lambdas") or next(iter(mlm.values()))["points"]
        n = next(iter(mlm.values()))["n_texts"]
        out += ["", "**How well the merge models the target language** — masked-LM loss on held-out "
                f"text of the target (no labels; lower is better): {n} held-out paragraphs of the "
                "target's help text, never trained on, split into two interleaved halves of "
                f"{n // 2}; λ chosen on the first half over {len(grid)} values (0 to 1 in steps of "
                "0.05), all three losses on the second half; merge − better in nats per token with "
                "a paired bootstrap 95 % CI over the paragraphs of both halves (2,000 resamples, λ "
                "chosen again on each); (–): no per-paragraph sums shipped for that target:", "",
                "| target | A | B | A alone | B alone | merge (λ) | merge − better [95 % CI] | "
                "interior minimum (whole curve) | tokens (2nd half) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for t, m in mlm.items():
            if "@" in t:  # low-resource variants: their own table
                continue
            s = m["halves"]["second"]
            out.append(f"| {t} | {m['a']} | {m['b']} | {s['a']:.3f} | {s['b']:.3f} | "
                       f"{s['merged']:.3f} ({m['halves']['best_lam_first']:g}) | "
                       f"{_mlm_gain(texts, t, s)} | "
                       f"{'yes, λ = %g' % m['best_lam'] if m['interior_minimum'] else 'no'} | {s['n_tokens']} |")
    gate = results.get("mlm_gate", {})
    if gate:
        out += ["", "Held-out MLM loss from the adapters' training (no adapter / en adapter / own "
                "adapter): " + "; ".join(
                    f"{c} {g.get('none', float('nan')):.2f}/{g.get('en', float('nan')):.2f}/"
                    f"{g.get(c, float('nan')):.2f}" for c, g in gate.items())]
    return "\n".join(out)


def _nats(g: dict) -> str:
    return format_gain(g, digits=3)


def lowres_tables(lowres: dict) -> str:
    """The low-resource variants (results/lowres.json), both arms: per language, arm and share of
    text, the merge's gain over the better single adapter on the three measures, with 95 %
    intervals; then how each variant was trained (steps, why it stopped, wall time)."""
    arms = lowres.get("arms", {"equal_compute": f"{lowres['steps']} steps of 16 × 128 tokens"})
    out = ["Arms: " + "; ".join(f"**{a}**: {words}" + (" (the paper's setting)"
                                                       if a == lowres.get("paper_arm") else "")
                                for a, words in arms.items()) + ".",
           "A = the variant, B = the related full adapter, from the shared init; λ chosen on dev "
           "(topic, tagging) or on the first half of the held-out text (masked LM), reported on "
           "test / the second half. Gains: merge − better of A and B alone (masked LM: loss drop "
           "in nats per token, positive = the merge predicts the text better), paired bootstrap "
           "95 % CI.", "",
           "| A | arm | tokens | B | masked LM: A / B / merge (λ) | MLM gain | tagging F1: A / B / merge (λ) "
           "| tagging gain | topic acc.: A / B / merge (λ) | topic gain |",
           "|---|---|---:|---|---|---|---|---|---|---|"]
    for code, row in lowres["languages"].items():
        groups = [("converged", row.get("converged", {})),
                  ("equal_compute", {k: v for k, v in row["points"].items() if k != "full"}),
                  ("full", {k: v for k, v in row["points"].items() if k == "full"})]
        for arm, points in groups:
            for key, p in sorted(points.items(), key=lambda kv: row["tokens"][kv[0]]):
                m, tg, tp = p["mlm"], p.get("tagging"), p["topic"]
                name = p["a"] if key != "full" else f"{code} (full)"
                out.append(
                    f"| {name} | {arm if arm != 'full' else '–'} | {row['tokens'][key]:,} | {p['b']} | "
                    f"{m['a_alone']:.3f} / {m['b_alone']:.3f} / "
                    f"{m['merged']:.3f} ({m['best_lam']:g}) | {_nats(m['gain_vs_better'])} | "
                    + (f"{tg['a_alone']:.1f} / {tg['b_alone']:.1f} / {tg['merged']:.1f} ({tg['best_lam']:g}) | "
                       f"{_ci(tg['gain_vs_better'])} | " if tg else "– | – | ")
                    + (f"{_pct(tp['a_alone'])} / {_pct(tp['b_alone'])} / {_pct(tp['merged'])} ({tp['best_lam']:g}) | "
                       f"{_ci(tp['gain_vs_better'])} |" if tp else "not measured | – |"))
    code, row = next(iter(lowres["languages"].items()))
    first = next(iter(row["points"].values()))
    out += ["", f"n: masked LM {first['mlm']['n_texts']} paragraphs per half ({code}: "
            f"{first['mlm']['n_tokens']} masked tokens in the second); tagging "
            f"{first['tagging']['n_test'] if first.get('tagging') else '–'} test sentences; topic "
            f"{first['topic']['n_test']} test items. \"not measured\": the bundle has no full-data "
            "curve for that pair, and measuring it was left out for CPU time.", "",
            "| variant | arm | steps | epochs of its text | stopped by | best held-out check | "
            "wall time |", "|---|---|---:|---:|---|---|---:|"]
    for v, s in lowres["training"].items():
        arm = s.get("arm", "equal_compute")
        best = (f"{s['best_held_out_loss']:.3f} at step {s['best_step']}"
                if s.get("best_step") else "–")
        epochs = s.get("epochs", round(s["steps"] * 16 / s["rows"], 2) if s.get("rows") else "–")
        out.append(f"| {v} | {arm} | {s['steps']} | {epochs} | {s.get('stopped', 'step cap')} | "
                   f"{best} | {s['train_seconds'] / 60:.1f} min ({s.get('device', 'cpu')}) |")
    return "\n".join(out)


def beyond_tables(beyond: dict) -> str:
    """Per-layer gradients vs one λ, and the output ensemble vs the weight merge (results/beyond.json)."""
    out = ["| target | A | B | single λ (dev) | best gradient bottom→top (dev) | gradient − single "
           "| ensemble (λ) | merge (λ) | ensemble − merge |", "|---|---|---|---|---|---|---|---|---|"]
    for t, r in beyond.items():
        g = r["best_gradient"]
        out.append(f"| {t} | {r['a']} | {r['b']} | {r['test']['single_lam']:.1f} ({r['best_lam']:g}) | "
                   f"{r['test']['gradient']:.1f} ({g[0]:g}→{g[-1]:g}) | {_ci(r['gradient_vs_single'])} | "
                   f"{r['test']['ensemble']:.1f} ({r['best_ensemble_lam']:g}) | {r['test']['merge']:.1f} "
                   f"({r['best_lam']:g}) | {_ci(r['ensemble_vs_merge'])} |")
    mlm = {t: r["mlm"] for t, r in beyond.items() if r.get("mlm") and "second_half" in r["mlm"]}
    if mlm:
        out += ["", "Held-out masked-LM loss (second half; λ / gradient chosen on the first half; "
                "differences in nats per token, positive = the first-named predicts the text better):", "",
                "| target | single λ | best gradient | single − gradient | merge (λ) | ensemble (λ) "
                "| merge − ensemble | tokens |", "|---|---|---|---|---|---|---|---|"]
        for t, m in mlm.items():
            h, g = m["second_half"], m["best_gradient"]
            out.append(f"| {t} | {h['single_lam']:.3f} ({m['best_lam']:g}) | {h['gradient']:.3f} "
                       f"({g[0]:g}→{g[-1]:g}) | {_nats(_flip(m['gradient_vs_single']))} | {h['merge']:.3f} | "
                       f"{h['ensemble']:.3f} ({m['best_ensemble_lam']:g}) | "
                       f"{_nats(_flip(m['ensemble_vs_merge']))} | {m['n_tokens_second']} |")
    return "\n".join(out)


def _flip(g: dict) -> dict:
    """A difference the other way round (y − x instead of x − y)."""
    lo, hi = g["ci95"]
    return {"points": -g["points"], "ci95": [-hi, -lo]}


def typology_tables(typ: dict) -> str:
    """The typology-weighted merge against the two-way merge (results/typology.json)."""
    out = [f"URIEL feature set: {typ['feature_set']}; k and T chosen on dev; test accuracy % with "
           "95 % CI; differences paired over the same test items.", "",
           "| target | A alone | B alone | two-way (λ) | typology (k, T) | weights | typology − two-way "
           "| typology − better single |", "|---|---|---|---|---|---|---|---|"]
    for t, r in typ["targets"].items():
        te = r["test"]
        w = ", ".join(f"{c} {x:.2f}" for c, x in r["weights"].items())
        out.append(f"| {t} | {te['A']['points']:.1f} | {te['B']['points']:.1f} | {te['two_way']['points']:.1f} "
                   f"({r['lam']:g}) | {te['typology']['points']:.1f} ({r['k']}, {r['temperature']:g}) | {w} | "
                   f"{_ci(r['typology_minus_two_way'])} | {_ci(r['typology_minus_better_single'])} |")
    return "\n".join(out)


def lambda_rules_tables(table: dict) -> str:
    """The λ rules (dev labels; masked-LM minimum on unlabelled text; lowest task-head entropy on
    the unlabelled dev texts; λ = 0.5) per task and target: the test score at each rule's λ and
    the differences between rules, paired bootstrap 95 % intervals with λ re-chosen by each rule
    on every resample (``lambda_rules.rules_table``)."""
    out = []
    for task, rows in table["tasks"].items():
        if not rows:
            continue
        first = next(iter(rows.values()))
        metric = "accuracy %" if first["metric"] == "accuracy" else "span F1"
        out += [f"Task {task} ({metric}, test; λ on the 0.1 grid):", "",
                "| target | A + B | dev-chosen (λ) | masked-LM minimum (λ) | lowest entropy (λ) | λ = 0.5 "
                "| mlm − dev [95 % CI] | mlm − fixed [95 % CI] | entropy − dev [95 % CI] "
                "| entropy − mlm [95 % CI] | entropy − fixed [95 % CI] | n dev / test / paragraphs |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for t, c in rows.items():
            r = c["rules"]
            ent = r.get("entropy")
            ent_cell = f"{ent['test']:.1f} ({ent['lam']:g})" if ent else "–"
            gaps = [_ci(c[k]) if k in c else "–" for k in ("mlm_minus_dev", "mlm_minus_fixed", "entropy_minus_dev",
                                                            "entropy_minus_mlm", "entropy_minus_fixed")]
            out.append(f"| {t} | {c['a']} + {c['b']} | {r['dev']['test']:.1f} ({r['dev']['lam']:g}) | "
                       f"{r['mlm']['test']:.1f} ({r['mlm']['lam']:g}) | "
                       f"{ent_cell} | "
                       f"{r['fixed']['test']:.1f} | {' | '.join(gaps)} | "
                       f"{c['n_dev']} / {c['n_test']} / {c['n_texts'] or '–'} |")
        notes = sorted({c["note"] for c in rows.values() if c.get("note")})
        if any("entropy" not in c["rules"] for c in rows.values()):
            notes.append("– : no prediction entropies shipped for that target (`python -m langarith.head_entropy`)")
        out += [""] + [f"Note: {n}." for n in notes] + ([""] if notes else [])
    for k, why in table.get("skipped", {}).items():
        out.append(f"- {k}: {why}")
    return "\n".join(out).rstrip()


def lambda_rules_section(bundle: Path) -> str:
    """``lambda_rules_tables`` computed here from the bundle's shipped files (seconds)."""
    from .. import lambda_rules
    from ..loading import Bundle

    return lambda_rules_tables(lambda_rules.rules_table(lambda_rules.Shipped(Bundle.load(bundle))))


def _row(t: str, v: dict) -> str:
    g = v["gain_vs_better"]
    return (f"| {t} | {v['b']} | {_pct(v['majority'])} | {_pct(v['a_alone'])} | {_pct(v['b_alone'])} | "
            f"{_pct(v['test_at_best'])} ({v['best_lam']:g}) | {_ci(g)} | {g['p_positive']:.2f} | "
            f"{v['n_dev']} / {v['n_test']} |")


def recompute(bundle: Path, results: dict, reevaluate: list[str]) -> tuple[float, float]:
    """Metrics and bootstrap again from the shipped items and predictions; the model run again
    for ``reevaluate`` targets. Returns the largest difference of a gain or interval bound
    (points) and the largest share of re-run predictions that differ from the shipped ones (%)."""
    from .. import tasks
    from ..model import LanguageStack
    from ..results import sweep_items

    stack = LanguageStack(bundle)
    worst, flipped = 0.0, 0.0
    for setting in ("zero_shot", "enhancement", "low_resource"):
        for t, v in results.get(setting, {}).items():
            if t not in stack.bundle.languages:  # a variant measured but not shipped
                continue
            sw = sweep_items(stack, t, v["b"])
            lams = tuple(p["lam"] for p in sw["points"])
            data = {s: tasks.load_eval(stack, t, sw["task"], s) for s in ("dev", "test")}
            preds = {s: [tasks.decode_predictions(x) for x in sw["predictions"][s]] for s in data}
            if t in reevaluate:
                print(f"{t}: running the model on {sum(map(len, data.values()))} items × "
                      f"{len(lams)} λ ...", file=sys.stderr)
                live = tasks.sweep(stack, t, v["b"], lams, sw["task"])
                for s in data:
                    changed = sum(a != b for x, y in zip(live["predictions"][s], sw["predictions"][s])
                                  for a, b in zip(x, y))
                    print(f"  {s}: {changed} of {len(data[s]) * len(lams)} predictions differ from "
                          f"the shipped ones", file=sys.stderr)
                    flipped = max(flipped, 100 * changed / (len(data[s]) * len(lams)))
            again = tasks.sweep_from_predictions(stack, t, sw["a"], sw["b"], lams, sw["task"], data, preds)
            for key in ("gain_vs_a", "gain_vs_b", "gain_vs_better"):
                worst = max(worst, abs(again[key]["points"] - v[key]["points"]),
                            *(abs(x - y) for x, y in zip(again[key]["ci95"], v[key]["ci95"])))
            print(f"{t}: best λ {again['best_lam']} (shipped {v['best_lam']}), gain vs better "
                  f"{_ci(again['gain_vs_better'])}", file=sys.stderr)
    return worst, flipped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle")
    p.add_argument("--recompute", action="store_true", help="rebuild the tables from the shipped items")
    p.add_argument("--reevaluate", default="", help="comma-separated targets to run the model on again")
    args = p.parse_args(argv)
    bundle = bundle_path(args.bundle)
    results = json.loads((bundle / "results" / "results.json").read_text(encoding="utf-8"))
    texts = bundle / "results" / "mlm_texts.json"
    print(tables(results, json.loads(texts.read_text(encoding="utf-8")) if texts.is_file() else None))
    for name, title, fn in (("lowres", "Under-trained adapters", lowres_tables),
                            ("beyond", "Beyond one λ", beyond_tables),
                            ("typology", "Typology-weighted merges", typology_tables)):
        path = bundle / "results" / f"{name}.json"
        if path.is_file():
            print(f"\n**{title}** (results/{name}.json):\n")
            print(fn(json.loads(path.read_text(encoding="utf-8"))))
    print("\n**Choosing λ without labels** (dev labels, the masked-LM minimum, λ = 0.5; computed from "
          "the shipped predictions and masked-LM sums):\n")
    print(lambda_rules_section(bundle))
    if args.recompute or args.reevaluate:
        worst, flipped = recompute(bundle, results, [t for t in args.reevaluate.split(",") if t])
        print(f"\nrecomputed from the shipped files: largest difference {worst:.4f} points"
              + (f"; re-run predictions differing from the shipped ones: {flipped:.2f} %"
                 if args.reevaluate else ""))
        return 0 if worst <= 0.01 and flipped <= 0.5 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
