"""The embedded bundle's fixed choices, shared by every build stage (``build``, ``tagging``,
``lowres``): the task, the languages and their related partners, the λ grids and eval sizes.

A leaf module: it imports only ``corpus`` (the zero-shot targets' partners), so the stages can
all read it without importing each other.
"""

from __future__ import annotations

from . import corpus as corpus_mod

TASK = "libreoffice"
TASK_TITLE = "LibreOffice help paragraph → application"
LANG_INFO = {  # code: (name, family)
    "en": ("English", "Germanic"), "de": ("German", "Germanic"), "nl": ("Dutch", "Germanic"),
    "da": ("Danish", "Germanic"), "sv": ("Swedish", "Germanic"), "es": ("Spanish", "Romance"),
    "fr": ("French", "Romance"), "it": ("Italian", "Romance"), "ru": ("Russian", "Slavic"),
    "pl": ("Polish", "Slavic"), "cs": ("Czech", "Slavic"), "pt": ("Portuguese", "Romance"),
    "pt-br": ("Brazilian Portuguese", "Romance"), "gl": ("Galician", "Romance"),
    "ca": ("Catalan", "Romance"), "sl": ("Slovenian", "Slavic"),
}
# Related adapter language for each language: zero-shot targets (corpus.RELATED) and, for the
# paper's enhancement setting, every adapter language.
RELATED = {**corpus_mod.RELATED, "en": "de", "de": "nl", "nl": "de", "da": "sv", "sv": "da",
           "es": "it", "it": "es", "fr": "es", "ru": "pl", "pl": "cs", "cs": "pl"}
ENHANCEMENT = ["es", "nl", "sv", "pl", "ru"]  # adapter languages also evaluated merged
LAMBDAS = [round(i / 10, 1) for i in range(11)]  # the sweep grid: λ chosen on dev, test reported
MLM_LAMBDAS = [round(i / 20, 2) for i in range(21)]  # the held-out masked-LM curve's grid
FULL_EVAL = 500  # dev and test items per language: evaluated by the build and shipped (CPU time)
MLM_HELDOUT = 40  # held-out paragraphs per language for the masked-LM curve (two halves of 20)
QUICK_ADAPTER_LANGS = ["en", "es", "de"]  # --quick: three adapter languages, one target
QUICK_TARGETS = ["pt"]
