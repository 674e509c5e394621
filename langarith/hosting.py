"""Hosting on Hugging Face Spaces: the ZeroGPU decorator and the queue's settings.

Minimal; the host branch has the full module (this file keeps only the interface the page uses).
"""

from __future__ import annotations

try:  # ZeroGPU: GPU work runs inside spaces.GPU; the package is a no-op elsewhere
    import spaces

    SPACES_GPU = spaces.GPU
except ImportError:
    SPACES_GPU = None

# One model answers one request at a time (the engine merges under a lock): a small group.
MODEL_CONCURRENCY = 2
QUEUE = dict(max_size=64, default_concurrency_limit=4)


def gpu(duration):
    """``spaces.GPU(duration=duration)`` when the package is there, else the identity.
    ``duration``: seconds, or a callable of the decorated function's inputs."""
    if SPACES_GPU is None:
        return lambda fn: fn
    return SPACES_GPU(duration=duration)
