"""Shared fixtures: one tiny generated bundle and one CPU LanguageStack for the whole session."""

from __future__ import annotations

import os

# Before gradio / huggingface_hub are imported by any test module: no phoning home, no Hub.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _served_stack_kept():
    """The page's handlers read the one stack ``page.common.serve`` was given (the ZeroGPU
    boundary sends no stack). A test that builds another page (a hub profile's, a QA page) must
    not leave the session's app serving that page's stack to later tests."""
    common = sys.modules.get("langarith.page.common")
    saved = dict(common._SERVED) if common else None
    yield
    common = sys.modules.get("langarith.page.common")
    if common is not None and saved:
        common._SERVED.clear()
        common._SERVED.update(saved)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    from langarith.bundle.tiny import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


class QuickBuild:
    """The real bundle build in --quick mode (minutes), run once per test session in a child
    process. It starts as soon as the tests are collected, when any collected test reads it, and
    runs beside the rest of the suite (on 2 cores the suite then takes about the longer of the
    two, not their sum); the tests that read it run last and wait for it."""

    def __init__(self, tmp: Path):
        import subprocess
        import sys

        self.root = Path(__file__).resolve().parent.parent
        self.work, self.out = tmp / "work", tmp / "bundle"
        self.env = dict(os.environ, PYTHONPATH=str(self.root))
        self.env.pop("HF_HUB_OFFLINE", None)  # the build talks to apt and pip only, never to a hub
        # One intra-op thread: the build shares the cores with the tests running meanwhile.
        child_env = dict(self.env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self._logs = [open(tmp / name, "w+", encoding="utf-8") for name in ("stdout", "stderr")]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "langarith.bundle", "build", "--quick",
             "--work", str(self.work), "--out", str(self.out)],
            stdout=self._logs[0], stderr=self._logs[1], env=child_env, cwd=self.root, text=True)
        self._run = None

    def wait(self, timeout: float = 1500):
        """The finished build as a ``subprocess.CompletedProcess`` (killed after ``timeout`` s)."""
        import subprocess

        if self._run is None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            out, err = (f.seek(0) or f.read() for f in self._logs)
            self._run = subprocess.CompletedProcess(self._proc.args, self._proc.returncode, out, err)
        return self._run

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for f in self._logs:
            f.close()


_QUICK_BUILD: list[QuickBuild] = []


def pytest_collection_modifyitems(session, config, items):
    """Tests reading the quick build go last; the build starts now, beside the others."""
    readers = [it for it in items if "quick_build" in getattr(it, "fixturenames", ())]
    if not readers or config.option.collectonly:
        return
    items[:] = [it for it in items if it not in readers] + readers
    factory = getattr(config, "_tmp_path_factory", None)  # pytest's session temp folders
    if factory is not None:
        tmp = factory.mktemp("quick_build")
    else:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="quick_build"))
    _QUICK_BUILD.append(QuickBuild(tmp))


def pytest_sessionfinish(session, exitstatus):
    while _QUICK_BUILD:
        _QUICK_BUILD.pop().stop()


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory):
    """The quick build's folders and finished process (``.work``, ``.out``, ``.run``, ``.env``)."""
    from types import SimpleNamespace

    if not _QUICK_BUILD:  # e.g. a test asked for it in a way collection could not see
        _QUICK_BUILD.append(QuickBuild(tmp_path_factory.mktemp("quick_build")))
    qb = _QUICK_BUILD[0]
    return SimpleNamespace(work=qb.work, out=qb.out, run=qb.wait(), env=qb.env, root=qb.root)


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
    from langarith.page import LAUNCH, build_demo

    demo = hosting.queue(build_demo(stack))
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, share=False,
                quiet=True, **LAUNCH)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="session")
def shipped_app_url(tmp_path_factory):
    """``python app.py`` on the embedded bundle, as a user launches it, in a process of its own
    (the page's model runner is per process: it must not replace the tiny ``app_url``'s)."""
    import subprocess
    import sys
    import time
    import urllib.request

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    log = tmp_path_factory.mktemp("shipped_app") / "app.log"
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), PYTHONPATH=str(root))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(root / "app.py")], cwd=root, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        end = time.monotonic() + 600  # a first run rebuilds the encoder from its wheel
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > end:
                    raise TimeoutError(f"app.py did not answer in 600 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def fresh_model(tiny_bundle):
    """A factory of plain ``adapters`` models built from the bundle's base, independent of ``stack``.

    ``fresh_model()`` is the bare encoder with heads support; ``fresh_model(task=True)`` also loads
    the task adapter with its head (through the library's own ``load_adapter``).
    """
    from adapters import BertAdapterModel

    from langarith.loading import Bundle

    bundle = Bundle.load(tiny_bundle)

    def make(task: bool = False):
        model = BertAdapterModel.from_pretrained(str(bundle.base_path()))
        if task:
            t = bundle.task(None)
            model.load_adapter(str(bundle.path(t.adapter)), load_as=t.name, set_active=False,
                               use_safetensors=True)
        return model.eval().requires_grad_(False)

    return make
