"""Tiny stand-ins for the Hugging Face Hub repositories that the hub profiles name.

``build_hub_cache(cache)`` writes a Hugging Face cache (``HF_HUB_CACHE`` layout:
``models--Org--Name/{refs/main, snapshots/<commit>/...}``) holding, for the *real* repo ids of the
catalogue, random tiny models with the file layout and config fields of the real repositories:

- ``google-bert/bert-base-multilingual-cased``: config (``architectures: [BertForMaskedLM]``),
  ``model.safetensors`` with the MLM head, ``vocab.txt``/``tokenizer.json``/``tokenizer_config.json``.
- ``FacebookAI/xlm-roberta-base``: config (``XLMRobertaForMaskedLM``), ``model.safetensors``,
  ``tokenizer.json`` only (no tokenizer_config.json, as on the Hub).
- ``AdapterHub/bert-base-multilingual-cased-<l>-wiki_pfeiffer``: legacy (adapter-transformers)
  ``adapter_config.json`` — gelu, reduction 2, ``inv_adapter: nice`` — and ``pytorch_adapter.bin``
  with the legacy key names (``layer_text_lang_adapters``, ``invertible_lang_adapters``).
- ``AdapterHub/xlm-roberta-base-<l>-wiki_pfeiffer``: relu, reduction 2, nice; current key names.
- ``AdapterHub/bert-base-multilingual-cased_wikiann_ner_en_pfeiffer``: task adapter (gelu,
  reduction 16, no invertible adapter), ``head_config.json`` of the real repo (tagging, 7 labels,
  label ``"0"`` for outside) and ``pytorch_model_head.bin``.
- ``AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-wiki``: M2QA's domain adapter (MAD-X+Domain),
  written by ``adapters`` itself (current config format, bottleneck, no invertible adapter, no head).
- ``AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-qa-head``: M2QA's QA adapter with its
  ``question_answering`` head (``head_config.json`` + ``pytorch_model_head.bin``), stacked as
  ``Stack(language, domain, qa)``.

Twelve layers (so ``leave_out=[11]`` really drops a layer), hidden size 32: a few MB in all.

    python tests/hub_fixtures.py OUT_DIR   # then HF_HUB_OFFLINE=1 HF_HUB_CACHE=OUT_DIR ...
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

MBERT = "google-bert/bert-base-multilingual-cased"
XLMR = "FacebookAI/xlm-roberta-base"
MBERT_LANG = "AdapterHub/bert-base-multilingual-cased-{}-wiki_pfeiffer"
XLMR_LANG = "AdapterHub/xlm-roberta-base-{}-wiki_pfeiffer"
NER = "AdapterHub/bert-base-multilingual-cased_wikiann_ner_en_pfeiffer"
M2QA_DOMAIN = "AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-wiki"
M2QA_QA = "AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-qa-head"
WIKIANN = {"0": 0, "B-PER": 1, "I-PER": 2, "B-ORG": 3, "I-ORG": 4, "B-LOC": 5, "I-LOC": 6}

WORDS = ("Angela Merkel met Emmanuel Macron in Paris on Tuesday . The United Nations has its "
         "headquarters New York City traf am Dienstag Die Vereinten haben ihren Sitz Halldór Laxness "
         "fæddist í Reykjavík árið 1902 Lisboa nasceu em Fernando Pessoa").split()
HIDDEN, LAYERS = 32, 12


def legacy_adapter_config(name: str, model_name: str, model_type: str, *, non_linearity: str,
                          reduction_factor: int, inv: bool, model_class: str) -> dict:
    """``adapter_config.json`` as adapter-transformers 3.x wrote it (the Hub's AdapterHub repos)."""
    return {
        "config": {
            "adapter_residual_before_ln": False, "cross_adapter": False, "factorized_phm_W": True,
            "factorized_phm_rule": False, "hypercomplex_nonlinearity": "glorot-uniform",
            "init_weights": "bert", "inv_adapter": "nice" if inv else None,
            "inv_adapter_reduction_factor": 2 if inv else None, "is_parallel": False,
            "learn_phm": True, "leave_out": [], "ln_after": False, "ln_before": False,
            "mh_adapter": False, "non_linearity": non_linearity, "original_ln_after": True,
            "original_ln_before": True, "output_adapter": True, "phm_bias": True,
            "phm_c_init": "normal", "phm_dim": 4, "phm_init_range": 0.0001, "phm_layer": False,
            "phm_rank": 1, "reduction_factor": reduction_factor, "residual_before_ln": True,
            "scaling": 1.0, "shared_W_phm": False, "shared_phm_rule": True, "use_gating": False,
        },
        "hidden_size": 768,
        "model_class": model_class,
        "model_name": model_name,
        "model_type": model_type,
        "name": name,
        "version": "3.2.1",
    }


def _snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in an HF cache, with refs/main pointing at it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _randomise(model, marker: str, seed: int, scale: float = 0.3) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if marker in name:
                p.add_(scale * torch.randn(p.shape, generator=gen))


def _mbert_base(snap: Path) -> None:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + sorted(set(WORDS)) + ["##s", "##en"]
    (snap / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(snap / "vocab.txt"), do_lower_case=False,
                            tokenize_chinese_chars=True, strip_accents=None)
    tok.save_pretrained(str(snap))
    (snap / "special_tokens_map.json").unlink(missing_ok=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                     num_attention_heads=2, intermediate_size=2 * HIDDEN, max_position_embeddings=64)
    BertForMaskedLM(cfg).save_pretrained(str(snap), safe_serialization=True)


def _xlmr_base(snap: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(WORDS)) + ["<mask>"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    for t in specials + ["<mask>"]:
        tok.add_special_tokens([t])
    tok.save(str(snap / "tokenizer.json"))
    torch.manual_seed(1)
    cfg = XLMRobertaConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                           num_attention_heads=2, intermediate_size=2 * HIDDEN,
                           max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    XLMRobertaForMaskedLM(cfg).save_pretrained(str(snap), safe_serialization=True)


def write_language_adapter(model, out: Path, code: str, *, model_name: str, model_type: str,
                           model_class: str, non_linearity: str, seed: int, legacy_keys: bool,
                           reduction_factor: int = 2) -> None:
    """One MAD-X language adapter in the Hub repos' layout: legacy config + pytorch_adapter.bin."""
    from adapters import SeqBnInvConfig

    torch.manual_seed(1234)  # one shared init, as for the paper's adapters
    model.add_adapter(code, config=SeqBnInvConfig(reduction_factor=reduction_factor,
                                                  non_linearity=non_linearity))
    _randomise(model, f".{code}.", seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(out), code, with_head=False, use_safetensors=False)
    weights = torch.load(out / "pytorch_adapter.bin", weights_only=True)
    if legacy_keys:  # adapter-transformers 1.x/2.x names, renamed by ``adapters`` on load
        weights = {k.replace("output.adapters.", "output.layer_text_lang_adapters.")
                   .replace("invertible_adapters.", "invertible_lang_adapters."): v
                   for k, v in weights.items()}
    torch.save(weights, out / "pytorch_adapter.bin")
    cfg = legacy_adapter_config(code, model_name, model_type, non_linearity=non_linearity,
                                reduction_factor=reduction_factor, inv=True, model_class=model_class)
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    (out / "README.md").write_text(f"# Adapter `{code}` (tiny test stand-in)\n")
    model.delete_adapter(code)


def _ner_adapter(model, out: Path) -> None:
    from adapters import SeqBnConfig

    model.add_adapter("ner", config=SeqBnConfig(reduction_factor=16, non_linearity="gelu"))
    model.add_tagging_head("ner", num_labels=len(WIKIANN), id2label={v: k for k, v in WIKIANN.items()})
    _randomise(model, ".ner.", 77)
    model.save_adapter(str(out), "ner", with_head=True, use_safetensors=False)
    cfg = legacy_adapter_config("ner", "bert-base-multilingual-cased", "bert", non_linearity="gelu",
                                reduction_factor=16, inv=False, model_class="BertModelWithHeads")
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    head = {"config": {"activation_function": None, "dropout_prob": None, "head_type": "tagging",
                       "label2id": WIKIANN, "layers": 1, "num_labels": len(WIKIANN)},
            "hidden_size": 768, "model_class": "BertAdapterModel",
            "model_name": "bert-base-multilingual-cased", "model_type": "bert", "name": "ner",
            "version": "0.2.0"}
    (out / "head_config.json").write_text(json.dumps(head, indent=2, sort_keys=True))
    model.delete_adapter("ner")
    model.delete_head("ner")


def m2qa_adapters(model, domain_out: Path, qa_out: Path) -> None:
    """M2QA's MAD-X+Domain pair as ``adapters`` saves it: a domain adapter (no head) and the QA
    adapter with its ``question_answering`` head (start/end logits)."""
    from adapters import SeqBnConfig

    for name, out, seed in (("wiki", domain_out, 91), ("qa", qa_out, 92)):
        torch.manual_seed(seed)
        model.add_adapter(name, config=SeqBnConfig(reduction_factor=16, non_linearity="relu"))
        if name == "qa":
            model.add_qa_head("qa", num_labels=2, layers=1)
        _randomise(model, f".{name}.", seed, scale=0.5)
        out.mkdir(parents=True, exist_ok=True)
        model.save_adapter(str(out), name, with_head=name == "qa", use_safetensors=False)
        for f in ("adapter_config.json", "head_config.json"):  # as on the Hub: the model's id
            if (out / f).is_file():
                cfg = json.loads((out / f).read_text())
                cfg.update(model_name="xlm-roberta-base", hidden_size=768)
                (out / f).write_text(json.dumps(cfg, indent=2, sort_keys=True))
        (out / "README.md").write_text(f"# M2QA adapter `{name}` (tiny test stand-in)\n")
        model.delete_adapter(name)
        if name == "qa":
            model.delete_head("qa")


def build_hub_cache(cache: str | Path, mbert_langs=("en", "de", "is"), xlmr_langs=("en", "de"),
                    relu_mbert: tuple[str, ...] = (), m2qa: bool = True) -> Path:
    """Write the tiny stand-ins into the HF cache folder ``cache`` and return it.

    ``relu_mbert``: mBERT languages whose adapter is written with relu instead of gelu (a config
    mismatch the engine must refuse to merge). ``m2qa=False`` leaves out the M2QA adapters."""
    from adapters import AutoAdapterModel

    cache = Path(cache)
    _mbert_base(_snapshot(cache, MBERT))
    _xlmr_base(_snapshot(cache, XLMR))
    mbert = AutoAdapterModel.from_pretrained(str(_snapshot(cache, MBERT)))
    for i, code in enumerate(mbert_langs):
        write_language_adapter(mbert, _snapshot(cache, MBERT_LANG.format(code)), code,
                               model_name="bert-base-multilingual-cased", model_type="bert",
                               model_class="BertModelWithHeads", seed=10 + i, legacy_keys=True,
                               non_linearity="relu" if code in relu_mbert else "gelu")
    _ner_adapter(mbert, _snapshot(cache, NER))
    xlmr = AutoAdapterModel.from_pretrained(str(_snapshot(cache, XLMR)))
    for i, code in enumerate(xlmr_langs):
        write_language_adapter(xlmr, _snapshot(cache, XLMR_LANG.format(code)), code,
                               model_name="xlm-roberta-base", model_type="xlm-roberta",
                               model_class="XLMRobertaModelWithHeads", seed=30 + i,
                               legacy_keys=False, non_linearity="relu")
    if m2qa:
        m2qa_adapters(xlmr, _snapshot(cache, M2QA_DOMAIN), _snapshot(cache, M2QA_QA))
    return cache


if __name__ == "__main__":
    print(build_hub_cache(sys.argv[1] if len(sys.argv) > 1 else "hub-cache"))


def build_mismatched(cache: str | Path, out: str | Path) -> dict[str, Path]:
    """Local mBERT-shaped adapter folders whose configs differ from the hub ones (gelu, rf 2,
    nothing left out): relu, reduction factor 4, ``leave_out: [10]``. Needs ``build_hub_cache``."""
    from adapters import AutoAdapterModel

    out = Path(out)
    model = AutoAdapterModel.from_pretrained(str(_snapshot(Path(cache), MBERT)))
    kinds = {"relu": dict(non_linearity="relu"), "rf4": dict(non_linearity="gelu", reduction_factor=4),
             "lo10": dict(non_linearity="gelu")}
    folders = {}
    for i, (code, kw) in enumerate(kinds.items()):
        folders[code] = out / code
        write_language_adapter(model, folders[code], code, model_name="bert-base-multilingual-cased",
                               model_type="bert", model_class="BertModelWithHeads", seed=50 + i,
                               legacy_keys=False, **kw)
    cfg = json.loads((folders["lo10"] / "adapter_config.json").read_text())
    cfg["config"]["leave_out"] = [10]
    (folders["lo10"] / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    return folders
