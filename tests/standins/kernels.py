"""A stand-in for the `kernels` package (tests/test_trust.py puts this folder on the path of a
child process): it records its import and every call of its functions into $KERNELS_RECORD, and
``get_kernel`` hands back an attention function that records its own calls."""

import enum
import os


def _record(line: str) -> None:
    with open(os.environ["KERNELS_RECORD"], "a", encoding="utf-8") as f:
        f.write(line + "\n")


_record("import kernels")


class Mode(enum.Flag):
    TRAINING = enum.auto()
    INFERENCE = enum.auto()
    TORCH_COMPILE = enum.auto()
    FALLBACK = enum.auto()


class Device:
    def __init__(self, *args, **kwargs):
        pass


class LayerRepository:
    def __init__(self, *args, **kwargs):
        pass


def _recording(name):
    def call(*args, **kwargs):
        _record(f"call {name} {args!r}")
        return (lambda cls: cls) if name == "use_kernel_forward_from_hub" else None
    return call


register_kernel_mapping = _recording("register_kernel_mapping")
replace_kernel_forward_from_hub = _recording("replace_kernel_forward_from_hub")
use_kernel_forward_from_hub = _recording("use_kernel_forward_from_hub")
kernelize = _recording("kernelize")


class _Kernel:
    def attn(self, *args, **kwargs):
        _record("call the downloaded kernel")
        raise RuntimeError("stand-in kernel")


def get_kernel(repo_id, revision=None):
    _record(f"call get_kernel {repo_id!r}")
    return _Kernel()
