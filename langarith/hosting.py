"""Layer 4 support: the one place that knows about Hugging Face Spaces (docs/hosting.md).

- ``gpu(duration)``: the decorator for the page's model calls. ``spaces.GPU(duration=...)`` when
  the ``spaces`` package imports (it is a no-op off ZeroGPU), else the identity. Tests replace
  ``SPACES_GPU`` with ``tests/zerogpu_standin.GPU`` before building the page.
- ``encoder_cache_dir()``: where the rebuilt base encoder goes: persistent storage (``/data``)
  when the Space has it, since a Space's own disk is wiped on every restart.
- ``QUEUE`` / ``MODEL_CONCURRENCY``: the Gradio queue's settings and the limit of the one shared
  concurrency group of the events that run the model; ``queue(demo)`` applies them, keeps the
  queue's records bounded and serves the predictions before the heavier steps.

Import this module before anything initialises CUDA: on ZeroGPU ``spaces`` must patch torch first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from .paths import cache_dir

try:  # preinstalled on ZeroGPU Spaces; optional everywhere else
    import spaces

    SPACES_GPU: Callable | None = spaces.GPU
except ImportError:
    SPACES_GPU = None

F = TypeVar("F", bound=Callable)

# The model events (merge, predict, sweep, export ...) share one concurrency group. One: the
# stack holds one live slot behind one lock, so a second thread would only wait on it; on
# ZeroGPU a second concurrent call of the same decorated function forks a second worker that
# copies the whole model to the GPU again.
MODEL_CONCURRENCY = 1
MODEL_GROUP = "model"  # the concurrency id of the model events
# The most visitors' calls of one model event served by one batched call (one forward pass):
# a class. On ZeroGPU a batch is one GPU call (the quota of its first visitor is checked).
MAX_BATCH = 32
# ``demo.queue(**QUEUE)``: room for a lecture hall (a hundred students each with a release's
# chain of three events waiting, ~20 kB an event), bounded so that a flood is refused with a line
# saying when to come back instead of piling up; events outside the model group (target change,
# precomputed tables, plots) keep 2 workers each, so they never wait behind the model.
QUEUE = dict(max_size=1000, default_concurrency_limit=2)
# One visitor's waiting events: a page has at most a few (a release's chain, a tab's figure); a
# script that submits without waiting is refused past this, so it cannot fill the hall alone.
PER_VISITOR = 32

PERSISTENT_ROOT = Path("/data")  # a Space's persistent storage, when it has some


def gpu(duration: int | Callable[..., int] = 60) -> Callable[[F], F]:
    """Decorator: run the function on ZeroGPU's GPU, asking for ``duration`` seconds (an int, or
    a callable of the function's own arguments, as ``spaces.GPU`` allows: a visitor's quota is
    checked against it). The identity where ``spaces`` is absent; ``SPACES_GPU`` is read when
    the function is decorated, so a test can swap in a stand-in before building the page."""
    def decorate(fn: F) -> F:
        if SPACES_GPU is None:
            return fn
        return SPACES_GPU(duration=duration)(fn)

    return decorate


def persistent_root() -> Path | None:
    """The Space's persistent storage (``/data``, or ``$LANGARITH_PERSISTENT``) when it exists
    and is writable, else None."""
    root = Path(os.environ.get("LANGARITH_PERSISTENT") or PERSISTENT_ROOT)
    return root if root.is_dir() and os.access(root, os.W_OK | os.X_OK) else None


def encoder_cache_dir() -> Path:
    """Where the rebuilt base encoder (and the wheels it comes from) are kept.

    ``$LANGARITH_CACHE`` when set (an explicit choice wins); else ``/data/langarith`` on a Space
    with persistent storage, so a restart does not download and rebuild it again; else
    ``~/.cache/langarith``."""
    root = persistent_root()
    if os.environ.get("LANGARITH_CACHE") or root is None:
        return cache_dir()
    return root / "langarith"


def use_encoder_cache() -> Path:
    """Make the model layer's cache (``$LANGARITH_CACHE``, read when the encoder is rebuilt)
    ``encoder_cache_dir()``; once, at start-up, before the stack is built. Sets the variable only
    when persistent storage changes the answer."""
    path = encoder_cache_dir()
    if not os.environ.get("LANGARITH_CACHE") and path.parent == persistent_root():
        os.environ["LANGARITH_CACHE"] = str(path)
    return path


# --- serving that does not age ---------------------------------------------------------------------
# Gradio 6.17.3 keeps a record of every event it has served (``Queue.event_analytics``, never
# pruned: ~25 kB each) and, after every completed event, builds a pandas DataFrame of all of them
# for its monitoring summary (34-38 ms at 1,000-10,000 events, 150-170 ms at 50,000-100,000, on 2
# cores). Later 6.x fix it; these pins cannot take them (NOTES "Serving many visitors"). So the
# queue keeps only the recent records, and summarises them every ANALYTICS_EVERY events.
ANALYTICS_KEEP = 2000
ANALYTICS_EVERY = 500


class RecentEvents(dict):
    """``Queue.event_analytics`` bounded to the ``keep`` newest records. ``len`` counts every
    record ever added (the queue compares it with the count at its last summary, so the summary
    still refreshes every ``ANALYTICS_EVERY`` events); a record already dropped reads as an empty
    one that is not kept (the queue only writes a finished event's status into it)."""

    def __init__(self, keep: int = ANALYTICS_KEEP):
        super().__init__()
        self.keep, self.added = keep, 0

    def __setitem__(self, key, value) -> None:
        if key not in self:
            self.added += 1
        super().__setitem__(key, value)
        while dict.__len__(self) > self.keep:
            del self[next(iter(self))]

    def __missing__(self, key) -> dict:
        return {}

    def __len__(self) -> int:
        return self.added


# --- what a visitor looks at first is served first -----------------------------------------------
# Gradio serves one concurrency group's events in arrival order. After a release a class queues
# predictions (one light pass) and details (fill-mask, the text's loss, plots: heavier) for
# every student; in arrival order, a student's predictions wait behind the others' details.


def served_first(event) -> bool:
    """An event whose handler is marked ``served_first`` (``page.common.model_handler``)."""
    return bool(getattr(getattr(event.fn, "fn", None), "served_first", False))


def latest_only(event) -> bool:
    """An event whose handler is marked ``latest_only`` (``page.common.model_handler``)."""
    return bool(getattr(getattr(event.fn, "fn", None), "latest_only", False))


class FirstInLine(list):
    """The model group's waiting events, those ``served_first`` ahead of the others (each kind in
    its own arrival order). Gradio's queue takes ``[0]`` and batches the waiting events of the
    same handler, so the predictions of everyone waiting are one batch, before any details.
    A ``latest_only`` event replaces the same visitor's waiting one of the same handler: a newer
    release made it stale, and computing it would only delay everyone's fresh work."""

    def __init__(self, queue=None):
        super().__init__()
        self.queue = queue  # Gradio's Queue, to answer a dropped event (None in unit tests)

    def append(self, event) -> None:
        if latest_only(event):
            self.drop_stale(event)
        if served_first(event):
            self.insert(next((i for i, e in enumerate(self) if not served_first(e)), len(self)), event)
        else:
            super().append(event)

    def drop_stale(self, event) -> list:
        """Take the visitor's waiting events of ``event``'s handler out of the line and answer
        each as Gradio's own cancel route does (completed, no output: the page keeps what it
        shows and the newer event paints over it)."""
        from gradio.server_messages import ProcessCompletedMessage

        stale = [e for e in self if e.session_hash == event.session_hash and e.fn._id == event.fn._id]
        for old in stale:
            self.remove(old)
            if self.queue is not None:
                self.queue.event_ids_to_events.pop(old._id, None)
                self.queue.send_message(old, ProcessCompletedMessage(output={}, success=True))
        return stale


class RunningTasks(list):
    """``Queue._asyncio_tasks`` without the finished ones. Gradio 6.17.3 appends the task of every
    batch it processes (to cancel them when the app stops) and never removes one: each finished
    task keeps its event's request alive (a soak grew ~20 MB per 1,000 events)."""

    def append(self, task) -> None:
        self[:] = [t for t in self if not t.done()]
        super().append(task)


class PendingEvents(dict):
    """``Queue.event_ids_to_events`` with the completed events let go. Gradio 6.17.3 adds every
    event and removes one only when its visitor cancels or leaves, so a visitor who stays (a
    class, a whole lesson) keeps every event and its request alive: ~20 kB each, the soak's
    growth. An event whose id has left its session's pending set (the event stream takes it out
    when the event completes; nothing looks a completed event up again) goes at the next insert."""

    def __init__(self, queue):
        super().__init__()
        self.queue = queue

    def __setitem__(self, key, event) -> None:
        pending = self.queue.pending_event_ids_session
        for k in [k for k, e in self.items() if k not in pending.get(e.session_hash, ())]:
            del self[k]
        super().__setitem__(key, event)


def busy_line(q) -> str:
    """What a visitor refused by a full queue reads: how many wait and about how long to wait
    (the model events' mean time so far, a batch of ``MAX_BATCH`` at a time)."""
    times = [t.avg_time for t in q.process_time_per_fn.values() if getattr(t, "avg_time", None)]
    per_batch = sum(times) / len(times) if times else 1.0
    seconds = max(5, round(len(q) / MAX_BATCH * per_batch * 3))  # 3: a release's chain
    return (f"This Space is busy: {len(q)} requests are waiting, more than it holds. "
            f"Try again in about {seconds} s.")


def hold_a_hall(q) -> None:
    """Gradio's ``Queue.push`` with two refusals that say what to do: one visitor with
    ``PER_VISITOR`` events already waiting, and a full queue (Gradio's own line is the bare
    "Queue is full. Max size is ..."). The page shows its own "busy" line for either."""
    push = q.push

    async def push_or_say_when(body, request, username):
        waiting = q.pending_event_ids_session.get(body.session_hash) or ()
        if body.session_hash is not None and len(waiting) >= PER_VISITOR:
            return (False, f"You have {len(waiting)} requests waiting already; wait for their "
                           f"answers before sending more.", "queue_full")
        ok, message, kind = await push(body, request, username)
        return ok, (busy_line(q) if kind == "queue_full" else message), kind

    q.push = push_or_say_when


def queue(demo):
    """``demo.queue(**QUEUE)`` with the queue's per-event records bounded (``RecentEvents``), its
    finished tasks and completed events let go (``RunningTasks``, ``PendingEvents``), the
    model group's events ``FirstInLine`` (stale ones dropped), and refusals that say when to
    come back (``hold_a_hall``)."""
    demo.queue(**QUEUE)
    q = demo._queue
    q.event_analytics = RecentEvents()
    q._asyncio_tasks = RunningTasks(q._asyncio_tasks)
    q.event_ids_to_events = PendingEvents(q)
    q.ANAYLTICS_CACHE_FREQUENCY = ANALYTICS_EVERY  # (sic: Gradio's spelling)
    for block_fn in demo.fns.values():  # Gradio makes a group's queue at its first event: now
        if block_fn.concurrency_id == MODEL_GROUP:
            q.create_event_queue_for_fn(block_fn)
    if MODEL_GROUP in q.event_queue_per_concurrency_id:
        q.event_queue_per_concurrency_id[MODEL_GROUP].queue = FirstInLine(q)
    hold_a_hall(q)
    return demo

