"""Shared fixtures: one tiny generated bundle and one CPU LanguageStack for the whole session."""

from __future__ import annotations

import os

# Before gradio / huggingface_hub are imported by any test module: no phoning home, no Hub.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    from langarith.bundle.tiny import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory):
    """The real bundle build in --quick mode, run once per test session (minutes): its working
    folder and packaged bundle, and the finished process, for every test that reads them."""
    import subprocess
    import sys
    from types import SimpleNamespace

    root = Path(__file__).resolve().parent.parent
    tmp = tmp_path_factory.mktemp("quick_build")
    env = dict(os.environ, PYTHONPATH=str(root))
    env.pop("HF_HUB_OFFLINE", None)  # the build talks to apt and pip only, never to a hub
    work, out = tmp / "work", tmp / "bundle"
    r = subprocess.run([sys.executable, "-m", "langarith.bundle", "build", "--quick",
                        "--work", str(work), "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=root, timeout=1500)
    return SimpleNamespace(work=work, out=out, run=r, env=env, root=root)


@pytest.fixture(scope="session")
def stack(tiny_bundle):
    from langarith.model import LanguageStack

    return LanguageStack(tiny_bundle, device="cpu")


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    """Tiny stand-ins of the hub profiles' repositories in an HF cache, under the real ids."""
    from hub_fixtures import build_hub_cache

    return build_hub_cache(tmp_path_factory.mktemp("hf") / "hub")


@pytest.fixture(scope="session")
def app_url(stack):
    """The page on the tiny bundle, launched once, queued as ``cli.launch_app`` queues it."""
    from langarith.ui import build_demo

    demo = build_demo(stack).queue(default_concurrency_limit=4)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, share=False,
                quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture
def fresh_model(tiny_bundle):
    """A factory of plain ``adapters`` models built from the bundle's base, independent of ``stack``.

    ``fresh_model()`` is the bare encoder with heads support; ``fresh_model(task=True)`` also loads
    the task adapter with its head (through the library's own ``load_adapter``).
    """
    from adapters import BertAdapterModel

    from langarith.model import Bundle

    bundle = Bundle.load(tiny_bundle)

    def make(task: bool = False):
        model = BertAdapterModel.from_pretrained(str(bundle.base_path()))
        if task:
            t = bundle.task(None)
            model.load_adapter(str(bundle.path(t.adapter)), load_as=t.name, set_active=False,
                               use_safetensors=True)
        return model.eval().requires_grad_(False)

    return make
