"""A stand-in for ZeroGPU's ``spaces.GPU`` that runs on CPU, for tests.

Plug it in before the page is built: ``hosting.SPACES_GPU = zerogpu_standin.GPU``.

What it copies from ``spaces`` 0.51.3 (read from its source: ``spaces/zero/decorator.py``,
``spaces/zero/wrappers.py``, ``spaces/utils.py``, ``spaces/zero/torch/patching.py`` and
``spaces/zero/torch/types.py``), and nothing more:

1. **Decorator forms.** ``GPU(fn)``, ``GPU(duration=...)(fn)`` and ``GPU()(fn)`` (``decorator.GPU``
   returns ``partial(_GPU, ...)`` when not given a callable). ``duration`` is ``None``, seconds, a
   ``timedelta`` or a callable of the decorated function's arguments, evaluated in the caller
   before the call is scheduled (``wrappers.static_duration``); each evaluated duration is kept in
   ``wrapper.durations`` for tests to read. Decorating the same function twice gives the same
   wrapper (``decorator.decorated_cache``). ``functools.wraps`` keeps the signature Gradio reads.
   Generator functions are not copied (the real one has a second wrapper for them): refused.
2. **A forked worker per decorated function, reused while alive.** The worker is a
   ``multiprocessing.get_context('fork').Process`` (``wrappers.Worker``); a wrapper keeps it after
   a call that succeeded and reuses it while it is alive (the real one also asks the scheduler
   whether it is idle; here it always is), and starts a new one after a failed call (the real one
   pops the worker, and puts it back only after an ``OkResult``). In the worker each call runs in a
   fresh thread (``ThreadPoolExecutor`` in ``thread_wrapper``), and a decorated function called
   from inside a worker runs directly (the module global ``forked``).
3. **Arguments and results pickled across.** ``arg_queue.put(((args, kwargs), context))`` on a
   fork-context ``SimpleQueue`` pickles the arguments in the caller; a ``PicklingError`` there is
   re-raised to the caller, and so is any exception whose message mentions "pickle" (the real
   ``SimpleQueue.put`` turns e.g. ``TypeError: cannot pickle '_thread.RLock' object`` into
   ``PicklingError``, see bpo-29187). The result goes back pickled the same way. An exception in the
   task, or a result that does not pickle, comes back as an ``ExceptionResult``: a ``gr.Error`` is
   re-raised as it is, anything else as ``gr.Error(<exception class name>, title="ZeroGPU worker
   error")`` (``wrappers.exception_result`` + ``gradio.error``): the message is lost. A worker that
   dies gives ``gr.Error("GPU task aborted", title="ZeroGPU worker error")``.
4. **Every tensor moved on its own, once, at the worker's first call** (``worker_init`` →
   ``torch.move`` → ``patching._move``). The real one moves every tensor that went through
   ``.to("cuda")`` in the main process (its ``cuda_aliases``): each original is copied to the GPU
   once per ``AliasId`` = (data_ptr, dtype, shape, stride), then ``fake.data = moved[AliasId]`` for
   every fake. So tensors with the same AliasId (a parameter and the view object it was set to)
   still share memory, while a view and its base (different shapes) become separate tensors. Here,
   in the worker, every tensor held by every ``LanguageStack`` of the process (the parameters and
   buffers of its model, and any tensor in its attributes: flat buffers, views, caches, found
   through dicts, lists, tuples and langarith objects) gets ``t.data = copies[AliasId(t)]``, one
   independent copy per AliasId, on the same device (CPU here; the real copy is on CUDA).

Not copied: the scheduler (``client.schedule``/``release``, quotas: ``duration`` is only
recorded), the CUDA emulation of the main process (the fakes, offloading to disk by ``pack``),
Gradio progress/queue events forwarded from the worker, generator functions and the ``size``
argument (accepted, ignored).
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pickle import PicklingError
from typing import Any, Callable, NamedTuple

import torch

_CTX = multiprocessing.get_context("fork")
forked = False  # True inside a worker: decorated functions then run directly (as spaces does)
decorated_cache: dict[Callable, Callable] = {}


class AliasId(NamedTuple):
    """``spaces.zero.torch.types.AliasId``: tensors with equal ids are moved as one."""

    data_ptr: int
    dtype: torch.dtype
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @classmethod
    def of(cls, t: torch.Tensor) -> "AliasId":
        return cls(t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()))


@dataclass
class _Ok:
    value: Any


@dataclass
class _Failed:
    traceback: str
    error_cls: str
    gradio_error: Any  # a gr.Error, re-raised as it is; else None


class _Queue:
    """``spaces.utils.SimpleQueue``: pickling errors surface as ``PicklingError`` on put."""

    def __init__(self):
        self._q = _CTX.SimpleQueue()

    def put(self, obj) -> None:
        try:
            self._q.put(obj)
        except PicklingError:
            raise
        except Exception as e:  # noqa: BLE001 - as spaces: only messages about pickling
            if "pickle" not in str(e):
                raise
            raise PicklingError(str(e)) from None

    def get(self):
        return self._q.get()

    def empty(self) -> bool:
        return self._q.empty()


# --- the per-tensor move --------------------------------------------------------------------------


def _tensors_in(obj, out: dict[int, torch.Tensor], seen: set[int], depth: int = 0) -> None:
    """Every tensor reachable from ``obj`` through containers and langarith objects."""
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        out[id(obj)] = obj
    elif isinstance(obj, torch.nn.Module):
        for _, t in obj.named_parameters(remove_duplicate=False):
            out[id(t)] = t
        for _, t in obj.named_buffers(remove_duplicate=False):
            out[id(t)] = t
    elif isinstance(obj, dict):
        for v in list(obj.values()):
            _tensors_in(v, out, seen, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in list(obj):
            _tensors_in(v, out, seen, depth + 1)
    elif type(obj).__module__.startswith("langarith") and hasattr(obj, "__dict__"):
        for v in list(vars(obj).values()):
            _tensors_in(v, out, seen, depth + 1)


def stack_tensors() -> list[torch.Tensor]:
    """Every tensor held by the process's ``LanguageStack`` objects (what ZeroGPU would move)."""
    import gc

    from langarith.model import LanguageStack

    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    for obj in gc.get_objects():
        if isinstance(obj, LanguageStack):
            _tensors_in(obj, found, seen)
    return list(found.values())


def move_one_by_one(tensors: list[torch.Tensor]) -> int:
    """``patching._move``: one independent copy per AliasId, then ``t.data = copy`` for every
    tensor of that id. Returns how many copies were made."""
    copies: dict[AliasId, torch.Tensor] = {}
    for t in tensors:
        key = AliasId.of(t)
        if key not in copies:
            copies[key] = t.detach().clone()
    for t in tensors:
        t.data = copies[AliasId.of(t)]
    return len(copies)


# --- the worker -----------------------------------------------------------------------------------


def _failed(e: BaseException) -> _Failed:
    import gradio as gr

    return _Failed("".join(traceback.format_exception(type(e), e, e.__traceback__)),
                   type(e).__name__, e if isinstance(e, gr.Error) else None)


def _worker_loop(task: Callable, args_q: _Queue, res_q: _Queue) -> None:
    global forked
    forked = True
    initialized = False
    while True:
        try:
            args, kwargs = args_q.get()
        except (EOFError, OSError):
            break
        if not initialized:
            try:
                move_one_by_one(stack_tensors())
            except Exception as e:  # noqa: BLE001 - reported to the caller, as worker_init does
                res_q.put(_failed(e))
                return
            initialized = True

        def run():
            try:
                res: Any = _Ok(task(*args, **kwargs))
            except Exception as e:  # noqa: BLE001 - every task error goes back
                res = _failed(e)
            try:
                res_q.put(res)
            except PicklingError as e:
                res_q.put(_failed(e))

        with ThreadPoolExecutor() as ex:  # the real worker runs each task in a fresh thread
            ex.submit(run).result()


class _Worker:
    def __init__(self, task: Callable):
        self.args_q, self.res_q = _Queue(), _Queue()
        self.process = _CTX.Process(target=_worker_loop, args=(task, self.args_q, self.res_q),
                                    daemon=True)
        self.process.start()

    def result(self, poll_s: float = 0.05):
        """The next result, or None if the worker died first."""
        reader = self.res_q._q._reader
        while True:
            if reader.poll(poll_s):
                return self.res_q.get()
            if not self.process.is_alive():
                return self.res_q.get() if reader.poll(0) else None

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


def _seconds(duration) -> float | None:
    if duration is None:
        return None
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise TypeError(f"duration must be seconds or a timedelta, got {duration!r}")
    return float(duration)


def _wrap(task: Callable, duration) -> Callable:
    if task in decorated_cache:
        return decorated_cache[task]
    if inspect.isgeneratorfunction(task) or inspect.iscoroutinefunction(task):
        raise NotImplementedError("the stand-in copies spaces' regular-function wrapper only")
    state: dict[str, _Worker | None] = {"worker": None}
    lock = threading.Lock()  # one call at a time per worker, as one GPU is one worker

    @functools.wraps(task)
    def gradio_handler(*args, **kwargs):
        import gradio as gr

        if forked:
            return task(*args, **kwargs)
        d = duration(*args, **kwargs) if callable(duration) else duration
        gradio_handler.durations.append(_seconds(d))
        with lock:
            worker, state["worker"] = state["worker"], None
            if worker is None or not worker.process.is_alive():
                worker = _Worker(task)
            try:
                worker.args_q.put((args, kwargs))
            except PicklingError:
                worker.close()
                raise
            res = worker.result()
            if res is None:
                worker.close()
                raise gr.Error("GPU task aborted", title="ZeroGPU worker error")
            if isinstance(res, _Failed):
                worker.close()  # spaces keeps a worker only after an OkResult
                if res.gradio_error is not None:
                    raise res.gradio_error
                print(res.traceback)
                raise gr.Error(res.error_cls, title="ZeroGPU worker error")
            state["worker"] = worker
            return res.value

    def shutdown() -> None:
        """Stop the kept worker (tests call it to force a fresh fork)."""
        with lock:
            if state["worker"] is not None:
                state["worker"].close()
                state["worker"] = None

    gradio_handler.durations = []
    gradio_handler.shutdown = shutdown
    gradio_handler.worker_pid = lambda: (state["worker"].process.pid if state["worker"] else None)
    gradio_handler.zerogpu = None
    decorated_cache[task] = decorated_cache[gradio_handler] = gradio_handler
    return gradio_handler


def GPU(task: Callable | None = None, *, duration=None, size=None, **kwargs):  # noqa: N802 - spaces' name
    """``spaces.GPU`` as ZeroGPU runs it (see the module docstring)."""
    if not callable(task):
        return functools.partial(_wrap, duration=duration)
    return _wrap(task, duration)
