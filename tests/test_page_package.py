"""The page as a package: panels import only ``common`` (and the layers below), the GPU boundary
never receives the stack, model events share one concurrency group and CPU-only events stay out
of it, and the method panel's values travel as one object."""

from __future__ import annotations

import ast
import contextlib
import pickle
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "langarith" / "page"
CHAINS = {"demo.py", "__init__.py"}  # the only modules that may import panels


def _page_imports(path: Path) -> set[str]:
    """The page modules a module imports (``from . import x``, ``from .x import y``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module} if node.module else {a.name for a in node.names}
    return out


def test_no_panel_imports_another():
    modules = {p.stem for p in PAGE.glob("*.py")}
    panels = modules - {"common", "demo", "__init__"}
    assert {"compare", "flips", "mlm", "sweep", "similarity", "keep", "method", "header"} <= panels
    for path in sorted(PAGE.glob("*.py")):
        imported = _page_imports(path)
        assert imported <= modules, (path.name, imported - modules)
        if path.name not in CHAINS:
            assert imported <= {"common"}, f"{path.name} imports {sorted(imported - {'common'})}"
    assert "common" not in {p for p in _page_imports(PAGE / "common.py")}


def test_nothing_imports_the_old_modules():
    import re

    root = PAGE.parents[1]
    assert not (root / "langarith" / "ui.py").exists() and not (root / "langarith" / "ui_typology.py").exists()
    old = re.compile(r"langarith\.ui\b|langarith import ui\b|from \.ui import|ui_typology")
    for path in [*root.glob("langarith/**/*.py"), *root.glob("tests/*.py"), *root.glob("benchmarks/*.py")]:
        if path.name != Path(__file__).name:
            assert not old.search(path.read_text(encoding="utf-8")), path


class PicklingGPU:
    """A stand-in of ``spaces.GPU``: the call's arguments and result go through pickle, as they
    go to and from ZeroGPU's forked worker; the calls are recorded."""
    calls: list = []

    def __init__(self, duration=None):
        self.duration = duration

    def __call__(self, fn):
        def on_gpu(*args, **kwargs):
            seconds = self.duration(*args, **kwargs) if callable(self.duration) else self.duration
            args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
            PicklingGPU.calls.append((args, kwargs, seconds))
            return pickle.loads(pickle.dumps(fn(*args, **kwargs)))
        return on_gpu


@pytest.fixture
def gpu_demo(stack, monkeypatch):
    from langarith import hosting
    from langarith.page import build_demo

    PicklingGPU.calls = []
    monkeypatch.setattr(hosting, "SPACES_GPU", PicklingGPU)
    demo = build_demo(stack)
    yield demo
    monkeypatch.undo()
    build_demo(stack)  # the page's runner back to the undecorated one


def _fn(demo, api_name):
    return next(f for f in demo.fns.values() if f.api_name == api_name)


def test_model_handlers_cross_the_gpu_boundary_without_the_stack(stack, gpu_demo):
    from langarith import tasks
    from langarith.model import LanguageStack
    from langarith.page import compare
    from langarith.page.common import LINEAR

    text = stack.bundle.language("pt").examples[0]
    with pytest.raises((TypeError, pickle.PicklingError)):  # why the stack must stay out
        pickle.dumps(stack)
    got = _fn(gpu_demo, "compare").fn(["pt"], ["es"], [0.3], [text], [""])  # a batch of one
    direct = compare.on_compare(stack, "pt", "es", 0.3, text, "", LINEAR, None)
    assert got[0][0] == direct[0] == "### `merged = 0.30·en + 0.70·es`"
    for g, d in zip((got[1][0], got[2][0], got[3][0]), direct[1:4]):  # the three label columns
        assert g["value"].keys() == d["value"].keys()
        assert list(g["value"].values()) == pytest.approx(list(d["value"].values()), abs=1e-5)
    (args, kwargs, seconds), = PicklingGPU.calls
    assert args[0] is compare.on_compare_rows and args[1:6] == (["pt"], ["es"], [0.3], [text], [""])
    assert not any(isinstance(a, LanguageStack) for a in (*args, *kwargs.values()))
    assert 0 < seconds <= 30  # a short request, not spaces' default 60 s
    # a sweep asks for time by the size of its eval set
    fig, note = _fn(gpu_demo, "sweep").fn("pt", "es", None)
    assert "Best λ on dev" in note
    asked = PicklingGPU.calls[-1][2]
    assert 0 < asked <= 300  # spaces refuses more than its longest duration
    # ... and a bigger eval set asks for more, the ensemble (two stacks per item) for more still

    def asked_for(n_items):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tasks, "load_eval", lambda *a, **k: [{}] * n_items)
            PicklingGPU.calls = []
            for api in ("sweep", "ensemble_sweep"):
                with contextlib.suppress(Exception):  # fake items: the ask is what counts
                    _fn(gpu_demo, api).fn("pt", "es", None)
        return [seconds for *_, seconds in PicklingGPU.calls]

    (small_merge, small_ens), (big_merge, big_ens) = asked_for(10), asked_for(1000)
    assert small_merge <= small_ens and small_merge < big_merge < big_ens <= 300
    # CPU-only handlers never ask for the GPU
    PicklingGPU.calls = []
    for api, args in (("set_target", ("pt", "es", "")), ("sweep_tab", ("pt", "es", None)),
                      ("layer_plot", (0.5, "0.2, 0.8", 0.5, False)), ("typology", ("family",)),
                      ("similarity", ("all layers",)), ("flips", ("pt", "es", 0.5, None))):
        _fn(gpu_demo, api).fn(*args)
    assert PicklingGPU.calls == []


def test_model_events_share_one_concurrency_group(stack, gpu_demo):
    from langarith import hosting

    model = {"compare", "fill_mask", "fill_mask_probe", "compare_recipe", "compare_drag", "sweep",
             "ensemble_sweep", "mlm_live", "details",
             "mlm_ensemble", "export", "rank_sources", "typology_ranks", "animate"}
    cpu = {"set_target", "sweep_tab", "measured", "layer_plot", "typology", "similarity", "flips",
           "mlm_heldout", "load_recipe", "from_link", "task_note", "pick_flip"}
    for f in gpu_demo.fns.values():
        if f.api_name in model:
            assert (f.concurrency_id, f.concurrency_limit) == ("model", hosting.MODEL_CONCURRENCY), f.api_name
        elif f.api_name in cpu:
            assert f.concurrency_id != "model" and f.concurrency_limit, f.api_name
    assert not [f.api_name for f in gpu_demo.fns.values()
                if f.concurrency_id == "model" and f.api_name not in model
                and not f.api_name.startswith(("refresh", "fill_mask_step", "details_step"))]


def test_method_values_are_one_object(stack):
    from dataclasses import fields

    from langarith import share
    from langarith.page import build_demo
    from langarith.page.common import PANEL, Method

    demo = build_demo(stack)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"method", "weights", "density", "seed", "extrapolate", "lam-layers", "lam-inv",
            "typology-merge-set", "typology-k", "typology-t"} <= ids
    # the comparison's API takes the ten method controls, in the Method's order, after the text
    params = list(__import__("inspect").signature(_fn(demo, "compare_recipe").fn).parameters)
    names = [f.name for f in fields(Method)]
    assert params[5:5 + len(names)] == names and params[5 + len(names)] == "task_name"
    for m in (Method("dare", density=0.3, seed=2), Method("ties", density=0.3), Method("nway", weights_text="en: 0.5, es: 0.5"),
              Method("layer_gradient", lam_layers="0.2, 0.8", lam_inv=0.4),
              Method("typology", typology="syntax", k=2, temperature=0.5)):
        r = share.Recipe.from_json(m.recipe("pt", "es", 0.3).to_json())  # as a file holds it
        back = Method.from_recipe(r, PANEL)
        assert back.method == m.method
        for f in ("weights_text", "lam_layers", "typology", "seed"):
            if getattr(m, f) not in (None, "", 0):
                assert getattr(back, f) == getattr(m, f), (m.method, f)


def test_one_gpu_decorated_function_and_every_model_handler_crosses_by_reference(stack, monkeypatch):
    """ZeroGPU gives each decorated function a worker with its own copy of the model: the page
    decorates exactly one. Every model handler reaches it as itself (pickled by reference), and
    the tour's animation, a handler that yields frames, is one GPU call whose frames play here."""
    import importlib

    from langarith import hosting
    from langarith.page import build_demo, common, compare

    decorated = []

    def counting_gpu(**kw):
        decorated.append(kw)
        return PicklingGPU(**kw)

    PicklingGPU.calls = []
    monkeypatch.setattr(hosting, "SPACES_GPU", counting_gpu)
    demo = build_demo(stack)
    try:
        assert len(decorated) == 1
        handlers = [f for path in sorted(PAGE.glob("*.py"))
                    for f in vars(importlib.import_module(f"langarith.page.{path.stem}")).values()
                    if callable(f) and common.is_model_handler(f)]
        assert len(set(handlers)) >= 10
        for f in handlers:
            assert pickle.loads(pickle.dumps(f)) is f, f.__qualname__
        monkeypatch.setattr(compare.on_animate, "frame_pause", 0.0)
        text = stack.bundle.language("pt").examples[0]
        frames = list(_fn(demo, "animate").fn("pt", "es", text, ""))
        assert [f[0] for f in frames] == compare.ANIMATE_LAMBDAS
        assert frames[3][1] == "### `merged = 0.30·en + 0.70·es`"
        assert len(PicklingGPU.calls) == 1 and PicklingGPU.calls[0][0][0] is compare.on_animate
    finally:
        monkeypatch.undo()
        build_demo(stack)
