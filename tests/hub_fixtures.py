"""Tiny stand-ins for the Hugging Face Hub repositories and data sets that the hub profiles name.

Built from the verbatim Hub files in ``tests/hub_verbatim/`` (``test_hub_fixtures.py`` compares
every config field with them). ``build_hub_cache(cache)`` writes a Hugging Face cache
(``models--Org--Name/{refs/main, snapshots/<commit>/...}``) holding, under the *real* repo ids:

- ``google-bert/bert-base-multilingual-cased`` and ``FacebookAI/xlm-roberta-base``: tiny random
  ``*ForMaskedLM`` checkpoints with their tokenizer files (XLM-R: ``tokenizer.json`` only).
- mBERT language adapters, first pattern (``...-<l>-wiki_pfeiffer``): the config as ``adapters``
  0.2.0 re-saved it (``version`` 0.2.0, ``model_class`` BertAdapterModel, ``gelu_new``, ``dropout``),
  ``pytorch_adapter.bin``; de also holds the macOS junk ``._adapter_config.json`` and ``.DS_Store``.
- mBERT second pattern (``..._<l>_wiki_pfeiffer``): the same adapter files plus the masked-LM
  ``head_config.json`` (verbatim) and a ``pytorch_model_head.bin`` stand-in for the 370 MB head.
- the WikiANN NER task adapter: reduction 16, ``leave_out: [11]``, no invertible adapter, and the
  verbatim tagging ``head_config.json`` (label ``"0"`` for outside) with ``pytorch_model_head.bin``.
- XLM-R language adapters (relu, NICE; no verbatim config exists: assumed like mBERT's).
- M2QA domain and QA adapters: reduction factor 2, relu, saved by adapter-transformers 3.2.1,
  the QA head's verbatim ``head_config.json``.

``build_dataset_cache(cache, wikiann=..., xquad=...)`` writes WikiANN and XQuAD parquet files in
the Hub's layout and column types (``datasets--...`` folders of the same cache).

Twelve layers (so ``leave_out=[11]`` really drops a layer), hidden size 32: a few MB in all.

    python tests/hub_fixtures.py OUT_DIR   # then HF_HUB_OFFLINE=1 HF_HUB_CACHE=OUT_DIR ...
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import sys
from pathlib import Path

import torch

VERBATIM = Path(__file__).resolve().parent / "hub_verbatim"
MBERT = "google-bert/bert-base-multilingual-cased"
XLMR = "FacebookAI/xlm-roberta-base"
MBERT_LANG = "AdapterHub/bert-base-multilingual-cased-{}-wiki_pfeiffer"
MBERT_LANG2 = "AdapterHub/bert-base-multilingual-cased_{}_wiki_pfeiffer"
XLMR_LANG = "AdapterHub/xlm-roberta-base-{}-wiki_pfeiffer"
NER = "AdapterHub/bert-base-multilingual-cased_wikiann_ner_en_pfeiffer"
M2QA_DOMAIN = "AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-wiki"
M2QA_QA = "AdapterHub/m2qa-xlm-roberta-base-mad-x-domain-qa-head"
WIKIANN_REPO = "unimelb-nlp/wikiann"
XQUAD_REPO = "google/xquad"
WIKIANN_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]

HOULSBY = "AdapterHub__bert-base-multilingual-cased-en-wiki_houlsby.adapter_config.json"
NER_ORIGINAL = ("AdapterHub__bert-base-multilingual-cased_wikiann_ner_ar_pfeiffer"
                ".ORIGINAL_v1_extracted_adapter_config.json")
NER_HEAD = "AdapterHub__bert-base-multilingual-cased_wikiann_ner_zh_pfeiffer.head_config.json"
MLM_HEAD = "AdapterHub__bert-base-multilingual-cased_pt_wiki_pfeiffer.head_config.json"
QA_HEAD = "AdapterHub__m2qa-xlm-roberta-base-mad-x-domain-qa-head.head_config.json"

WORDS = ("Angela Merkel met Emmanuel Macron in Paris on Tuesday . The United Nations has its "
         "headquarters New York City traf am Dienstag Die Vereinten haben ihren Sitz Halldór Laxness "
         "fæddist í Reykjavík árið 1902 Lisboa nasceu em Fernando Pessoa").split()
HIDDEN, LAYERS = 32, 12
# Pfeiffer differs from the verbatim Houlsby sibling in these two fields (hub/README.md).
PFEIFFER = {"mh_adapter": False, "original_ln_before": True}


def verbatim(name: str) -> dict:
    return json.loads((VERBATIM / name).read_text(encoding="utf-8"))


def language_config(code: str, *, model: str = "mbert", non_linearity: str | None = None,
                    reduction_factor: int = 2, inv: bool = True) -> dict:
    """A language adapter's ``adapter_config.json`` as the Hub holds it: the verbatim 0.2.0 file
    of the Houlsby sibling with Pfeiffer's two fields (XLM-R: its model ids, relu)."""
    cfg = verbatim(HOULSBY)
    cfg["config"].update(PFEIFFER, reduction_factor=reduction_factor)
    if not inv:
        cfg["config"].update(inv_adapter=None, inv_adapter_reduction_factor=None)
    if model == "xlmr":
        cfg.update(model_class="XLMRobertaAdapterModel", model_name="xlm-roberta-base",
                   model_type="xlm-roberta")
        cfg["config"]["non_linearity"] = "relu"
    if non_linearity:
        cfg["config"]["non_linearity"] = non_linearity
    cfg["name"] = code
    return cfg


def ner_config() -> dict:
    """The NER task adapter as ``adapters`` 0.2.0 re-saved the original: its Pfeiffer fields and
    ``leave_out: [11]``, gelu renamed gelu_new, the unused invertible adapter dropped."""
    orig = verbatim(NER_ORIGINAL)["config"]
    cfg = language_config("ner", reduction_factor=orig["reduction_factor"], inv=False)
    cfg["config"]["leave_out"] = list(orig["leave_out"])
    return cfg


def m2qa_config(name: str) -> dict:
    """M2QA's ``PfeifferConfig(reduction_factor=2)`` as adapter-transformers 3.2.1 saved it
    (no verbatim copy exists: the 3.x field set without ``dropout``, the QA head's ids)."""
    cfg = language_config(name, model="xlmr", inv=False)
    cfg["config"].pop("dropout")
    cfg["version"] = verbatim(QA_HEAD)["version"]
    return cfg


def _snapshot(cache: Path, repo_id: str, kind: str = "models") -> Path:
    """The snapshot folder of ``repo_id`` in an HF cache, with refs/main pointing at it."""
    repo = cache / (f"{kind}--" + repo_id.replace("/", "--"))
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


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True))


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


def _library_config(cfg: dict):
    """The ``adapters`` config object that builds tensors of the shapes ``cfg`` describes."""
    from adapters import SeqBnConfig, SeqBnInvConfig

    c = cfg["config"]
    kw = dict(reduction_factor=c["reduction_factor"], non_linearity=c["non_linearity"],
              leave_out=list(c["leave_out"]))
    return SeqBnInvConfig(**kw) if c.get("inv_adapter") else SeqBnConfig(**kw)


def write_adapter(model, out: Path, cfg: dict, *, seed: int, head: dict | None = None,
                  junk: bool = False) -> None:
    """One adapter repo: weights saved by ``adapters`` (``pytorch_adapter.bin``), then the Hub's
    ``adapter_config.json`` (and ``head_config.json``) written over the library's own."""
    code = cfg["name"]
    torch.manual_seed(1234)  # one shared init, as for the paper's adapters
    model.add_adapter(code, config=_library_config(cfg))
    _randomise(model, f".{code}.", seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(out), code, with_head=False, use_safetensors=False)
    _write_json(out / "adapter_config.json", cfg)
    if head is not None:  # the masked-LM head of the second pattern: a stand-in, never loaded
        _write_json(out / "head_config.json", head)
        torch.save({"heads.default.0.weight": torch.zeros(2, 2)}, out / "pytorch_model_head.bin")
    if junk:  # macOS AppleDouble files that some Hub repos hold
        (out / "._adapter_config.json").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
        (out / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (out / "README.md").write_text(f"# Adapter `{code}` (tiny test stand-in)\n")
    model.delete_adapter(code)


def _with_head(model, out: Path, cfg: dict, head_cfg: dict, add_head, seed: int) -> None:
    """A task adapter with its prediction head: weights from ``adapters``, configs from the Hub."""
    name = cfg["name"]
    torch.manual_seed(seed)
    model.add_adapter(name, config=_library_config(cfg))
    add_head(name)
    _randomise(model, f".{name}.", seed, scale=0.5)
    out.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(out), name, with_head=True, use_safetensors=False)
    _write_json(out / "adapter_config.json", cfg)
    _write_json(out / "head_config.json", head_cfg)
    model.delete_adapter(name)
    model.delete_head(name)


def _ner_adapter(model, out: Path) -> None:
    head = verbatim(NER_HEAD)
    id2label = {v: k for k, v in head["config"]["label2id"].items()}
    _with_head(model, out, ner_config(), head,
               lambda n: model.add_tagging_head(n, num_labels=len(id2label), id2label=id2label), 77)


def m2qa_adapters(model, domain_out: Path, qa_out: Path) -> None:
    """M2QA's MAD-X+Domain pair: a domain adapter (no head) and the QA adapter with its
    ``question_answering`` head (start/end logits)."""
    write_adapter(model, domain_out, m2qa_config("wiki"), seed=91)
    head = verbatim(QA_HEAD)
    qa = m2qa_config(head["name"])
    _with_head(model, qa_out, qa, head, lambda n: model.add_qa_head(n, num_labels=2, layers=1), 92)


def build_hub_cache(cache: str | Path, mbert_langs=("en", "de", "is"), xlmr_langs=("en", "de"),
                    relu_mbert: tuple[str, ...] = (), m2qa: bool = True,
                    mbert_second=("pt", "tr", "am"), noinv_second: tuple[str, ...] = ()) -> Path:
    """Write the tiny stand-ins into the HF cache folder ``cache`` and return it.

    ``relu_mbert``: first-pattern languages written with relu (a mismatch the engine refuses).
    ``mbert_second``: second-pattern languages; am is reduction 16 and relu, as on the Hub;
    ``noinv_second`` are written without an invertible adapter. ``m2qa=False`` leaves M2QA out."""
    from adapters import AutoAdapterModel

    cache = Path(cache)
    _mbert_base(_snapshot(cache, MBERT))
    _xlmr_base(_snapshot(cache, XLMR))
    mbert = AutoAdapterModel.from_pretrained(str(_snapshot(cache, MBERT)))
    for i, code in enumerate(mbert_langs):
        cfg = language_config(code, non_linearity="relu" if code in relu_mbert else None)
        write_adapter(mbert, _snapshot(cache, MBERT_LANG.format(code)), cfg, seed=10 + i,
                      junk=code == "de")
    for i, code in enumerate(mbert_second):
        odd = code in ("am", "ka")  # reduction 16, relu (hub/README.md)
        cfg = language_config(code, non_linearity="relu" if odd else None,
                              reduction_factor=16 if odd else 2, inv=code not in noinv_second)
        head = verbatim(MLM_HEAD)
        head["name"] = code
        write_adapter(mbert, _snapshot(cache, MBERT_LANG2.format(code)), cfg, seed=20 + i,
                      head=head, junk=True)
    _ner_adapter(mbert, _snapshot(cache, NER))
    xlmr = AutoAdapterModel.from_pretrained(str(_snapshot(cache, XLMR)))
    for i, code in enumerate(xlmr_langs):
        write_adapter(xlmr, _snapshot(cache, XLMR_LANG.format(code)),
                      language_config(code, model="xlmr"), seed=30 + i)
    if m2qa:
        m2qa_adapters(xlmr, _snapshot(cache, M2QA_DOMAIN), _snapshot(cache, M2QA_QA))
    return cache


def build_mismatched(cache: str | Path, out: str | Path) -> dict[str, Path]:
    """Local mBERT-shaped adapter folders whose configs differ from the hub ones (gelu_new, rf 2,
    nothing left out): relu, reduction factor 4, ``leave_out: [10]``. Needs ``build_hub_cache``."""
    from adapters import AutoAdapterModel

    out = Path(out)
    model = AutoAdapterModel.from_pretrained(str(_snapshot(Path(cache), MBERT)))
    cfgs = {"relu": language_config("relu", non_linearity="relu"),
            "rf4": language_config("rf4", reduction_factor=4), "lo10": language_config("lo10")}
    cfgs["lo10"]["config"]["leave_out"] = [10]
    folders = {}
    for i, (code, cfg) in enumerate(cfgs.items()):
        folders[code] = out / code
        write_adapter(model, folders[code], cfg, seed=50 + i)
    return folders


# --- data sets in the Hub's parquet layout ------------------------------------------------------

ENTITIES = [(["Angela", "Merkel"], "PER"), (["Emmanuel", "Macron"], "PER"), (["Paris"], "LOC"),
            (["United", "Nations"], "ORG"), (["New", "York", "City"], "LOC"),
            (["Fernando", "Pessoa"], "PER"), (["Lisboa"], "LOC"), (["Reykjavík"], "LOC")]
FILLER = ["met", "in", "on", "Tuesday", "has", "its", "headquarters", "traf", "am", "nasceu", "em"]


def wikiann_rows(lang: str, n: int, seed: int) -> list[dict]:
    """``n`` sentences with WikiANN's columns: tokens, ner_tags (ids), langs, spans."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens, tags, spans = [], [], []
        for _ in range(rng.randint(1, 3)):
            words, kind = rng.choice(ENTITIES)
            tokens += words
            tags += [WIKIANN_TAGS.index(f"B-{kind}")] + [WIKIANN_TAGS.index(f"I-{kind}")] * (len(words) - 1)
            spans.append(f"{kind}: {' '.join(words)}")
            filler = rng.sample(FILLER, rng.randint(0, 2))
            tokens += filler
            tags += [0] * len(filler)
        rows.append({"tokens": tokens, "ner_tags": tags, "langs": [lang] * len(tokens), "spans": spans})
    return rows


def write_wikiann(cache: Path, lang: str, splits: dict[str, int], seed: int = 0) -> Path:
    """``<lang>/<split>-00000-of-00001.parquet`` with the Hub's column types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    snap = _snapshot(cache, WIKIANN_REPO, "datasets")
    schema = pa.schema([("tokens", pa.list_(pa.string())), ("ner_tags", pa.list_(pa.int64())),
                        ("langs", pa.list_(pa.string())), ("spans", pa.list_(pa.string()))])
    for i, (split, n) in enumerate(splits.items()):
        path = snap / lang / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(wikiann_rows(lang, n, seed * 10 + i), schema=schema), path)
    return snap


def xquad_rows(lang: str, n: int, seed: int) -> list[dict]:
    """``n`` questions with XQuAD's columns: id, context, question, answers{text, answer_start}."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ents = rng.sample(ENTITIES, 3)
        context = " ".join(" ".join(w) + " " + rng.choice(FILLER) for w, _ in ents)
        words, _ = ents[rng.randrange(3)]
        text = " ".join(words)
        rows.append({"id": f"{lang}-{i:04d}", "context": context, "question": f"{rng.choice(FILLER)} ?",
                     "answers": {"text": [text], "answer_start": [context.index(text)]}})
    return rows


def write_xquad(cache: Path, lang: str, n: int, seed: int = 0) -> Path:
    """``xquad.<lang>/validation-00000-of-00001.parquet`` (one split, as on the Hub)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    snap = _snapshot(cache, XQUAD_REPO, "datasets")
    answers = pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))])
    schema = pa.schema([("id", pa.string()), ("context", pa.string()), ("question", pa.string()),
                        ("answers", answers)])
    path = snap / f"xquad.{lang}" / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(xquad_rows(lang, n, seed), schema=schema), path)
    return snap


def build_dataset_cache(cache: str | Path, wikiann=None, xquad=None) -> Path:
    """WikiANN (``{lang: {split: n}}``) and XQuAD (``{lang: n}``) parquet files in ``cache``."""
    cache = Path(cache)
    for i, (lang, splits) in enumerate((wikiann or {}).items()):
        write_wikiann(cache, lang, splits, seed=i)
    for i, (lang, n) in enumerate((xquad or {}).items()):
        write_xquad(cache, lang, n, seed=100 + i)
    return cache


if __name__ == "__main__":
    print(build_hub_cache(sys.argv[1] if len(sys.argv) > 1 else "hub-cache"))
