"""What every panel of the page shares: the error guard, the GPU boundary, the queue's lanes,
the merge-method values as one object, the shared controls, and small formatting helpers.

Panels import this module and the layers below; no panel imports another (``demo.build_demo``
chains them).
"""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import astuple, dataclass, fields

import gradio as gr

from .. import hosting, share, tasks, typology
from ..task_kinds import KINDS, TaskKind, kind_of
from ..arithmetic import METHODS, PARAMS, MergeError
from ..loading import BundleError, InputError
from ..model import LanguageStack

BAD_INPUT = (InputError, MergeError, BundleError)
FALLBACK_TEXT = "Barack Obama visited Berlin and Paris with Angela Merkel in 2013."
PRIVATE = dict(api_visibility="private")  # events that only serve the page itself
WHO = ("A", "merged", "B")  # the three columns of every comparison: A alone, the merge, B alone
LAM_STEP = 0.05  # the λ slider's step: the page only ever sends multiples of it
LAM_GRID = tuple(round(i * LAM_STEP, 2) for i in range(round(1 / LAM_STEP) + 1))


def guarded(fn):
    """Bad input becomes a red toast with the engine's message; the app stays up. (A generator
    stays a generator: Gradio streams those.)"""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def frames(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except BAD_INPUT as e:
                raise gr.Error(str(e)) from None
        return frames

    @functools.wraps(fn)  # Gradio reads the signature (gr.Progress parameters) through this
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BAD_INPUT as e:
            raise gr.Error(str(e)) from None
    return wrapper


# --- the GPU boundary ---------------------------------------------------------------------------
# On ZeroGPU a decorated function runs in a forked worker, and each decorated function gets a
# worker of its own, with its own copy of the model: so there is exactly one, ``_run_model``. It
# receives the handler itself (a module-level function: pickle sends it by reference) and the
# visitor's plain inputs, never the stack (it holds an RLock, and it would be copied whole): the
# stack is in ``_SERVED``, set once at start-up by ``serve`` (a forked worker inherits it).

_SERVED: dict = {}


def model_handler(duration, batched: bool | int = False, frame_pause: float | None = None,
                  served_first: bool = False, latest_only: bool = False):
    """Mark ``fn(stack, ...)`` as a handler that runs the model: its events run through the GPU
    boundary in the model's concurrency group. ``duration``: seconds of GPU asked for, or a
    callable of the handler's inputs (without the stack), as ``spaces.GPU`` takes it.
    ``batched``: the handler takes the waiting calls of its event together (each input a list,
    one list per output back; Gradio's ``batch=True``): one GPU call and one forward pass serve
    every visitor in the batch; an int: at most that many visitors a batch (a heavy step in
    small batches, so that the predictions queued behind it wait little). ``frame_pause``: the
    handler yields frames; they are computed in one GPU call and played to the page this many
    seconds apart. ``served_first``: its events go ahead of the other waiting model events
    (``hosting.FirstInLine``): what a visitor looks at first. ``latest_only``: a visitor's
    newer call replaces their waiting one (its work went stale with the newer release)."""
    def mark(fn):
        fn.gpu_seconds, fn.batched, fn.frame_pause = duration, batched, frame_pause
        fn.served_first, fn.latest_only = served_first, latest_only
        return fn
    return mark


def is_model_handler(fn) -> bool:
    return hasattr(fn, "gpu_seconds")


def _run_model(fn, *inputs, **kwargs):
    """The one GPU-decorated function: ``fn`` on the served stack (frames as one list)."""
    out = fn(_SERVED["stack"], *inputs, **kwargs)
    return list(out) if inspect.isgenerator(out) else out


def _gpu_seconds(fn, *inputs, **kwargs):
    duration = fn.gpu_seconds
    return duration(*inputs, **kwargs) if callable(duration) else duration


def serve(stack: LanguageStack) -> None:
    """The stack every handler runs on, and the GPU-decorated runner (decorated here, not at
    import, so that ``hosting.SPACES_GPU`` as set when the page is built is the one used)."""
    _SERVED["stack"] = stack
    _SERVED["run"] = hosting.gpu(_gpu_seconds)(_run_model)


def served_stack() -> LanguageStack:
    return _SERVED["stack"]


def run_handler(fn, *inputs):
    """The one path of every event: a model handler through the GPU boundary, a CPU handler
    here, both on the served stack."""
    if is_model_handler(fn):
        return _SERVED["run"](fn, *inputs)
    return fn(_SERVED["stack"], *inputs)


# --- the queue's lanes --------------------------------------------------------------------------
# Model events share one group sized for one model; every CPU-only event has its own limit, so
# precomputed figures and the page's own bookkeeping never wait behind the model.
MODEL_LANE = dict(concurrency_id=hosting.MODEL_GROUP, concurrency_limit=hosting.MODEL_CONCURRENCY)
CPU_LANE = dict(concurrency_limit=4)


# A batch: the calls of one event waiting when the model is free (Gradio does not wait for a
# batch to fill), at most a class's worth, so one pass stays about half a second on 2 cores.


def lane(fn) -> dict:
    if not is_model_handler(fn):
        return CPU_LANE
    batched = getattr(fn, "batched", False)
    if not batched:
        return MODEL_LANE
    size = hosting.MAX_BATCH if batched is True else int(batched)
    return {**MODEL_LANE, "batch": True, "max_batch_size": size}


# --- batched handlers: one visitor per row --------------------------------------------------------


def per_row(n: int, value) -> list:
    """A batched input as a list of ``n`` (an input the event does not send is its default)."""
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def method_rows(method: "Method", n: int) -> list["Method"]:
    """A batch's method panel values (each field a list, or a default) as one ``Method`` a row."""
    return [Method(*vals) for vals in zip(*(per_row(n, v) for v in method.values()))]


def batch_answer(rows: list, n_outputs: int, message_at: int = 0) -> list[list]:
    """Per-row answers (tuples of outputs, or the bad-input error of that row) as Gradio's
    batched return: one list per output. A lone request's error is a red toast, as unbatched;
    in a batch it cannot be (one error would fail every visitor's answer), so that row's output
    ``message_at`` (a text one: a plot cannot show a line) carries the message and its other
    outputs stay as they were."""
    if len(rows) == 1 and isinstance(rows[0], Exception):
        raise gr.Error(str(rows[0])) from None
    out = [list() for _ in range(n_outputs)]
    for r in rows:
        if isinstance(r, Exception):
            r = [*(gr.update() for _ in range(message_at)), f"**Not run:** {r}",
                 *(gr.update() for _ in range(n_outputs - message_at - 1))]
        for col, v in zip(out, r):
            col.append(v)
    return out


def each_row(fn, *args):
    """``fn(*args)``, or the bad-input error it raised (the row's answer in a batch)."""
    try:
        return fn(*args)
    except BAD_INPUT as e:
        return e
    except gr.Error as e:
        return InputError(e.message)
    except Exception as e:  # a bug met by one row must not fail the batch's other visitors
        import traceback

        traceback.print_exc()
        return InputError(f"these inputs could not be run ({type(e).__name__}); nothing was changed")


# --- the merge method's values: one object, one list of controls --------------------------------


@dataclass(frozen=True)
class Method:
    """The method panel's values, one field per control, in the panel's order. The merge
    parameters carry the names and defaults ``arithmetic.PARAMS`` declares (the recipe's, the
    engine's ``Merge``, the CLI's options); the panel adds the method, the N-way weights as text
    and the extrapolation switch. Adding a method parameter: its ``MethodParam``, a field here,
    and its control in ``method.layout``."""
    method: str = "linear"
    weights_text: str = ""  # N-way: "en: 0.5, es: 0.3, it: 0.2"
    density: float = PARAMS["density"].default
    seed: int = PARAMS["seed"].default
    allow_extrapolation: bool = False
    lam_layers: str = ""  # per-layer λ anchors as text, bottom → top
    lam_inv: float | None = PARAMS["lam_inv"].default  # None: λ
    typology: str | None = PARAMS["typology"].default  # None: the typology layer's defaults
    k: float | None = PARAMS["k"].default
    temperature: float | None = PARAMS["temperature"].default

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def values(self) -> tuple:
        return astuple(self)

    @property
    def merges_linearly(self) -> bool:
        """Plain λ·A + (1−λ)·B (or the ensemble, which merges nothing): the engine's fast path."""
        return self.method in ("linear", tasks.ENSEMBLE) and not self.allow_extrapolation

    def setting(self, name: str):
        """A merge parameter as the recipe takes it (the controls give text and floats)."""
        value = getattr(self, name)
        if value is None or value == "":
            return None
        return share.parse_anchors(value) if name == "lam_layers" else PARAMS[name].type(value)

    def recipe(self, target: str, source: str | None, lam: float) -> share.Recipe:
        """The recipe of this panel: the registry method's declared parameters only. The page's
        own two choices are the linear recipe: N-way with its weights; the output ensemble (which
        merges nothing) at the same λ."""
        nway = self.method == "nway"
        m = "linear" if nway or self.method == tasks.ENSEMBLE else self.method
        settings = METHODS[m].settings if m in METHODS else ()  # unknown: the recipe says so
        return share.Recipe(target=target, source=source or None, lam=lam, method=m,
                            weights=parse_weights(self.weights_text) if nway else {},
                            allow_extrapolation=bool(self.allow_extrapolation),
                            **{p: v for p in settings if (v := self.setting(p)) is not None})

    def merge(self, stack: LanguageStack, target: str, source: str | None, lam: float):
        """The engine's merge of this method, or None for the plain linear one."""
        return None if self.merges_linearly else self.recipe(target, source, lam).merge(stack)

    @classmethod
    def from_recipe(cls, r: share.Recipe, defaults: "Method") -> "Method":
        """A recipe's method in the panel's terms (fields it does not set: ``defaults``)."""
        return cls(method="nway" if r.weights else r.method,
                   weights_text=", ".join(f"{c}: {w:g}" for c, w in r.weights.items()),
                   density=r.density or defaults.density, seed=r.seed,
                   allow_extrapolation=r.allow_extrapolation,
                   lam_layers=", ".join(f"{t:g}" for t in r.lam_layers or ()),
                   lam_inv=r.lam if r.lam_inv is None else r.lam_inv,
                   typology=r.typology or defaults.typology,
                   k=defaults.k if r.k is None else r.k,
                   temperature=defaults.temperature if r.temperature is None else r.temperature)


LINEAR = Method()  # a handler called without the page: the plain linear merge
PANEL = Method(lam_inv=0.5, typology=typology.DEFAULT_FEATURE_SET,  # the controls' start values
               k=typology.DEFAULT_K, temperature=typology.DEFAULT_TEMPERATURE)


def method_choices() -> list[tuple[str, str]]:
    """The Method radio's (label, name) pairs: the merge-method registry's (``arithmetic.METHODS``,
    which the model, the recipe and the CLI read too), plus the two page-level choices that are
    not weight merges: the N-way sum after linear, the output ensemble before typology."""
    from ..arithmetic import method_choices as registry

    out = list(registry())
    names = [n for _, n in out]
    out.insert(names.index("linear") + 1, ("N-way weighted sum", "nway"))
    names = [n for _, n in out]
    out.insert(names.index("typology"), ("output ensemble (λ·A-stack + (1−λ)·B-stack)", tasks.ENSEMBLE))
    return out


@dataclass
class MethodControls:
    """The method panel's components, one per ``Method`` field, under the same names."""
    components: dict

    def __post_init__(self):
        missing = set(Method.names()) - set(self.components)
        if missing:
            raise ValueError(f"the method panel lacks controls for {sorted(missing)}")

    @property
    def inputs(self) -> list:
        return [self.components[n] for n in Method.names()]

    def __getattr__(self, name):
        try:
            return self.__dict__["components"][name]
        except KeyError:
            raise AttributeError(name) from None


# --- binding a handler to the page ----------------------------------------------------------------


def bind(fn):
    """``fn(stack, ...)`` as an event handler of the other inputs. A real function with the
    signature minus ``stack`` (Gradio reads it for gr.Progress, gr.Request and gr.SelectData),
    where a ``Method`` parameter stands for the method panel's controls, one parameter each.
    Every call goes through ``run_handler``."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]
    flat = []
    for p in params:
        if isinstance(p.default, Method):
            flat += [inspect.Parameter(n, p.POSITIONAL_OR_KEYWORD, default=v)
                     for n, v in zip(Method.names(), p.default.values())]
        else:
            flat.append(p)
    flat_sig = sig.replace(parameters=flat)

    def call(args, kwargs) -> list:
        got = flat_sig.bind(*args, **kwargs)
        got.apply_defaults()
        a = got.arguments
        return [Method(*(a[n] for n in Method.names())) if isinstance(p.default, Method)
                else a[p.name] for p in params]

    if inspect.isgeneratorfunction(fn):  # frames computed in one call, played at their pace
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            for i, frame in enumerate(run_handler(fn, *call(args, kwargs))):
                if i and getattr(fn, "frame_pause", None):
                    time.sleep(fn.frame_pause)
                yield frame
    else:
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            return run_handler(fn, *call(args, kwargs))

    handler.__signature__ = flat_sig
    return handler


def event(fn, inputs, outputs, **kw) -> dict:
    """The keyword arguments of one event (``trigger(**event(...))`` or ``.then(**...)``): the
    bound handler in its lane of the queue."""
    return dict(fn=bind(fn), inputs=inputs, outputs=outputs, **lane(fn), **kw)


# --- the shared controls ------------------------------------------------------------------------


class Controls:
    """The components several panels read: filled in by the panel that lays each one out
    (header: target, source, lam, label_free, label_free_rule, label_free_note, task, setting, premise, link_note,
    lesson; compare: text, mask_text, example; tour: step; method: method)."""
    target = source = lam = label_free = label_free_rule = label_free_note = task = setting = premise = None
    premise_more = premise_box = link_note = lesson = step = None
    text = mask_text = example = None
    method: MethodControls | None = None

    @property
    def pair(self) -> list:
        return [self.target, self.source, self.lam]


# --- small helpers ----------------------------------------------------------------------------------


def class_query(stack: LanguageStack, target, source, lam, task_name, text, step,
                method: Method = LINEAR) -> tuple[share.Recipe, str]:
    """A class link's recipe (validated, like an export) and query: the pair, λ, the task, the
    text (an example's index when it is one) and the tour step shown last (``keep``'s link for
    a class and ``room``'s room links share it)."""
    recipe = method.recipe(target, source, lam)
    recipe.merge(stack)
    examples = list(stack.bundle.language(target).examples)
    lesson = share.Lesson(task=task_name, step=step,
                          **({"example": examples.index(text)} if text in examples else {"text": text}))
    return recipe, share.to_query(recipe, lesson)



def language_choices(stack: LanguageStack, with_adapter_only: bool = False) -> list[tuple[str, str]]:
    out = []
    for code, lang in stack.bundle.languages.items():
        if with_adapter_only and (not lang.has_adapter or lang.is_variant):
            continue  # a low-resource variant is never a source
        tag = "" if lang.has_adapter else " · zero-shot"  # no adapter of its own
        if lang.is_variant:
            tag = " · low-resource variant"
        out.append((f"{lang.name} ({code}, {lang.family}){tag}", code))
    return out


def first_target(stack: LanguageStack) -> str:
    """The page opens on a zero-shot target when there is one: the paper's hardest case."""
    langs = stack.bundle.languages
    return ([c for c in langs if not langs[c].has_adapter] + [c for c in langs if langs[c].has_adapter])[0]


def task_choices(stack: LanguageStack) -> list[tuple[str, str]]:
    """The page's tasks (the kinds ``on_page``: classification, span tagging); QA has its own tab."""
    return [(t.title, t.name) for t in stack.bundle.tasks.values()
            if t.kind in KINDS and KINDS[t.kind].on_page]


def page_task(stack: LanguageStack, task_name: str | None) -> str | None:
    """The task the page shows: the picker's, else its first; None for a profile with none (then
    the page compares fill-mask only)."""
    shown = task_choices(stack)
    return (task_name or shown[0][1]) if shown else None


def page_kind(stack: LanguageStack, task_name: str | None) -> TaskKind | None:
    """The registry entry of the task the page shows, or None (fill-mask only)."""
    task = page_task(stack, task_name)
    return kind_of(stack, task) if task else None


def readable(stack: LanguageStack, task_name: str | None):
    """Code -> the name the page shows (``label_names`` of the task in the manifest: "Writer" for
    ``swriter``); the codes stay in the JSON, the CLI and the API. Unknown codes pass through."""
    shown = task_choices(stack)
    names = stack.bundle.task(task_name or shown[0][1]).label_names if shown else {}
    return lambda code: names.get(code, code)


def parse_weights(text: str) -> dict[str, float]:
    """``"en: 0.5, es: 0.3, it: 0.2"`` -> {"en": 0.5, ...}; a clear error otherwise."""
    out: dict[str, float] = {}
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        code, sep, w = part.partition(":")
        if not sep:
            raise InputError(f"write N-way weights as code: weight, got {part.strip()!r}")
        try:
            out[code.strip()] = float(w)
        except ValueError:
            raise InputError(f"weight of {code.strip()!r} is not a number: {w.strip()!r}") from None
    if len(out) < 2:
        raise InputError("N-way merging needs at least two languages, e.g. en: 0.5, es: 0.3, it: 0.2")
    return out


def column_names(a: str, b: str, lam: float, merged: str = "merged") -> dict[str, str]:
    """The three columns' headings: ``A = en alone``, ``merged (λ = 0.70)``, ``B = es alone``."""
    return {"A": f"A = {a} alone", "merged": f"{merged} (λ = {lam:.2f})", "B": f"B = {b} alone"}


def pts(x: float) -> str:
    return f"{x:+.1f}"


def gain_line(name: str, g: dict) -> str:
    """``+0.4 points [−1.1, +1.9] (P(gain > 0) = 0.71)``, and whether that is a win at all.
    (The page's one gain-with-interval sentence; ``stats`` gets a shared formatter.)"""
    lo, hi = g["ci95"]
    verdict = ("a gain" if lo > 0 else "a loss" if hi < 0 else "inside its interval: not a clear gain")
    return (f"{name}: **{pts(g['points'])}** points, 95 % CI [{pts(lo)}, {pts(hi)}], "
            f"share of resamples with a gain {g['p_positive']:.2f} — {verdict}")


def ci_words(g: dict, unit: str = "points", digits: int = 1) -> str:
    """A gain in brief: ``**+0.4** points [-1.0, +1.4] (inside its interval)``."""
    lo, hi = g["ci95"]
    verdict = "clear" if lo > 0 or hi < 0 else "inside its interval"
    return f"**{g['points']:+.{digits}f}** {unit} [{lo:+.{digits}f}, {hi:+.{digits}f}] ({verdict})"


def spans_of(words: list[str], tags: list[str], name=str, none: str = "—") -> str:
    """BIO tags as ``type name: words; ...`` (a cell of the flips table, a question's sentence);
    ``none`` when the tags name nothing."""
    spans, cur = [], None
    for w, t in zip(words, tags):
        if t.startswith("B-") or (t.startswith("I-") and (cur is None or cur[0] != t[2:])):
            cur = [t[2:], [w]]
            spans.append(cur)
        elif t.startswith("I-"):
            cur[1].append(w)
        else:
            cur = None
    return "; ".join(f"{name(k)}: {' '.join(ws)}" for k, ws in spans) or none
