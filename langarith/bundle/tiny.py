"""A small deterministic bundle in the real bundle's format, generated in seconds, for tests.

Random weights (seeded), a word-level tokenizer over the example texts, five languages: three with
adapters (en, es, de), two zero-shot targets (pt from es, nl from de). Language adapters start from
one shared seeded init (saved as ``adapters/_init``) and are then moved by seeded noise, so merges
are never the near-identity of a fresh adapter.

    python -m langarith.bundle.tiny OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

LABELS = ("calc", "writer", "draw")
LANGS = [  # code, name, family, has adapter, suggested source
    ("en", "English", "Germanic", True, None),
    ("es", "Spanish", "Romance", True, "en"),
    ("de", "German", "Germanic", True, "en"),
    ("pt", "Portuguese", "Romance", False, "es"),
    ("nl", "Dutch", "Germanic", False, "de"),
]
TEXTS = {
    "en": ["insert a formula into the cell", "format the paragraph and the page style",
           "draw a line and a shape", "sum the values in the column", "check the spelling of the text"],
    "es": ["inserte una fórmula en la celda", "formatee el párrafo y el estilo de página",
           "dibuje una línea y una forma", "sume los valores de la columna", "revise la ortografía del texto"],
    "de": ["fügen sie eine formel in die zelle ein", "formatieren sie den absatz und die seitenvorlage",
           "zeichnen sie eine linie und eine form", "summieren sie die werte der spalte",
           "prüfen sie die rechtschreibung des textes"],
    "pt": ["insira uma fórmula na célula", "formate o parágrafo e o estilo de página",
           "desenhe uma linha e uma forma", "some os valores da coluna", "verifique a ortografia do texto"],
    "nl": ["voeg een formule in de cel in", "maak de alinea en de paginaopmaak op",
           "teken een lijn en een vorm", "tel de waarden in de kolom op", "controleer de spelling van de tekst"],
}
TEXT_LABELS = [0, 1, 2, 0, 1]
#: The small tagging task (the embedded bundle's span tagging, in miniature): BIO over words.
SPAN_LABELS = ("O", "B-UI", "I-UI", "B-CODE", "I-CODE")


def span_tags(text: str) -> list[str]:
    """Hand-made gold tags: the last two words a UI span, the second word (if any) CODE."""
    n = len(text.split())
    tags = ["O"] * n
    if n >= 4:
        tags[1] = "B-CODE"
    if n >= 2:
        tags[-2:] = ["B-UI", "I-UI"]
    return tags


def _tagging_task(model, out: Path, seed: int) -> dict:
    """A random-weight tagging adapter + head ``spans`` and its gzipped eval sets."""
    import gzip

    from adapters import SeqBnConfig

    model.add_adapter("spans", config=SeqBnConfig(reduction_factor=4))
    model.add_tagging_head("spans", num_labels=len(SPAN_LABELS), id2label=dict(enumerate(SPAN_LABELS)))
    gen = torch.Generator().manual_seed(seed + 11)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".spans." in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    model.save_adapter(str(out / "tasks" / "spans"), "spans", with_head=True, use_safetensors=True)
    (out / "eval" / "spans").mkdir(parents=True, exist_ok=True)
    for code, texts in TEXTS.items():
        with gzip.open(out / "eval" / "spans" / f"{code}.jsonl.gz", "wt", encoding="utf-8") as f:
            for j, text in enumerate(texts):
                row = {"key": f"t{j}", "split": "dev" if j % 2 == 0 else "test", "text": text,
                       "words": text.split(), "tags": span_tags(text)}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"name": "spans", "title": "Help spans (UI, CODE)", "kind": "tagging",
            "adapter": "tasks/spans", "labels": list(SPAN_LABELS), "eval": "eval/spans"}


def _tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    words = sorted({w for texts in TEXTS.values() for t in texts for w in t.split()})
    vocab = {tok: i for i, tok in enumerate(specials + words + ["<mask>"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=128)
    fast.save_pretrained(str(out))


def build_tiny_bundle(out: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2,
                      heads: int = 2, intermediate: int | None = None, precompute: bool = True) -> Path:
    """Write the tiny bundle to ``out`` (overwriting its files) and return the path.

    ``hidden``/``layers``/``heads``/``intermediate`` give other encoder shapes with the same
    languages and files (benchmarks build an xlm-roberta-base-sized one). ``precompute`` adds the
    build's precomputed evaluation (sweeps with per-item predictions, masked-LM curves) as the
    embedded bundle's ``evaluate`` stage writes it."""
    from adapters import BertAdapterModel, SeqBnConfig, SeqBnInvConfig
    from transformers import BertConfig, PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _tokenizer(out / "tokenizer")
    tok = PreTrainedTokenizerFast.from_pretrained(str(out / "tokenizer"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate or 2 * hidden,
                     max_position_embeddings=128,
                     pad_token_id=tok.pad_token_id)
    model = BertAdapterModel(cfg)
    model.bert.save_pretrained(str(out / "base"))
    model.add_masked_lm_head("mlm")
    (out / "heads").mkdir(exist_ok=True)
    model.save_head(str(out / "heads" / "mlm"), "mlm")

    lang_config = SeqBnInvConfig(reduction_factor=2)
    torch.manual_seed(seed + 1)
    model.add_adapter("_init", config=lang_config)
    (out / "adapters").mkdir(exist_ok=True)
    (out / "tasks").mkdir(exist_ok=True)
    model.save_adapter(str(out / "adapters" / "_init"), "_init", use_safetensors=True)
    for i, (code, _, _, has_adapter, _) in enumerate(LANGS):
        if not has_adapter:
            continue
        torch.manual_seed(seed + 1)  # the shared init, as in the paper's adapters
        model.add_adapter(code, config=lang_config)
        gen = torch.Generator().manual_seed(seed + 100 + i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if f".{code}." in name:
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))
        model.save_adapter(str(out / "adapters" / code), code, use_safetensors=True)

    model.add_adapter("topic", config=SeqBnConfig(reduction_factor=4))
    model.add_classification_head("topic", num_labels=len(LABELS),
                                  id2label=dict(enumerate(LABELS)))
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".topic." in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    model.save_adapter(str(out / "tasks" / "topic"), "topic", with_head=True, use_safetensors=True)

    (out / "eval" / "topic").mkdir(parents=True, exist_ok=True)
    for code, texts in TEXTS.items():
        with open(out / "eval" / "topic" / f"{code}.jsonl", "w", encoding="utf-8") as f:
            for j, (text, label) in enumerate(zip(texts, TEXT_LABELS)):
                split = "dev" if j % 2 == 0 else "test"
                f.write(json.dumps({"text": text, "label": LABELS[label], "split": split},
                                   ensure_ascii=False) + "\n")

    spans = _tagging_task(model, out, seed)
    manifest = {
        "format": 1,
        "name": "tiny-test-bundle",
        "description": "Generated random-weight bundle for tests; predictions mean nothing.",
        "base": {"path": "base"},
        "tokenizer": "tokenizer",
        "mlm_head": "heads/mlm",
        "adapter_init": "adapters/_init",
        "task_language": "en",
        "languages": [
            {"code": code, "name": name, "family": family,
             "adapter": f"adapters/{code}" if has else None, "source": source,
             "examples": TEXTS[code][:3]}
            for code, name, family, has, source in LANGS
        ],
        "tasks": [{"name": "topic", "title": "Help paragraph → application", "kind": "classification",
                   "adapter": "tasks/topic", "labels": list(LABELS), "eval": "eval/topic"},
                  spans],
    }
    if precompute:
        manifest["results"] = "results/results.json"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    if precompute:
        _precompute(out)
    return out


def _precompute(out: Path) -> None:
    """The ``evaluate`` stage in miniature: pt (zero-shot, B = es) and es (enhancement, B = en)."""
    from ..model import LanguageStack
    from ..results import evaluate_target, write_target

    stack = LanguageStack(out, device="cpu")
    results: dict = {"task": "topic", "lambdas": [0.0, 0.5, 1.0], "mlm_lambdas": [0.0, 0.5, 1.0]}
    for setting, target, source in (("zero_shot", "pt", "es"), ("enhancement", "es", "en")):
        computed = evaluate_target(stack, target, source, [0.0, 0.5, 1.0], [0.0, 0.5, 1.0],
                                   TEXTS[target], "topic")
        write_target(out, results, setting, target, computed)
    (out / "results" / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    from .. import head_entropy

    head_entropy.build(LanguageStack(out, device="cpu"))  # the entropy λ rule's unlabelled inputs


if __name__ == "__main__":
    print(build_tiny_bundle(sys.argv[1] if len(sys.argv) > 1 else "tiny-bundle"))
