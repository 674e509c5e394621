"""Every door of the page checked: what any caller sends to any event, refused with one line that
names the parameter before Gradio stores, queues, batches or caches it (issue 41).

Nothing here lists an endpoint. ``install(demo)`` runs once ``build_demo`` has declared every
event: each input's check is derived from its component (a slider: a finite number within its
range; a dropdown or radio: one of its choices; a text: a bounded string without control
characters or lone surrogates; a checkbox: a bool; a number: finite, within its bounds; a file: an
upload of this app), tightened by the merge-method registry (``arithmetic.PARAMS``: an ``int``
parameter takes whole numbers only). It then

- checks every event's raw inputs in ``Blocks.preprocess_data``, the one step every call of every
  event passes (queued or not), before Gradio's own preprocessing, which answers some hostile
  values with its generic message;
- checks them again when a call joins the queue (``Queue.push``), before anything is queued: a
  hostile row never joins a batch, where its error would fail every visitor's answer in it;
- refuses a private event called by name (``/call/<name>``: the page itself calls its events by
  index, and Gradio finds any named event, private or not), and closes the direct route
  (``/run/<name>``), which skips the queue;
- lets go of the session Gradio makes for a call that came without one (an API call): each
  holds a copy of the page's whole config (~240 kB), and Gradio kept up to 10,000 of them;
- turns an unexpected exception inside a handler into one clear line (the traceback goes to
  stderr) instead of Gradio's generic "upstream Gradio app has raised an exception".
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import traceback
from collections import deque
from pathlib import Path

import gradio as gr
from gradio import utils as gr_utils

from ..arithmetic import PARAMS
from .common import BAD_INPUT

TEXT_LIMIT = 100_000  # characters of any text input; the engine reads 2,000 (tasks.MAX_CHARS)
ANY_LIMIT = 100_000  # characters of the JSON of an input of a kind this module does not know
EXACT_INT = 2 ** 53  # beyond this a JSON number is no longer an exact integer
ALLOWED_CONTROL = {"\n", "\t", "\r"}
SHOWN = 40  # characters of a refused value quoted back
THROWAWAY_SESSIONS = 64  # sessions of sessionless calls kept until their events are done

# Inputs whose value Gradio takes from the session, never from the request.
FROM_SESSION = (gr.State,)


class Refused(gr.Error):
    """A hostile or malformed input: its one line names the parameter. (A ``gr.Error``: the
    visitor reads it as a red toast, an API caller as the error's message.)"""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message, print_exception=False)
        self.param = param


def shown(value) -> str:
    """The refused value, quoted back short (a 1 MB string is not echoed)."""
    r = repr(value)
    return r if len(r) <= SHOWN else f"{r[:SHOWN]}… ({len(r):,} characters)"


def name_of(block, param: str) -> str:
    label = getattr(block, "label", None)
    label = str(label) if label else None
    return f"{label}, parameter {param}" if label and label != param else f"parameter {param}"


# --- one check per kind of component ---------------------------------------------------------------


def _number(value, lo, hi, whole: bool) -> str | None:
    kind = "a whole number" if whole else "a number"
    span = (f" between {lo:g} and {hi:g}" if lo is not None and hi is not None
            else f" of at least {lo:g}" if lo is not None else f" of at most {hi:g}" if hi is not None else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"must be {kind}{span}"
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"must be {kind}{span}"
    if whole and value != int(value):
        return f"must be {kind}{span}"
    if abs(value) > EXACT_INT:
        return f"must be {kind} of at most {EXACT_INT:,} in size"
    return None


def _text(value, limit: int) -> str | None:
    if not isinstance(value, str):
        return "must be a text"
    if len(value) > limit:
        return f"must be at most {limit:,} characters long; got {len(value):,}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds a lone surrogate)"
    bad = next((ch for ch in value if (ord(ch) < 32 or 0x7f <= ord(ch) < 0xa0) and ch not in ALLOWED_CONTROL), None)
    if bad is not None:
        return f"must not hold control characters (found U+{ord(bad):04X})"
    return None


def _choice(block, value) -> str | None:
    choices = [c[1] if isinstance(c, (tuple, list)) else c for c in (getattr(block, "choices", None) or [])]
    if getattr(block, "multiselect", False):
        if not isinstance(value, list):
            return "must be a list of its choices"
        bad = next((v for v in value if v not in choices), None)
        return None if bad is None else f"has no choice {shown(bad)}; its choices: {', '.join(map(str, choices))}"
    if getattr(block, "allow_custom_value", False):
        return _text(value, TEXT_LIMIT)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in choices:
        return None
    listed = ", ".join(map(str, choices[:12])) + (" …" if len(choices) > 12 else "")
    return f"must be one of its choices ({listed})"


def _upload(value) -> str | None:
    """A file input: a FileData of an upload to this app (``/gradio_api/upload``), nothing else:
    no path elsewhere on the server, no URL for the server to fetch."""
    path = value.get("path") if isinstance(value, dict) else None
    if not isinstance(path, str) or _text(path, 4096):
        return "must be a file uploaded to this app"
    if not gr_utils.is_in_or_equal(Path(path).resolve(), Path(gr_utils.get_upload_folder()).resolve()):
        return "must be a file uploaded to this app (not a path on the server)"
    return None


def _by_schema(block, value) -> str | None:
    """A component this module does not know: its own API description's JSON type."""
    import json

    kind = (block.api_info() or {}).get("type")
    if kind == "string":
        return _text(value, TEXT_LIMIT)
    if kind in ("number", "integer"):
        return _number(value, None, None, whole=kind == "integer")
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    try:
        if len(json.dumps(value, allow_nan=False)) > ANY_LIMIT:
            return f"must be at most {ANY_LIMIT:,} characters of JSON"
    except (TypeError, ValueError):
        return "must be plain JSON (no NaN or infinity)"
    return None


def problem(block, param: str, value) -> str | None:
    """What is wrong with ``value`` for input ``block`` (the handler's parameter ``param``), or
    None. ``block``: the session's copy where the page has changed it (a widened λ range, a
    language's examples)."""
    if value is None:  # a blank number field, or a component that may hold no value
        if isinstance(block, gr.Number) or (getattr(block, "value", None) is None
                                            and not isinstance(block, (gr.Slider, gr.Checkbox))):
            return None
        return "is missing (null)"
    declared = PARAMS.get(param)
    whole = declared is not None and declared.type is int
    if isinstance(block, gr.Slider):
        return _number(value, block.minimum, block.maximum, whole)
    if isinstance(block, gr.Number):
        whole = whole or block.precision == 0
        return _number(value, block.minimum, block.maximum, whole)
    if isinstance(block, gr.Checkbox):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(block, (gr.Dropdown, gr.Radio)):
        return _choice(block, value)
    if isinstance(block, (gr.File, gr.UploadButton)):
        return _upload(value)
    if isinstance(block, gr.Textbox):
        return _text(value, getattr(block, "max_length", None) or TEXT_LIMIT)
    return _by_schema(block, value)


# --- where the checks run ---------------------------------------------------------------------------


def param_names(block_fn) -> list[str]:
    """The handler's parameter names, input by input, as ``/gradio_api/info`` gives them."""
    names = [p[0] for p in gr_utils.get_function_params(block_fn.fn)] if block_fn.fn else []
    return [names[i] if i < len(names) else f"param_{i}" for i in range(len(block_fn.inputs))]


def _session_block(session_state, block):
    """The session's copy of ``block`` where the page changed it (never makes a session)."""
    if session_state is not None and block._id in session_state.blocks_config.blocks:
        return session_state.blocks_config.blocks[block._id]
    return block


def with_session_values(block_fn, inputs):
    """A caller's inputs with a placeholder where the event reads a session value (``gr.State``):
    the API description lists no such parameter, so a caller sends one value fewer, which
    Gradio's own count check answered with its generic message."""
    if not isinstance(inputs, list):
        raise Refused(f"the inputs must be a list of {len(public_inputs(block_fn))} values")
    if len(inputs) == len(block_fn.inputs):
        return list(inputs)
    public = public_inputs(block_fn)
    if len(inputs) != len(public):
        names = ", ".join(param_names(block_fn)[i] for i, _ in public)
        raise Refused(f"this endpoint takes {len(public)} values ({names}); got {len(inputs)}")
    out = [None] * len(block_fn.inputs)
    for (i, _), value in zip(public, inputs):
        out[i] = value
    return out


def public_inputs(block_fn) -> list[tuple[int, object]]:
    return [(i, b) for i, b in enumerate(block_fn.inputs) if not isinstance(b, FROM_SESSION)]


def refuse_hostile(block_fn, inputs: list, session_state=None) -> list:
    """``inputs`` (one call's raw values, completed by ``with_session_values``), or ``Refused``
    for the first one that is wrong."""
    inputs = with_session_values(block_fn, inputs)
    for i, (block, param, value) in enumerate(zip(block_fn.inputs, param_names(block_fn), inputs)):
        if isinstance(block, FROM_SESSION) or i in block_fn.component_prop_inputs:
            continue
        if value is None and isinstance(block, gr.Textbox):
            inputs[i] = value = ""  # a blank text is the empty string, whichever way it came
        wrong = problem(_session_block(session_state, block), param, value)
        if wrong:
            got = "" if wrong.endswith("(null)") or "; got" in wrong else f"; got {shown(value)}"
            raise Refused(f"{name_of(block, param)}: {wrong}{got}", param)
    return inputs


def _check_preprocess(demo) -> None:
    """Every call of every event: its raw inputs checked before Gradio's preprocessing."""
    preprocess = demo.preprocess_data

    @functools.wraps(preprocess)
    async def checked(block_fn, inputs, state, explicit_call=False):
        if block_fn.fn is not None and block_fn.inputs:
            inputs = refuse_hostile(block_fn, inputs, state)
        return await preprocess(block_fn, inputs, state, explicit_call)

    demo.preprocess_data = checked
    postprocess = demo.postprocess_data

    @functools.wraps(postprocess)
    async def said(block_fn, predictions, state):
        try:
            return await postprocess(block_fn, predictions, state)
        except gr.Error:
            raise
        except Exception as e:  # a handler's answer the page cannot show: a line, not Gradio's blank
            raise _logged(block_fn.api_name or "event", e) from None

    demo.postprocess_data = said


def _check_at_the_door(demo, q) -> None:
    """``Queue.push``: the checks before anything is queued (a call's answer: HTTP 422 with the
    line), private events refused by name, and sessionless calls' sessions let go."""
    if getattr(q, "_doors_checked", False):
        return
    push = q.push
    throwaway: deque = deque()

    async def checked_push(body, request, username):
        fn = demo.fns.get(body.fn_index) if body.fn_index is not None else None
        if fn is not None and fn.api_visibility == "private" and "/call/" in request.url.path:
            return False, _invalid("api_name", f"there is no public endpoint /{fn.api_name}"), "validator_error"
        if fn is not None and fn.fn is not None and fn.inputs:
            session = (demo.state_holder.session_data.get(body.session_hash)
                       if body.session_hash and hasattr(demo, "state_holder") else None)
            try:
                body.data = refuse_hostile(fn, body.data, session)
            except Refused as e:
                return False, _invalid(e.param, e.message), "validator_error"
        sessionless = body.session_hash is None
        ok, message, kind = await push(body, request, username)
        if ok and sessionless and body.session_hash:
            throwaway.append(body.session_hash)
            _let_go(demo, q, throwaway)
        return ok, message, kind

    q.push = checked_push
    q._doors_checked = True


def _invalid(param: str | None, line: str) -> list[dict]:
    """A refusal at the door as Gradio's own validators answer (HTTP 422, a list of
    ``gr.validate`` results): ``gradio_client`` raises its ``ValidationError`` with the line."""
    return [{"__type__": "validate", "is_valid": False, "message": line,
             "parameter_name": param or "inputs"}]


def _let_go(demo, q, throwaway: deque) -> None:
    """Drop the sessions of finished sessionless calls, keeping the last few (their events may
    still be streaming)."""
    holder = getattr(demo, "state_holder", None)
    if holder is None:
        return
    keep = deque()
    while len(throwaway) > THROWAWAY_SESSIONS:
        sid = throwaway.popleft()
        if q.pending_event_ids_session.get(sid):
            keep.append(sid)  # still running: look again later
            continue
        with holder.lock:
            holder.session_data.pop(sid, None)
            holder.time_last_used.pop(sid, None)
    throwaway.extendleft(reversed(keep))


def _logged(where: str, e: Exception) -> gr.Error:
    """An unexpected exception as one line for the caller; its traceback on stderr. (An engine's
    refusal that a handler did not catch is its own line.)"""
    if isinstance(e, BAD_INPUT):
        return gr.Error(str(e))
    print(f"langarith: unexpected error in {where}:", file=sys.stderr)
    traceback.print_exception(e, file=sys.stderr)
    return gr.Error(f"{where} failed on these inputs ({type(e).__name__}); nothing was changed. "
                    f"Please check the values or try others.")


def _clear_line(block_fn):
    """The handler with an unexpected exception turned into one clear line (and logged)."""
    fn = block_fn.fn
    where = block_fn.api_name or getattr(fn, "__name__", "event")

    def say(e: Exception) -> gr.Error:
        return _logged(where, e)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def frames(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:
                raise say(e) from None
        return frames
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return fn  # none on this page; Gradio's own handling stays

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            raise say(e) from None
    return wrapper


def install(demo: gr.Blocks) -> gr.Blocks:
    """The checks on every event ``demo`` declares (call after the last event is declared)."""
    for block_fn in demo.fns.values():
        if block_fn.fn is not None and not getattr(block_fn.fn, "_clear_line", False):
            block_fn.fn = _clear_line(block_fn)
            block_fn.fn._clear_line = True
    _check_preprocess(demo)
    make_queue = demo.queue

    @functools.wraps(make_queue)
    def queue(*args, **kwargs):
        out = make_queue(*args, **kwargs)
        # Every event is queued: the direct route (``/gradio_api/run/<name>``, open off Spaces)
        # would skip the queue's limits, its batches and the door's checks.
        demo.api_open = False
        _check_at_the_door(demo, demo._queue)
        return out

    demo.queue = queue
    return demo
