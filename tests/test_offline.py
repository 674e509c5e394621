"""Issue 4, part 5: offline proof. The app is started the way it is deployed (``python app.py``,
here on the tiny bundle) in a child process whose every non-loopback connection, name lookup and
datagram is refused and recorded from before the first import; the test then drives a full
interaction over loopback (page and config, set_target, compare, a TIES recipe, sweep, similarity,
source ranking, export with its downloads, recipe upload) from a client under the same guard.
No non-loopback attempt may be recorded. A control in the child proves the guard sees Gradio's
own version check and a raw socket. The child's environment carries none of the test suite's
offline settings (conftest sets GRADIO_ANALYTICS_ENABLED / HF_HUB_OFFLINE): what keeps it
offline is what app.py and the package set themselves."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conftest

ROOT = Path(__file__).resolve().parent.parent

GUARD = r'''
import ipaddress, json, os, socket, threading

_RECORD = os.environ["OFFLINE_RECORD"]
PHASE = [os.environ.get("OFFLINE_PHASE", "app")]
_lock = threading.Lock()


def _loopback(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]").split("%")[0].lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(kind, target):
    with _lock, open(_RECORD, "a", encoding="utf-8") as f:
        f.write(json.dumps({"phase": PHASE[0], "kind": kind, "target": repr(target)}) + "\n")
    raise OSError(f"offline test: non-loopback {kind} to {target!r} refused")


def _inet(sock) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
_getaddrinfo, _create_connection = socket.getaddrinfo, socket.create_connection


def connect(self, address):
    if _inet(self) and not _loopback(address[0]):
        _refuse("connect", address)
    return _connect(self, address)


def connect_ex(self, address):
    if _inet(self) and not _loopback(address[0]):
        _refuse("connect_ex", address)
    return _connect_ex(self, address)


def sendto(self, data, *args):
    address = args[-1]
    if _inet(self) and not _loopback(address[0]):
        _refuse("sendto", address)
    return _sendto(self, data, *args)


def getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        _refuse("getaddrinfo", host)
    return _getaddrinfo(host, *args, **kwargs)


def create_connection(address, *args, **kwargs):
    if not _loopback(address[0]):
        _refuse("create_connection", address)
    return _create_connection(address, *args, **kwargs)


def install():
    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
    socket.getaddrinfo, socket.create_connection = getaddrinfo, create_connection


def uninstall():
    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = _connect, _connect_ex, _sendto
    socket.getaddrinfo, socket.create_connection = _getaddrinfo, _create_connection
'''

CHILD = GUARD + r'''
install()
# control: the guard sees an attempt by Gradio's own code and a raw socket, and refuses both
import httpx
try:
    httpx.get("https://api.gradio.app/pkg-version", timeout=3)
except Exception:
    pass
try:
    socket.create_connection(("192.0.2.1", 80), timeout=1)
except OSError:
    pass
PHASE[0] = "app"
import runpy, sys
sys.argv = ["app.py"]
runpy.run_path("app.py", run_name="__main__")
'''

OFFLINE_SETTINGS = ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
                    "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DO_NOT_TRACK")


def records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture
def guard(tmp_path, monkeypatch):
    """The same guard in this process (the client side), removed afterwards."""
    record = tmp_path / "client-record.jsonl"
    monkeypatch.setenv("OFFLINE_RECORD", str(record))
    monkeypatch.setenv("OFFLINE_PHASE", "client")
    ns: dict = {}
    exec(compile(GUARD, "offline_guard", "exec"), ns)
    ns["install"]()
    try:
        yield record
    finally:
        ns["uninstall"]()


def test_guard_refuses_and_records(guard):
    import urllib.request

    for attempt in (lambda: socket.create_connection(("192.0.2.1", 80), timeout=1),
                    lambda: socket.getaddrinfo("example.org", 443),
                    lambda: urllib.request.urlopen("http://192.0.2.1/", timeout=1)):
        with pytest.raises(OSError):
            attempt()
    with socket.socket() as s:  # loopback stays allowed
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        socket.create_connection(s.getsockname(), timeout=5).close()
    got = records(guard)
    assert len(got) == 3 and "192.0.2.1" in got[0]["target"] and "example.org" in got[1]["target"]


def test_build_demo_is_offline_without_the_environment_setting(stack, guard, monkeypatch):
    """``build_demo`` + ``launch`` as a notebook or another script would call them, with no
    GRADIO_ANALYTICS_ENABLED in the environment: Gradio's version check and analytics must not
    start (``gr.Blocks(analytics_enabled=False)`` in ui.py), not only when app.py is the entry."""
    from gradio_client import Client

    from langarith.page import build_demo

    with monkeypatch.context() as m:
        m.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
        m.delenv("HF_HUB_DISABLE_TELEMETRY", raising=False)
        demo = build_demo(stack).queue()
        port = conftest.free_port()
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, share=False,
                    quiet=True)
    try:
        assert demo.analytics_enabled is False
        c = Client(f"http://127.0.0.1:{port}/", verbose=False)  # (env set again: no client telemetry)
        text = stack.bundle.language("pt").examples[0]
        out = c.predict("pt", "es", 0.6, text, "", api_name="/compare")
        assert out[0] == "### `merged = 0.60·en + 0.40·es`"
        time.sleep(1)  # the version check runs in a thread
    finally:
        demo.close()
    assert records(guard) == [], records(guard)


def test_app_start_and_full_interaction_stay_on_loopback(tiny_bundle, tmp_path, guard):
    import httpx
    from gradio_client import Client, handle_file

    port = conftest.free_port()
    record = tmp_path / "server-record.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_SETTINGS and "proxy" not in k.lower()}
    env.update(PYTHONPATH=str(ROOT), LANGARITH_BUNDLE=str(tiny_bundle), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), OFFLINE_RECORD=str(record), OFFLINE_PHASE="control",
               HOME=str(tmp_path / "home"))  # no cached tokens or settings of this machine
    log = open(tmp_path / "server.log", "w")
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert child.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.5)

        page = httpx.get(url, timeout=30)
        assert "langarith" in page.text
        assert httpx.get(f"{url}config", timeout=30).status_code == 200
        c = Client(url, verbose=False)
        source, _, text, mask, info = c.predict("pt", "en", "", api_name="/set_target")
        assert source["value"] == "es" and "zero-shot" in info
        out = c.predict("pt", "es", 0.7, text, mask, api_name="/compare")
        assert out[0] == "### `merged = 0.70·en + 0.30·es`"
        out = c.predict("pt", "es", 0.7, text, mask, "ties", "", 0.5, 0, False, api_name="/compare_recipe")
        assert "TIES" in out[0]
        plot, note = c.predict("pt", "es", api_name="/sweep")
        assert plot["type"] == "plotly" and "Best λ on dev" in note
        sim, _ = c.predict("all layers", api_name="/similarity")
        assert sim["type"] == "plotly"
        ranking, _ = c.predict("pt", api_name="/rank_sources")
        assert "Sources for **pt**" in ranking
        zip_path, recipe_path, note = c.predict("pt", "es", 0.7, "linear", "", 0.5, 0, False,
                                                api_name="/export")
        assert Path(zip_path).stat().st_size > 0 and "Exported" in note
        loaded = c.predict(handle_file(recipe_path), api_name="/load_recipe")
        assert loaded[:3] == ("pt", "es", 0.7)
        time.sleep(1)  # let any background thread of the server (a version check...) try its luck
        assert child.poll() is None, "the app died"
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        log.close()

    server = records(record)
    control = [r for r in server if r["phase"] == "control"]
    assert any("api.gradio.app" in r["target"] for r in control), control
    assert any("192.0.2.1" in r["target"] for r in control), control
    app_attempts = [r for r in server if r["phase"] != "control"]
    assert app_attempts == [], f"the app tried the network: {app_attempts}"
    assert records(guard) == [], f"the client tried the network: {records(guard)}"
