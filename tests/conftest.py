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
    from langarith import hosting
    from langarith.page import build_demo

    demo = build_demo(stack).queue(**hosting.QUEUE)
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
