"""Layer 3: the task head's own uncertainty on unlabelled target text, for the ``entropy`` λ rule.

EMEA (Wang et al., Findings of EMNLP 2021) and AdaMerging (Yang et al., ICLR 2024) choose merge
weights without labels by the entropy of the task model's predictions on unlabelled inputs. For
each swept target and task this writes, at every λ of the shipped sweep's grid, each dev item's
prediction entropy under ``Stack(λ·A + (1−λ)·B, task)`` (nats): the label distribution of a
topic item; for a tagging sentence, the summed entropy of each word's tag distribution and the
word count, so that the rule pools over words. Only the dev items' *texts* are read, never their
labels. Output: ``results/head_entropy.json``, read by ``langarith.lambda_rules``.

    python -m langarith.head_entropy [--bundle assets/bundle] [--targets pt,es] [--tasks NAME,...]

Resumable: each (task, target) is written as it finishes and skipped when present and current.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from . import lambda_rules, results, stats, tasks
from .arithmetic import pair_weights
from .loading import InputError
from .model import LanguageStack

FILE = "head_entropy"  # results/<FILE>.json


def keys_digest(keys: list[str]) -> str:
    """A short fingerprint of the dev items' keys, in order (the file is checked against it)."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def _weights(a: str, b: str, lam: float):
    return a if lam == 1 else b if lam == 0 else pair_weights(a, b, lam)


def dev_items(stack: LanguageStack, target: str, task) -> tuple[list, list[str]]:
    """The target's dev items of ``task`` and their keys (the texts only are used)."""
    if task.kind == "tagging":
        from . import ner

        rows = ner.load_tagging_eval(stack, target, task.name, "dev")
        return rows, [r["key"] for r in rows]
    rows = tasks.load_eval(stack, target, task.name, "dev")
    return rows, tasks.item_keys(rows, "dev")


def entropies(stack: LanguageStack, rows: list, a: str, b: str, lambdas, task) -> dict:
    """``{"sums": [L][n], "counts": [n]}``: per dev item, the summed prediction entropy (nats) and
    the number of predictions it sums (1 for a topic item, the words of a sentence), at each λ."""
    sums, counts = [], None
    for lam in lambdas:
        w = _weights(a, b, lam)
        if task.kind == "tagging":
            from . import ner

            got = ner.word_entropies(stack, [r["words"] for r in rows], w, task.name)
            row, n = [h for h, _ in got], [c for _, c in got]
        else:
            probs = tasks.predict_probs(stack, rows, w, task.name).numpy()
            row, n = stats.entropy(probs).tolist(), [1] * len(rows)
        if counts is not None and n != counts:
            raise RuntimeError("prediction counts differ between λ values")
        counts = n
        sums.append([round(float(h), 4) for h in row])
    return {"sums": sums, "counts": counts}


def swept(stack: LanguageStack, task) -> list[tuple[str, str, str, list[float]]]:
    """(target, A, B, λ grid) of every zero-shot and enhancement target with a shipped sweep of
    ``task`` (the targets of the λ rules' table)."""
    res = results.bundle_results(stack)
    out = []
    for t in [t for s in ("zero_shot", "enhancement") for t in res.get(s, {})]:
        try:
            d = lambda_rules.rule_data(stack, t, None, task.name)
        except InputError:
            continue
        out.append((t, d.a, d.b, list(d.grid)))
    return out


def build(stack: LanguageStack, task_names=None, targets=None, log=None) -> dict:
    """Compute (or keep, where current) every swept target's entropies and write the file.
    Returns ``{"computed": [...], "kept": [...]}`` as ``task/target`` names."""
    path = stack.bundle.path("results") / f"{FILE}.json"
    out = results.measured(stack, FILE) or {}
    done: dict = {"computed": [], "kept": []}
    for name in task_names or list(stack.bundle.tasks):
        task = stack.bundle.task(name)
        for target, a, b, grid in swept(stack, task):
            if targets and target not in targets:
                continue
            rows, keys = dev_items(stack, target, task)
            have = out.get(name, {}).get(target)
            if have and have["lambdas"] == grid and have["keys"] == keys_digest(keys) \
                    and (have["a"], have["b"]) == (a, b):
                done["kept"].append(f"{name}/{target}")
                continue
            start = time.time()
            out.setdefault(name, {})[target] = {"a": a, "b": b, "lambdas": grid, "keys": keys_digest(keys),
                                                **entropies(stack, rows, a, b, grid, task)}
            done["computed"].append(f"{name}/{target}")
            if log:
                log(f"{name}/{target}: {len(grid)} λ × {len(rows)} dev items in {time.time() - start:.0f} s")
            path.write_text(json.dumps(out, separators=(",", ":")), encoding="utf-8")  # resumable
    if not path.is_file():  # nothing swept: the file says so (the rule then reports "no entropies")
        path.write_text("{}", encoding="utf-8")
    return done


def main(argv: list[str] | None = None) -> int:
    from .paths import bundle_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", help="the bundle folder (default: the embedded one)")
    p.add_argument("--targets", default="", help="comma-separated (default: every swept target)")
    p.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    args = p.parse_args(argv)
    stack = LanguageStack(bundle_path(args.bundle))
    build(stack, [t for t in args.tasks.split(",") if t] or None,
          {t for t in args.targets.split(",") if t} or None, log=lambda m: print(m, file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
