"""Training for the embedded bundle, the MAD-X recipe on a frozen encoder:

1. an MLM head on the frozen encoder (no adapter), then frozen;
2. one language adapter per language (``SeqBnInvConfig(reduction_factor=2)``: bottleneck after each
   layer + NICE invertible adapter), all from one shared seeded init, trained with MLM on that
   language's text;
3. a task adapter (``SeqBnConfig(reduction_factor=16)``) and classification head on
   ``Stack(en, task)`` with English task data.

MLM logits are computed only at masked positions (the head is applied by hand, in the same order as
``adapters``' ``BertStyleMaskedLMHead``: dense, activation, LayerNorm, inverse invertible adapter,
decoder), which halves the cost against the library's full-sequence logits.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

SEED = 1234


@dataclass
class Schedule:
    steps: int
    batch: int
    lr: float
    max_seconds: float
    seq_len: int = 128


@dataclass
class EarlyStop:
    """Stop training once ``loss()`` (a held-out loss, checked at every checkpoint) has not
    improved by ``min_delta`` for ``patience`` checks in a row; the parameters of the best check
    are restored at the end. A run that reaches the step cap first says so (``stopped``)."""
    loss: Callable[[], float]
    patience: int = 4
    min_delta: float = 0.005


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def load_model(base_dir: Path, device: torch.device):
    from adapters import BertAdapterModel

    from ..trust import load_model

    model = load_model(BertAdapterModel, base_dir)
    return model.to(device)


def freeze_all_but(model, needles: list[str]) -> int:
    """Train only parameters whose name contains one of ``needles``; returns their count."""
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(any(s in name for s in needles))
        n += p.numel() if p.requires_grad else 0
    return n


# --- MLM data ----------------------------------------------------------------------------------


def pack_sequences(tokenizer, paragraphs: list[str], seq_len: int) -> torch.Tensor:
    """Tokenise paragraphs and pack them, separated by </s>, into rows <s> … </s> of seq_len."""
    ids = tokenizer(paragraphs, add_special_tokens=False)["input_ids"]
    flat: list[int] = []
    for row in ids:
        flat.extend(row)
        flat.append(tokenizer.eos_token_id)
    body = seq_len - 2
    n = len(flat) // body
    if n == 0:
        flat = flat + [tokenizer.pad_token_id] * (body - len(flat))
        n = 1
    t = torch.tensor(flat[: n * body], dtype=torch.long).view(n, body)
    bos = torch.full((n, 1), tokenizer.bos_token_id, dtype=torch.long)
    eos = torch.full((n, 1), tokenizer.eos_token_id, dtype=torch.long)
    return torch.cat([bos, t, eos], dim=1)


def mask_tokens(ids: torch.Tensor, tokenizer, gen: torch.Generator, p: float = 0.15):
    """BERT masking: p of non-special tokens; 80 % <mask>, 10 % random, 10 % kept.
    Returns (input_ids, positions [M, 2], labels [M])."""
    special = torch.zeros_like(ids, dtype=torch.bool)
    for sid in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        special |= ids == sid
    chosen = (torch.rand(ids.shape, generator=gen) < p) & ~special
    labels = ids[chosen]
    inputs = ids.clone()
    r = torch.rand(ids.shape, generator=gen)
    inputs[chosen & (r < 0.8)] = tokenizer.mask_token_id
    rand = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rand] = torch.randint(4, len(tokenizer), (int(rand.sum()),), generator=gen)
    return inputs, chosen.nonzero(), labels


def mlm_logits(model, inputs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits at ``positions`` [M, 2] only (packed rows have no padding)."""
    from ..tasks import masked_logits

    return masked_logits(model, {"input_ids": inputs, "attention_mask": torch.ones_like(inputs)},
                         positions)


def mlm_loss(model, inputs: torch.Tensor, positions: torch.Tensor, labels: torch.Tensor):
    """Cross-entropy at the masked positions only."""
    return torch.nn.functional.cross_entropy(mlm_logits(model, inputs, positions).float(), labels)


def scheduled_lr(step: int, elapsed: float, sched: Schedule) -> float:
    """Linear warm-up over 5 %, then linear decay to 0 by the step budget or the time budget,
    whichever comes first (so a run cut by time still ends at a low learning rate)."""
    warm = max(1, sched.steps // 20)
    if step < warm:
        return sched.lr * (step + 1) / warm
    progress = max((step - warm) / max(1, sched.steps - warm), elapsed / sched.max_seconds)
    return sched.lr * max(0.02, 1.0 - progress)


def train_loop(model, params, batches, loss_fn, sched: Schedule, desc: str, device,
               checkpoint: Path | None = None, every: int = 25,
               early_stop: EarlyStop | None = None) -> dict:
    """AdamW with warm-up and linear decay; stops at sched.steps or sched.max_seconds, or, with
    ``early_stop``, when its held-out loss (checked every ``every`` steps) stops improving.

    With ``checkpoint``, the trained parameters, the optimiser state, the step, the seconds
    spent and the early-stopping state are saved there every ``every`` steps (atomically); a run
    that finds the file resumes from it, skipping the batches already seen, so it continues
    exactly where it stopped."""
    import os

    opt = torch.optim.AdamW(params, lr=sched.lr, weight_decay=0.0)
    start, spent, losses = 0, 0.0, []
    checks: list[list[float]] = []  # [step, held-out loss] at every check
    best: dict = {"loss": math.inf, "step": 0, "params": None}
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        with torch.no_grad():
            for p, v in zip(params, state["params"]):
                p.copy_(v)
        opt.load_state_dict(state["opt"])
        start, spent, losses = int(state["step"]), float(state["seconds"]), list(state["losses"])
        checks = [list(c) for c in state.get("checks", [])]
        if state.get("best_params") is not None:
            best = {"loss": float(state["best_loss"]), "step": int(state["best_step"]),
                    "params": [v.to(device) for v in state["best_params"]]}
        for _ in range(start):  # the same data order as an uninterrupted run
            next(batches)
    model.train()
    t0 = time.time() - spent
    step = start - 1
    bar = tqdm(total=sched.steps, initial=start, desc=desc, mininterval=5)
    stopped = "step cap"
    resume_at = start
    if early_stop is not None and _stalled(checks, best, early_stop):
        stopped, resume_at = "early stop", sched.steps  # it had stopped before the interruption
    for step in range(resume_at, sched.steps):
        for g in opt.param_groups:
            g["lr"] = scheduled_lr(step, time.time() - t0, sched)
        batch = next(batches)
        with autocast(device):
            loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()) if step % 10 == 0 or step == sched.steps - 1 else losses[-1])
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        done = (step + 1) % every == 0
        if early_stop is not None and done:
            value = float(early_stop.loss())  # no randomness of the training's own is drawn
            model.train()
            checks.append([step + 1, value])
            if value < best["loss"] - early_stop.min_delta:
                best = {"loss": value, "step": step + 1,
                        "params": [p.detach().clone() for p in params]}
            bar.set_postfix(loss=f"{losses[-1]:.3f}", held_out=f"{value:.3f}")
        if checkpoint is not None and done:
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"step": step + 1, "params": [p.detach().cpu() for p in params],
                        "opt": opt.state_dict(), "seconds": time.time() - t0, "losses": losses,
                        "checks": checks, "best_loss": best["loss"], "best_step": best["step"],
                        "best_params": None if best["params"] is None
                        else [v.cpu() for v in best["params"]]}, tmp)
            os.replace(tmp, checkpoint)
        if early_stop is not None and done and _stalled(checks, best, early_stop):
            stopped = "early stop"
            break
        if time.time() - t0 > sched.max_seconds:
            stopped = "time budget"
            break
    bar.close()
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    out = {"steps": step + 1, "train_seconds": round(time.time() - t0, 1),
           "final_loss": sum(tail) / len(tail) if tail else math.nan,
           "first_loss": losses[0] if losses else math.nan, "resumed_at": start,
           "stopped": stopped}
    if early_stop is not None:
        if best["params"] is not None:  # the best check's weights, not the last step's
            with torch.no_grad():
                for p, v in zip(params, best["params"]):
                    p.copy_(v)
        out.update(best_step=best["step"], best_held_out_loss=best["loss"], checks=checks,
                   patience=early_stop.patience, min_delta=early_stop.min_delta, check_every=every)
    return out


def _stalled(checks: list, best: dict, early_stop: EarlyStop) -> bool:
    """``patience`` checks in a row since the best one, none better by ``min_delta``."""
    return bool(checks) and sum(1 for s, _ in checks if s > best["step"]) >= early_stop.patience


def mlm_batches(rows: torch.Tensor, tokenizer, batch: int, device, seed: int):
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(rows), generator=gen)
        for s in range(0, len(perm) - batch + 1 if len(perm) >= batch else 1, batch):
            ids = rows[perm[s:s + batch]]
            inputs, pos, labels = mask_tokens(ids, tokenizer, gen)
            yield inputs.to(device), pos.to(device), labels.to(device)


@torch.no_grad()
def heldout_mlm_loss(model, rows: torch.Tensor, tokenizer, device, batch: int = 64) -> float:
    """Mean masked-token loss on held-out rows, with a fixed masking (seeded) for comparability."""
    gen = torch.Generator().manual_seed(0)
    total, n = 0.0, 0
    model.eval()
    for s in range(0, len(rows), batch):
        inputs, pos, labels = mask_tokens(rows[s:s + batch], tokenizer, gen)
        if len(labels) == 0:
            continue
        with autocast(device):
            loss = mlm_loss(model, inputs.to(device), pos.to(device), labels.to(device))
        total += float(loss) * len(labels)
        n += len(labels)
    return total / max(n, 1)


# --- stages --------------------------------------------------------------------------------------


def train_head(model, tokenizer, rows: torch.Tensor, sched: Schedule, device) -> dict:
    """The MLM head on the frozen encoder, no adapter active. Decoder tied to the embeddings."""
    model.add_masked_lm_head("mlm")
    model.to(device)
    model.set_active_adapters(None)
    n = freeze_all_but(model, ["heads.mlm.0.", "heads.mlm.2.", "heads.mlm.3.bias"])
    params = [p for p in model.parameters() if p.requires_grad]
    batches = mlm_batches(rows, tokenizer, sched.batch, device, SEED)
    stats = train_loop(model, params, batches, lambda b: mlm_loss(model, *b), sched, "MLM head", device)
    stats["trainable"] = n
    return stats


def add_language_adapter(model, name: str) -> None:
    from adapters import SeqBnInvConfig

    torch.manual_seed(SEED)  # one shared init for every language adapter (task-vector form)
    model.add_adapter(name, config=SeqBnInvConfig(reduction_factor=2))


def train_language_adapter(model, code: str, tokenizer, rows: torch.Tensor, sched: Schedule,
                           device, checkpoint: Path | None = None, seed_code: str | None = None,
                           held_out: torch.Tensor | None = None, patience: int | None = None,
                           every: int = 25) -> dict:
    """MLM training of one MAD-X language adapter from the shared init. With ``held_out`` rows
    and ``patience``, it stops early when their masked-LM loss stops improving (``EarlyStop``)."""
    from adapters.composition import Stack

    add_language_adapter(model, code)
    model.to(device)
    model.set_active_adapters(Stack(code))
    n = freeze_all_but(model, [f".adapters.{code}.", f"invertible_adapters.{code}."])
    params = [p for p in model.parameters() if p.requires_grad]
    seed_code = seed_code or code  # a low-resource variant draws its batches as its language does
    batches = mlm_batches(rows, tokenizer, sched.batch, device,
                          SEED + len(seed_code) * 31 + ord(seed_code[0]))
    stop = None if held_out is None or patience is None else EarlyStop(
        lambda: heldout_mlm_loss(model, held_out, tokenizer, device), patience=patience)
    stats = train_loop(model, params, batches, lambda b: mlm_loss(model, *b), sched,
                       f"adapter {code}", device, checkpoint=checkpoint, every=every,
                       early_stop=stop)
    stats["trainable"] = n
    return stats


def classification_batches(tokenizer, texts: list[str], labels: list[int], batch: int, device,
                           seed: int, max_length: int = 128):
    """Length-bucketed shuffled batches (pads far less than random batches)."""
    rng = random.Random(seed)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = [order[s:s + batch] for s in range(0, len(order), batch)]
    while True:
        rng.shuffle(chunks)
        for idx in chunks:
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            y = torch.tensor([labels[i] for i in idx])
            yield {k: v.to(device) for k, v in enc.items()}, y.to(device)


def train_task_adapter(model, task: str, language: str, labels: list[str], tokenizer,
                       texts: list[str], y: list[int], sched: Schedule, device) -> dict:
    from adapters import SeqBnConfig
    from adapters.composition import Stack

    torch.manual_seed(SEED)
    model.add_adapter(task, config=SeqBnConfig(reduction_factor=16))
    model.add_classification_head(task, num_labels=len(labels), id2label=dict(enumerate(labels)))
    model.to(device)
    model.set_active_adapters(Stack(language, task))
    n = freeze_all_but(model, [f".adapters.{task}.", f"heads.{task}."])
    params = [p for p in model.parameters() if p.requires_grad]
    batches = classification_batches(tokenizer, texts, y, sched.batch, device, SEED)

    def loss_fn(b):
        enc, target = b
        logits = model(**enc, head=task).logits
        return torch.nn.functional.cross_entropy(logits.float(), target)

    stats = train_loop(model, params, batches, loss_fn, sched, f"task {task}", device)
    stats["trainable"] = n
    return stats


def save_fp16_adapter(model, name: str, out: Path, **kwargs) -> None:
    """``save_adapter``, then store the tensors as fp16: halves the bundle; ``load_adapter``
    copies them back into fp32 parameters, and merges are computed in fp32."""
    from safetensors.torch import load_file, save_file

    model.save_adapter(str(out), name, use_safetensors=True, **kwargs)
    for f in out.glob("*.safetensors"):
        sd = load_file(str(f))
        save_file({k: v.half().contiguous() if v.is_floating_point() else v for k, v in sd.items()},
                  str(f), metadata={"format": "pt"})


def save_head_without_decoder(model, name: str, out: Path) -> None:
    """``save_head``, minus the decoder weight: it is tied to the encoder's word embeddings, which
    the bundle rebuilds, so shipping it would only add vocab × hidden floats."""
    model.save_head(str(out), name)
    f = out / "pytorch_model_head.bin"
    sd = torch.load(f, map_location="cpu", weights_only=True)
    sd = {k: v for k, v in sd.items() if not k.endswith(".3.weight")}
    torch.save(sd, f)


def checkpointed(folder: Path, name: str, compute) -> dict:
    """``compute()``'s dict, stored as ``folder/name.json`` with its ``seconds``; read back instead
    of recomputed when that file exists (resumable evaluation stages)."""
    path = folder / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.time()
    value = compute()
    value["seconds"] = round(time.time() - t0, 1)
    write_json(path, value)
    return value


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
