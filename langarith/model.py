"""Layer 2: the engine: the model with its adapters and the live merged-adapter slot.

A *bundle* (``loading``: its manifest and the safe loading of its parts) is a folder with a base
encoder, one MAD-X language adapter per language, task adapters with their heads, an MLM head and
a tokenizer. ``LanguageStack`` loads it through the ``adapters`` library, offline, and keeps one
extra adapter, ``merged``, whose weights are rewritten in place whenever λ changes (``use``: one
merge for a whole batch, as sweeps and exports need) or whose linear maps mix each row's merge of
a batch (``use_rows``: one merge per visitor).

Why flat buffers: every language adapter's tensors are re-pointed into one contiguous vector, so a
merge is a single ``torch.lerp(B, A, λ, out=merged)`` over the whole adapter — no new adapter, no
allocation, no host round trip, at memory-bandwidth speed. ``average_adapter`` builds a fresh
adapter on every call and, on models with heads, skips the invertible adapter (see NOTES §3).

Why the views are checked on every write (``FlatAdapter.live``): ZeroGPU moves each tensor to the
GPU on its own in its forked worker, deduplicated by (data_ptr, dtype, shape, stride), so a view
and its flat base come out as two separate tensors; a ``lerp`` into the old buffer would then
change nothing the model computes with. ``live`` finds that in a few pointer comparisons and points
the parameters into a new buffer on their device. Nothing else is assumed to survive between two
GPU calls; the lock is made anew in a forked child (a lock another thread held at the fork would
stay locked there for ever).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import re
import threading
import types
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import torch

from .arithmetic import MergeError, check_compatible, check_weights, merge_method, row_mix
from .cache import MEMO_LIMITS, Memo
from .loading import (Bundle, InputError, load_adapter_checked, load_part, rename_head,
                      restore_mlm_bias)
from .trust import check_adapter_folder, load_model, load_tokenizer

log = logging.getLogger(__name__)


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


# adapters 1.3.0's set_active_adapters resets the adapters inside a ForwardContext before the new
# setup is active, which warns "none are activated" although no forward pass runs.
_NONE_ACTIVE = _DropMessage("none are activated for the forward pass")


def activate(model, setup) -> None:
    """``model.set_active_adapters(setup)`` without that spurious warning (callers hold the lock)."""
    logger = logging.getLogger("adapters.model_mixin")
    logger.addFilter(_NONE_ACTIVE)
    try:
        model.set_active_adapters(setup)
    finally:
        logger.removeFilter(_NONE_ACTIVE)

MERGED = "merged"  # name of the live slot adapter


@dataclass(frozen=True)
class Merge:
    """A merge recipe: languages with weights, a method from ``arithmetic.METHODS`` and the
    parameters it declares. Hashable, so computed merges can be cached per recipe."""

    weights: tuple[tuple[str, float], ...]
    method: str = "linear"
    density: float | None = None
    seed: int = 0
    allow_extrapolation: bool = False
    lam_layers: tuple[float, ...] | None = None  # layer_gradient: λ anchors over depth
    lam_inv: float | None = None  # layer_gradient: λ of the invertible adapter

    @classmethod
    def of(cls, weights: Mapping[str, float], method: str = "linear", **params) -> "Merge":
        return cls(tuple((c, float(w)) for c, w in weights.items()), method, **params)


# --- the model with a live merged slot --------------------------------------------------------


def language_params(model, name: str) -> dict[str, torch.nn.Parameter]:
    """Parameters of one language adapter, by adapter-name-free key (layer adapters + invertible)."""
    pat = re.compile(rf"(\.adapters|\binvertible_adapters)\.{re.escape(name)}\.")
    out = {}
    for key, p in model.named_parameters():
        if pat.search(key):
            out[pat.sub(r"\1.", key, count=1)] = p
    return out


class FlatAdapter:
    """One adapter's tensors as views into a single contiguous vector (see module docstring)."""

    def __init__(self, params: Mapping[str, torch.nn.Parameter]):
        self.keys = sorted(params)
        self.params = {k: params[k] for k in self.keys}  # the model's own Parameter objects
        self.spans: dict[str, tuple[int, int]] = {}
        offset = 0
        for k in self.keys:
            n = self.params[k].numel()
            self.spans[k] = (offset, offset + n)
            offset += n
        self._point()

    def _point(self) -> None:
        """A new flat buffer on the parameters' device, holding their current values, and every
        parameter re-pointed into it: the module now computes with the buffer's memory."""
        ref = self.params[self.keys[0]]
        flat = torch.empty(self.spans[self.keys[-1]][1], dtype=ref.dtype, device=ref.device)
        views: dict[str, torch.Tensor] = {}
        for k in self.keys:
            p = self.params[k]
            start, stop = self.spans[k]
            view = flat[start:stop].view_as(p)
            view.copy_(p.data)
            p.data = view
            views[k] = view
        self.flat, self.views = flat, views

    def aliased(self) -> bool:
        """Whether every parameter still lives in ``flat`` at its offset (pointer comparisons)."""
        flat = self.flat
        base, size = flat.data_ptr(), flat.element_size()
        return all(p.device == flat.device and p.dtype == flat.dtype
                   and p.data_ptr() == base + self.spans[k][0] * size
                   for k, p in self.params.items())

    def live(self) -> "FlatAdapter":
        """This adapter with its views re-established if a per-tensor move split them from
        ``flat`` (ZeroGPU's worker); a no-op check otherwise."""
        if not self.aliased():
            log.info("re-pointing %d tensors into a new flat buffer on %s", len(self.keys),
                     self.params[self.keys[0]].device)
            self._point()
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.views)

    @functools.cached_property
    def layer_runs(self) -> list[tuple[int, int, int | None]]:
        """(start, stop, layer) slices of ``flat``, one per run of keys of the same layer (layer
        None: the invertible adapter). Computed once: a per-layer merge is then one ``lerp`` per
        slice over views, with no allocation."""
        from .arithmetic import layer_index

        runs: list[list] = []
        for k in self.keys:
            (start, stop), layer = self.spans[k], layer_index(k)
            if runs and runs[-1][2] == layer and runs[-1][1] == start:
                runs[-1][1] = stop
            else:
                runs.append([start, stop, layer])
        return [tuple(r) for r in runs]


class RowMix:
    """The slot's linear maps computing one merge per batch row, while a batch runs.

    Every tensor of a MAD-X language adapter is the weight or bias of a linear map (the bottleneck's
    ``adapter_down.0`` and ``adapter_up``, the invertible adapter's ``F.0``, ``F.2``, ``G.0``,
    ``G.2``), so the merge of row r is ``Σ_l w[r, l]·W_l`` applied to that row alone: the exact
    live-slot merge, only per row, and rows with different λ (or pairs) share one encoder pass.
    ``adapters`` has no per-row merge, hence this: each of the slot's ``nn.Linear`` modules gets an
    instance ``forward`` for the duration of ``LanguageStack.use_rows`` (under the lock), removed
    after. ``select(index)``: which row of the weights each input row is (the masked-LM head's
    reverse invertible pass sees one input row per masked token)."""

    def __init__(self, model, weights: torch.Tensor, sources: list["FlatAdapter"]):
        self.model, self.weights, self.index = model, weights, None
        self._sources = sources

    def select(self, index: torch.Tensor | None) -> None:
        self.index = index

    def current(self, n: int) -> torch.Tensor:
        w = self.weights if self.index is None else self.weights[self.index]
        if w.shape[0] != n:
            raise RuntimeError(f"a batch of {n} rows against {w.shape[0]} rows of merge weights")
        return w

    def linear(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` [rows, ..., in] through row r's merge of the linear map ``key``: each source's
        own map over the whole batch, mixed per row (``arithmetic.row_mix``; exact by linearity,
        and no merged weight matrix per row)."""
        outs = [torch.nn.functional.linear(x, s.views[key + ".weight"], s.views[key + ".bias"])
                for s in self._sources]
        return row_mix(outs, self.current(x.shape[0]))


# Every stack alive in this process, so that a forked child (ZeroGPU's worker) gets fresh locks.
_STACKS: "weakref.WeakSet[LanguageStack]" = weakref.WeakSet()


def _fresh_locks_in_child() -> None:
    """After ``fork`` only the forking thread survives: a lock another thread held at that
    moment would stay locked in the child for ever. Runs in the child, single-threaded."""
    for stack in list(_STACKS):
        stack.lock = threading.RLock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


def _comparable_config(config) -> dict:
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {k: v for k, v in cfg.items() if k not in ("init_weights_seed",)}


class LanguageStack:
    """Frozen encoder + all language adapters + task adapters/heads + the live ``merged`` slot.

    Thread safety: the slot and the active-adapter setup are shared state, so every forward that
    depends on them runs under ``self.lock`` (see ``use``). One person's λ can never be seen by
    another's forward pass. Every write re-checks that the slot's parameters are the flat buffer
    (``FlatAdapter.live``), so a stack whose tensors were moved one by one (ZeroGPU) stays correct.
    """

    def __init__(self, bundle: Bundle | str | Path, device: str | torch.device | None = None):
        from adapters import AutoAdapterModel  # heavy import, only when a model is built

        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        b = self.bundle
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tok = b.path(b.manifest["tokenizer"])
        # Configs are read by trust.py first: transformers gets a checked config object.
        self.tokenizer = load_part("tokenizer", tok, lambda: load_tokenizer(tok))
        base = b.base_path()
        model = load_part("base encoder", base, lambda: load_model(AutoAdapterModel, base))
        if b.manifest["mlm_head"] == "from_base":  # hub checkpoints: their *ForMaskedLM head
            rename_head(model, "default", "mlm")
            restore_mlm_bias(model, "mlm", base)
        else:
            head = b.path(b.manifest["mlm_head"])
            load_part("masked-LM head", head,
                       lambda: check_adapter_folder(head) or model.load_head(str(head), load_as="mlm"))
        for task in b.tasks.values():
            for name, ref in task.stack_before:  # e.g. a domain adapter (shared by tasks: once)
                if name not in model.adapters_config:
                    load_adapter_checked(model, b.path(ref), name, with_head=False)
            load_adapter_checked(model, b.path(task.adapter), task.name)  # with its head
        self.adapter_config: dict[str, dict] = {}
        # Hub profiles load a language's adapter the first time it is used (see ensure_language).
        self.lazy = bool(b.manifest.get("lazy_languages"))
        self._lang_kwargs = dict(b.manifest.get("language_adapter_kwargs", {}))
        for code in ([b.task_language] if self.lazy else b.adapter_languages()):
            load_adapter_checked(model, b.path(b.languages[code].adapter), code, **self._lang_kwargs)
            self.adapter_config[code] = _comparable_config(model.adapters_config.get(code))
        self._init: FlatAdapter | None = None
        if b.manifest.get("adapter_init"):
            load_adapter_checked(model, b.path(b.manifest["adapter_init"]), "_init")
        model.eval().requires_grad_(False).to(self.device)

        first = b.task_language
        model.add_adapter(MERGED, config=copy.deepcopy(model.adapters_config.get(first)))
        model.eval().requires_grad_(False).to(self.device)  # the new slot starts in train mode
        self.model = model
        self.flat: dict[str, FlatAdapter] = {
            code: FlatAdapter(language_params(model, code)) for code in self.adapter_config
        }
        for code, fa in self.flat.items():  # every pair must line up for any merge to work
            if self.adapter_config[code] == self.adapter_config[first]:  # else check_mergeable refuses
                check_compatible(self.flat[first].views, fa.views, names=[first, code])
        if "_init" in model.adapters_config:
            self._init = FlatAdapter(language_params(model, "_init"))
        self.slot = FlatAdapter(language_params(model, MERGED))
        self.lock = threading.RLock()
        _STACKS.add(self)
        self.weights: dict[str, float] = {}
        self.memo = Memo(MEMO_LIMITS)  # everything computed from these weights (cache.py)

    @property
    def init(self) -> dict[str, torch.Tensor] | None:
        """The language adapters' shared initialisation (None when the bundle has none)."""
        return None if self._init is None else self._init.live().state_dict()

    def live_buffers(self, codes) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The flat buffers of ``codes`` and of the slot, each checked to still be what the model
        computes with (re-pointed if a per-tensor move split them). Caller holds the lock."""
        return [self.flat[c].live().flat for c in codes], self.slot.live().flat

    # -- merging -------------------------------------------------------------------------------

    def ensure_language(self, code: str) -> None:
        """Load ``code``'s adapter if a lazy (hub) profile has not loaded it yet. Holds the lock."""
        if code in self.flat:
            return
        lang = self.bundle.language(code)
        if not lang.has_adapter:
            raise InputError(f"{lang.name} ({code}) has no language adapter of its own")
        with self.lock:
            if code in self.flat:
                return
            log.info("loading the %s adapter from %s", code, lang.adapter)
            folder = self.bundle.path(lang.adapter)  # a hub profile downloads here (tqdm progress)
            load_adapter_checked(self.model, folder, code, **self._lang_kwargs)
            self.model.eval().requires_grad_(False).to(self.device)
            self.adapter_config[code] = _comparable_config(self.model.adapters_config.get(code))
            fa = FlatAdapter(language_params(self.model, code))
            first = self.bundle.task_language
            if self.adapter_config[code] == self.adapter_config[first]:
                check_compatible(self.flat[first].views, fa.views, names=[first, code])
            self.flat[code] = fa

    def check_mergeable(self, codes: list[str]) -> None:
        for code in codes:
            lang = self.bundle.language(code)
            if not lang.has_adapter:
                raise InputError(f"{lang.name} ({code}) has no language adapter to merge")
            self.ensure_language(code)
        first = codes[0]
        for code in codes[1:]:
            if self.adapter_config[code] != self.adapter_config[first]:
                a, b = self.adapter_config[first], self.adapter_config[code]
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                detail = "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in diff)
                raise MergeError(f"adapters {first} and {code} have different configs and cannot be "
                                 f"merged parameter by parameter ({detail})")

    def write_merge(self, weights: Mapping[str, float], *, allow_extrapolation: bool = False) -> None:
        """Write Σ wᵢ·θᵢ into the live slot, in place. Caller holds ``self.lock``.

        Two languages use one ``torch.lerp`` over the flat buffers; weights that do not sum to 1
        (extrapolation) add the remainder on the shared init: init + Σ wᵢ(θᵢ − init).
        """
        codes = list(weights)
        self.check_mergeable(codes)
        ws = check_weights([weights[c] for c in codes], allow_extrapolation=allow_extrapolation)
        rest = 1.0 - sum(ws)
        if abs(rest) > 1e-9 and self._init is None:
            raise MergeError("weights that do not sum to 1 need the bundle's shared adapter init")
        flats, out = self.live_buffers(codes)
        if len(codes) == 2 and abs(rest) < 1e-9:
            torch.lerp(flats[1], flats[0], ws[0], out=out)
        elif len(codes) == 1 and abs(rest) < 1e-9:
            out.copy_(flats[0])
        else:
            torch.mul(flats[0], ws[0], out=out)
            for f, w in zip(flats[1:], ws[1:]):
                out.add_(f, alpha=w)
            if abs(rest) > 1e-9:
                out.add_(self._init.live().flat, alpha=rest)
        self.weights = dict(zip(codes, ws))

    def write(self, merge: "Merge") -> None:
        """Write any merge method into the live slot. Caller holds ``self.lock``.

        The registry (``arithmetic.METHODS``) says how: an in-place method is a weighted sum over
        the flat buffers (or one per layer slice); the others (TIES, DARE) are computed on state
        dicts by the arithmetic layer (cached per recipe) and copied into the slot."""
        method = merge_method(merge.method)
        if method.per_layer:
            self.write_layer_gradient(merge)
        elif method.in_place:
            if not (method.extrapolates or merge.allow_extrapolation):
                check_weights([w for _, w in merge.weights])
            self.write_merge(dict(merge.weights),
                             allow_extrapolation=method.extrapolates or merge.allow_extrapolation)
        else:
            merged = self.compute(merge)
            self.slot.live()
            for k, v in self.slot.views.items():
                v.copy_(merged[k])
            self.weights = dict(merge.weights)

    @property
    def n_layers(self) -> int:
        """Encoder layers the language adapters span (for per-layer λ anchors)."""
        from .arithmetic import count_layers

        return count_layers(self.slot.keys)

    def write_layer_gradient(self, merge: "Merge") -> None:
        """λ_l·A + (1−λ_l)·B per layer and λ_inv for the invertible adapter, in place: one
        ``torch.lerp`` per layer slice of the flat buffers (``FlatAdapter.layer_runs``).
        Caller holds ``self.lock``."""
        from .arithmetic import check_lambda, layer_lambdas

        if len(merge.weights) != 2:
            raise MergeError("a per-layer λ merges exactly two adapters (A and B)")
        (a, lam), (b, _) = merge.weights
        self.check_mergeable([a, b])
        ext = merge.allow_extrapolation
        lam = check_lambda(lam, allow_extrapolation=True)
        lams = layer_lambdas(merge.lam_layers if merge.lam_layers is not None else [lam], self.n_layers,
                             allow_extrapolation=ext)
        lam_inv = check_lambda(lam if merge.lam_inv is None else merge.lam_inv,
                               allow_extrapolation=ext)
        (fa, fb), out = self.live_buffers([a, b])
        for start, stop, layer in self.slot.layer_runs:
            w = lam_inv if layer is None else lams[layer]
            torch.lerp(fb[start:stop], fa[start:stop], w, out=out[start:stop])
        self.weights = dict(merge.weights)

    def compute(self, merge: "Merge") -> dict[str, torch.Tensor]:
        """The merged state dict of a recipe, computed by the arithmetic layer; never touches the
        live slot. Kept in the memo per recipe: adapters never change."""
        return self.memo.get("merge", merge, lambda: self._compute(merge))

    def _compute(self, merge: "Merge") -> dict[str, torch.Tensor]:
        method = merge_method(merge.method)
        codes = [c for c, _ in merge.weights]
        self.check_mergeable(codes)
        if method.needs_init and self._init is None:
            raise MergeError(f"{merge.method} needs the bundle's shared adapter init")
        # the parameters the method declares, as the recipe sets them (None: its default)
        params = {k: getattr(merge, k) for k in method.params if getattr(merge, k) is not None}
        with self.lock:  # the flat buffers are re-pointed under the lock if a move split them
            states = [self.flat[c].live().state_dict() for c in codes]
            init = self.init
        return method.function(init, states, [w for _, w in merge.weights], **params)

    @contextlib.contextmanager
    def use(self, adapter: "str | Mapping[str, float] | Merge", task: str | None = None,
            *, allow_extrapolation: bool = False) -> Iterator:
        """Hold the lock with ``Stack(adapter[, task])`` active; a mapping of weights is merged first.

        ``task=None`` activates the language adapter alone (the MLM head's setting). A task with
        ``stack_before`` adapters activates ``Stack(adapter, *stack_before, task)``.
        """
        from adapters.composition import Stack

        with self.lock:
            if isinstance(adapter, Merge):
                self.write(adapter)
                name = MERGED
            elif isinstance(adapter, Mapping):
                self.write_merge(adapter, allow_extrapolation=allow_extrapolation)
                name = MERGED
            else:
                lang = self.bundle.language(adapter)
                if not lang.has_adapter:
                    raise InputError(f"{lang.name} ({adapter}) has no language adapter of its own")
                self.ensure_language(adapter)
                name = adapter
            before = [n for n, _ in self.bundle.task(task).stack_before] if task else []
            stack = Stack(name, *before, task) if task else Stack(name)
            activate(self.model, stack)
            yield self.model

    @contextlib.contextmanager
    def use_rows(self, rows: "list[Mapping[str, float] | Merge]", task: str | None = None) -> Iterator[RowMix]:
        """Hold the lock with ``Stack(merged[, task])`` active, the slot computing row r of a
        batch with the merge ``rows[r]``: weights by language (summing to 1, as the live slot's),
        or any ``Merge``. Yields the ``RowMix`` (its ``model``; ``select`` for a pass whose input
        rows are not the batch's rows)."""
        from adapters.composition import Stack

        with self.lock:
            mixes = [self._row_sources(r) for r in rows]
            names = sorted({n for m in mixes for n in m}, key=lambda n: (isinstance(n, Merge), repr(n)))
            sources = [self._row_source(n) for n in names]
            slot = self.slot.live()
            weights = torch.tensor([[float(m.get(n, 0.0)) for n in names] for m in mixes],
                                   dtype=slot.flat.dtype, device=slot.flat.device)
            mix = RowMix(self.model, weights, sources)
            patched = []
            try:
                for key, module in self._slot_linears():
                    module.forward = functools.partial(mix.linear, key)
                    patched.append(module)
                before = [n for n, _ in self.bundle.task(task).stack_before] if task else []
                activate(self.model, Stack(MERGED, *before, task) if task else Stack(MERGED))
                yield mix
            finally:
                for module in patched:
                    del module.forward  # back to nn.Linear.forward over the slot's own weights

    # A row's sources: language codes (their flat buffers), "@init" (the shared init, for a
    # task-arithmetic remainder) or a Merge computed by the arithmetic layer (TIES, DARE, per-layer
    # λ), which then enters the row as one source of weight 1: rows of any method share a pass.
    _INIT = "@init"

    def _row_sources(self, row) -> dict:
        if not isinstance(row, Merge):
            row = Merge.of(row)
        method = merge_method(row.method)
        codes = [c for c, _ in row.weights]
        self.check_mergeable(codes)
        if not method.in_place or method.per_layer:
            return {row: 1.0}
        extrapolate = method.extrapolates or row.allow_extrapolation
        ws = check_weights([w for _, w in row.weights], allow_extrapolation=extrapolate)
        out = dict(zip(codes, ws))
        rest = 1.0 - sum(ws)
        if abs(rest) > 1e-9:  # init + Σ wᵢ(θᵢ − init), as ``write_merge`` writes it
            if self._init is None:
                raise MergeError("weights that do not sum to 1 need the bundle's shared adapter init")
            out[self._INIT] = rest
        return out

    def _row_source(self, name):
        """What ``RowMix`` reads a source's ``views`` from. Caller holds the lock."""
        if isinstance(name, Merge):
            return types.SimpleNamespace(views=self.compute(name))
        return (self._init if name == self._INIT else self.flat[name]).live()

    def _slot_linears(self) -> list[tuple[str, torch.nn.Linear]]:
        """The slot's linear maps, by the adapter-name-free key of their parameters."""
        pat = re.compile(rf"(\.adapters|\binvertible_adapters)\.{re.escape(MERGED)}\.")
        out = [(pat.sub(r"\1.", name, count=1), m) for name, m in self.model.named_modules()
               if isinstance(m, torch.nn.Linear) and pat.search(name + ".")]
        if {k + s for k, _ in out for s in (".weight", ".bias")} != set(self.slot.keys):
            raise MergeError("the merged slot has tensors outside linear maps: it cannot merge per row")
        return out

    def language_state_dict(self, code: str) -> dict[str, torch.Tensor]:
        self.check_mergeable([code])
        return self.flat[code].state_dict()

    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The slot's current contents (copy), keyed like ``language_state_dict``."""
        with self.lock:
            return {k: v.clone() for k, v in self.slot.live().state_dict().items()}

    def save_merged(self, weights: "Mapping[str, float] | Merge", out: str | Path,
                    *, allow_extrapolation: bool = False) -> Path:
        """Write the merge as an adapter folder that ``adapters``' ``load_adapter`` loads."""
        out = Path(out)
        with self.lock:
            if isinstance(weights, Merge):
                self.write(weights)
                recipe = {"weights": dict(weights.weights), "method": weights.method,
                          "density": weights.density, "seed": weights.seed}
                if merge_method(weights.method).per_layer:
                    recipe.update(anchors=list(weights.lam_layers or ()), lam_inv=weights.lam_inv)
            else:
                self.write_merge(weights, allow_extrapolation=allow_extrapolation)
                recipe = {"weights": dict(weights), "method": "linear"}
            self.model.save_adapter(str(out), MERGED, with_head=False, use_safetensors=True)
        cfg = json.loads((out / "adapter_config.json").read_text())
        cfg["model_name"] = self.bundle.base_name()  # not the local cache folder it was loaded from
        cfg["langarith"] = recipe
        (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
        return out
