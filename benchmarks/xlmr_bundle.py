"""A bundle-format folder whose language adapters have xlm-roberta-base MAD-X size, for benchmarks.

The encoder is a randomly initialised BERT with xlm-roberta-base's shape (hidden 768, 12 layers,
12 heads, intermediate 3072) but a tiny vocabulary and 64 positions, so it is cheap to build and
load. Language adapters are ``SeqBnInvConfig(reduction_factor=2)`` with random non-identity weights:
7,387,776 parameters in 56 tensors each, as at xlm-roberta-base size. Predictions mean nothing;
only the adapter sizes matter (merge benchmarks).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

LABELS = ("calc", "writer", "draw")
LANG_PARAMS = 7_387_776  # one MAD-X language adapter at xlm-roberta-base size
LANG_TENSORS = 56


def build_xlmr_size_bundle(out: str | Path, seed: int = 0, hidden: int = 768, layers: int = 12,
                           heads: int = 12, intermediate: int = 3072, vocab: int = 1000,
                           max_positions: int = 64) -> Path:
    from adapters import BertAdapterModel, SeqBnConfig, SeqBnInvConfig
    from transformers import BertConfig, PreTrainedTokenizerFast

    from langarith.bundle.tiny import TEXTS, _tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _tokenizer(out / "tokenizer")
    tok = PreTrainedTokenizerFast.from_pretrained(str(out / "tokenizer"))
    tok.model_max_length = max_positions
    tok.save_pretrained(str(out / "tokenizer"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=max(vocab, len(tok)), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate,
                     max_position_embeddings=max_positions, pad_token_id=tok.pad_token_id)
    model = BertAdapterModel(cfg)
    model.bert.save_pretrained(str(out / "base"))
    model.add_masked_lm_head("mlm")
    (out / "heads").mkdir(exist_ok=True)
    model.save_head(str(out / "heads" / "mlm"), "mlm")

    lang_config = SeqBnInvConfig(reduction_factor=2)
    (out / "adapters").mkdir(exist_ok=True)
    (out / "tasks").mkdir(exist_ok=True)
    for i, code in enumerate(("en", "es")):
        torch.manual_seed(seed + 1)
        model.add_adapter(code, config=lang_config)
        gen = torch.Generator().manual_seed(seed + 100 + i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if f".{code}." in name:
                    p.add_(0.05 * torch.randn(p.shape, generator=gen))
        model.save_adapter(str(out / "adapters" / code), code, use_safetensors=True)

    model.add_adapter("topic", config=SeqBnConfig(reduction_factor=16))
    model.add_classification_head("topic", num_labels=len(LABELS), id2label=dict(enumerate(LABELS)))
    model.save_adapter(str(out / "tasks" / "topic"), "topic", with_head=True, use_safetensors=True)

    manifest = {
        "format": 1,
        "name": "xlmr-size-benchmark-bundle",
        "description": "Random weights at xlm-roberta-base MAD-X adapter size, for merge benchmarks.",
        "base": {"path": "base"},
        "tokenizer": "tokenizer",
        "mlm_head": "heads/mlm",
        "task_language": "en",
        "languages": [
            {"code": "en", "name": "English", "family": "Germanic", "adapter": "adapters/en",
             "examples": TEXTS["en"][:2]},
            {"code": "es", "name": "Spanish", "family": "Romance", "adapter": "adapters/es",
             "source": "en", "examples": TEXTS["es"][:2]},
        ],
        "tasks": [{"name": "topic", "title": "random topic head", "kind": "classification",
                   "adapter": "tasks/topic", "labels": list(LABELS)}],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return out
