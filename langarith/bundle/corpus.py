"""Offline multilingual corpus + labelled task from LibreOffice help (Debian packages).

Stdlib only. Two parts:

* :func:`fetch_debian_packages` downloads ``.deb`` files with ``apt-get download`` using a
  private apt state directory (the machine's own sources file is copied there at run time, so
  no archive host is ever written into the project) and extracts them with ``dpkg-deb -x``.
* :func:`build` turns ``libreoffice-help-<l>`` packages into

  - ``task.jsonl``: paragraph -> application (7 classes), aligned across languages by
    (help file, paragraph id), split 80/10/10 by a hash of the key (same split for every
    language);
  - ``mlm/<lang>.txt``: one paragraph per line for every adapter language, with every dev/test
    paragraph (in any language) removed;
  - ``stats.json`` and ``SOURCES.md``.

Run: ``python -m langarith.bundle.corpus --cache DIR --out DIR``.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

# --------------------------------------------------------------------------------------------
# Languages
# --------------------------------------------------------------------------------------------

#: Languages that get a MAD-X language adapter (MLM text is written for these).
DEFAULT_ADAPTER_LANGS: list[str] = [
    "en", "de", "nl", "da", "sv",  # Germanic
    "es", "fr", "it",              # Romance
    "ru", "pl", "cs",              # Slavic
]

#: Zero-shot targets: no adapter, only task evaluation text.
#: (Debian bookworm ships no help for uk, ro, hr, nb; ``sk`` is an empty stub.)
DEFAULT_TARGETS: list[str] = ["pt", "pt-br", "gl", "ca", "sl"]

#: Suggested related source adapter for each zero-shot target.
RELATED: dict[str, str] = {
    "pt": "es",
    "pt-br": "es",
    "gl": "es",
    "ca": "es",
    "sl": "cs",
}

#: The 7 application classes of the task (help module directory names).
CLASSES: list[str] = ["scalc", "swriter", "simpress", "sdraw", "smath", "schart", "sbasic"]
#: What a class calls each application: the page shows these; the codes stay in JSON, CLI and API.
CLASS_NAMES: dict[str, str] = {"scalc": "Calc", "swriter": "Writer", "simpress": "Impress", "sdraw": "Draw",
                               "smath": "Math", "schart": "Chart", "sbasic": "Basic"}

MIN_CHARS = 20
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, dev, test


def package_for(lang: str) -> str:
    """Debian package holding the help for a language code (``en`` -> ``libreoffice-help-en-us``)."""
    return "libreoffice-help-" + ("en-us" if lang == "en" else lang.lower())


_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _redact(text: str) -> str:
    """Remove URLs (archive hosts) from tool output before it is printed."""
    return _URL_RE.sub("<url>", text)


def _log(msg: str) -> None:
    print(f"[corpus] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# Fetching Debian packages
# --------------------------------------------------------------------------------------------

_SYSTEM_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def _apt_options(dest: Path) -> list[str]:
    state = dest / "apt"
    lists, cache, parts = state / "lists", state / "cache", state / "sources.list.d"
    for d in (lists / "partial", cache / "archives" / "partial", parts):
        d.mkdir(parents=True, exist_ok=True)
    src = parts / _SYSTEM_SOURCES.name
    if not src.exists():
        # Copied at run time from the machine's own configuration; never written by this code.
        shutil.copyfile(_SYSTEM_SOURCES, src)
    return [
        "-o", f"Dir::State::Lists={lists}",
        "-o", f"Dir::Cache={cache}",
        "-o", f"Dir::Etc::SourceParts={parts}",
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", "Acquire::Languages=none",
        "-q",
    ]


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = _redact((proc.stdout + proc.stderr)[-2000:])
        raise RuntimeError(f"command {cmd[0]} {cmd[1] if len(cmd) > 1 else ''} failed "
                           f"(rc={proc.returncode}):\n{tail}")
    return proc


def _find_deb(debs: Path, name: str) -> Path | None:
    hits = sorted(debs.glob(f"{name}_*.deb"))
    return hits[-1] if hits else None


def fetch_debian_packages(names: list[str], dest: Path) -> dict[str, Path]:
    """Download ``names`` with ``apt-get download`` and extract each into ``dest/root/<name>``.

    Resumable: an extracted package (marker file ``.extracted``) is not touched again, a
    downloaded ``.deb`` is not downloaded again, and ``apt-get update`` runs only while the
    private lists directory holds no package index. Returns name -> extraction root.
    """
    dest = Path(dest)
    debs, roots = dest / "debs", dest / "root"
    roots.mkdir(parents=True, exist_ok=True)
    debs.mkdir(parents=True, exist_ok=True)
    os.chmod(debs, 0o777)  # apt's sandbox user must be able to write the download

    result: dict[str, Path] = {}
    todo = [n for n in names if not (roots / n / ".extracted").exists()]
    for n in names:
        if n not in todo:
            result[n] = roots / n
    if not todo:
        _log(f"all {len(names)} packages already extracted")
        return result

    opts = _apt_options(dest)
    missing = [n for n in todo if _find_deb(debs, n) is None]
    if missing:
        lists = dest / "apt" / "lists"
        if not any(lists.glob("*Packages*")):
            _log("apt-get update (private state dir)")
            t = time.time()
            _run(["apt-get", *opts, "update"])
            _log(f"apt-get update done in {time.time() - t:.1f}s")
        _log(f"downloading {len(missing)} packages: {' '.join(missing)}")
        t = time.time()
        _run(["apt-get", *opts, "download", *missing], cwd=debs)
        _log(f"download done in {time.time() - t:.1f}s")

    for n in todo:
        deb = _find_deb(debs, n)
        if deb is None:
            raise RuntimeError(f"package {n} was not downloaded")
        target = roots / n
        tmp = roots / f".{n}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.mkdir()
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        (tmp / ".extracted").write_text(deb.name + "\n")
        tmp.rename(target)
        _log(f"extracted {deb.name} ({deb.stat().st_size / 1e6:.1f} MB)")
        result[n] = target
    return result


def deb_version(debs: Path, name: str) -> str:
    deb = _find_deb(Path(debs), name)
    if deb is None:
        return "?"
    return _run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()


# --------------------------------------------------------------------------------------------
# Parsing LibreOffice help HTML
# --------------------------------------------------------------------------------------------

_BLOCK_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6"}
_SKIP_TAGS = {"script", "style", "head", "title"}


class HelpParagraphParser(HTMLParser):
    """Collects the text of every ``<p id=..>`` / ``<h* id=..>`` in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[tuple[str, str]] = []
        self._stack: list[tuple[str, str | None, list[str]]] = []  # (tag, id, parts)
        self._skip = 0
        self._spans: list[bool] = []  # per open <span>: does it hide its content?

    def handle_starttag(self, tag, attrs):
        if tag == "span":
            # Switch variants (<span hidden class="MAC|WIN|UNIX|CALC|WRITER|...">) are shown by
            # script only on that system/application; keep the default variant (hidden, no class)
            a = dict(attrs)
            hide = "hidden" in a and bool(a.get("class"))
            self._spans.append(hide)
            if hide:
                self._skip += 1
        elif tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self._stack.append((tag, dict(attrs).get("id"), []))
        elif tag == "br" and self._stack:
            self._stack[-1][2].append(" ")

    def handle_startendtag(self, tag, attrs):
        if tag == "br" and self._stack:
            self._stack[-1][2].append(" ")

    def handle_endtag(self, tag):
        if tag == "span":
            if self._spans and self._spans.pop():
                self._skip = max(0, self._skip - 1)
        elif tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS and self._stack:
            # close up to the matching tag (tolerates sloppy nesting)
            for i in range(len(self._stack) - 1, -1, -1):
                if self._stack[i][0] == tag:
                    break
            else:
                return
            while len(self._stack) > i:
                t, pid, parts = self._stack.pop()
                if pid:
                    self.items.append((pid, "".join(parts)))
                if self._stack:  # nested block text also belongs to the parent
                    self._stack[-1][2].extend(parts)

    def handle_data(self, data):
        if not self._skip and self._stack:
            self._stack[-1][2].append(data)

    def close(self):
        super().close()
        while self._stack:
            t, pid, parts = self._stack.pop()
            if pid:
                self.items.append((pid, "".join(parts)))


def _norm(text: str) -> str:
    return " ".join(text.split())


def parse_help(root: Path, lang_dir: str) -> dict[str, tuple[str, str]]:
    """Parse ``root/usr/share/libreoffice/help/<lang_dir>/text``.

    Returns ``"<module>/<relpath>#<id>" -> (module, text)``; whitespace normalised, paragraphs
    shorter than 20 characters dropped; the first paragraph wins if an id repeats in a file.
    """
    base = Path(root) / "usr/share/libreoffice/help" / lang_dir / "text"
    out: dict[str, tuple[str, str]] = {}
    if not base.is_dir():
        return out
    for path in sorted(base.rglob("*.html")):
        rel = path.relative_to(base)
        module = rel.parts[0]
        relpath = "/".join(rel.parts[1:])
        parser = HelpParagraphParser()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        parser.close()
        for pid, raw in parser.items:
            text = _norm(raw)
            if len(text) < MIN_CHARS:
                continue
            key = f"{module}/{relpath}#{pid}"
            if key not in out:
                out[key] = (module, text)
    return out


def help_language_dir(root: Path, lang: str) -> str:
    """The language directory inside an extracted help package (e.g. ``en-US``, ``pt-BR``).

    Some packages carry variants (``libreoffice-help-ca`` has ``ca`` and ``ca-valencia``): the
    directory named like the language code wins.
    """
    base = Path(root) / "usr/share/libreoffice/help"
    dirs = sorted(d.name for d in base.iterdir() if d.is_dir() and (d / "text").is_dir()) \
        if base.is_dir() else []
    want = "en-us" if lang == "en" else lang.lower()
    exact = [d for d in dirs if d.lower() == want]
    if exact:
        return exact[0]
    if len(dirs) != 1:
        raise RuntimeError(f"expected one help language directory in {base}, found {dirs}")
    return dirs[0]


def _parsed_cached(cache: Path, lang: str, root: Path) -> dict[str, tuple[str, str]]:
    cfile = cache / "parsed" / f"{lang}.json.gz"
    if cfile.exists():
        with gzip.open(cfile, "rt", encoding="utf-8") as f:
            return {k: tuple(v) for k, v in json.load(f).items()}
    lang_dir = help_language_dir(root, lang)
    t = time.time()
    data = parse_help(root, lang_dir)
    _log(f"parsed {lang} ({lang_dir}): {len(data)} paragraphs in {time.time() - t:.1f}s")
    if not data:
        raise RuntimeError(f"no help paragraphs for {lang} in {root} (empty stub package?)")
    cfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfile.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    tmp.rename(cfile)
    return data


# --------------------------------------------------------------------------------------------
# Building the bundle
# --------------------------------------------------------------------------------------------

def split_of(key: str, seed: int = 0) -> str:
    """Deterministic 80/10/10 split by a hash of the item key (identical for every language)."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
    if h < SPLIT_FRACTIONS[0]:
        return "train"
    if h < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]:
        return "dev"
    return "test"


def _outputs(out: Path, adapter_langs: list[str]) -> list[Path]:
    return ([out / "task.jsonl", out / "stats.json", out / "SOURCES.md"]
            + [out / "mlm" / f"{l}.txt" for l in adapter_langs])


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(path)


def build(cache: Path, out: Path, adapter_langs: list[str], target_langs: list[str],
          seed: int = 0) -> dict:
    """Fetch the help packages into ``cache``, parse them and write the bundle into ``out``.

    Returns the stats dictionary (also written to ``out/stats.json``). Skips everything if all
    outputs exist already; parsed packages are cached in ``cache/parsed``.
    """
    cache, out = Path(cache), Path(out)
    langs = list(dict.fromkeys(["en", *adapter_langs, *target_langs]))
    if all(p.exists() for p in _outputs(out, adapter_langs)):
        _log(f"outputs exist in {out}; nothing to do")
        return json.loads((out / "stats.json").read_text(encoding="utf-8"))

    t0 = time.time()
    pkgs = {l: package_for(l) for l in langs}
    roots = fetch_debian_packages(list(pkgs.values()), cache)
    t_fetch = time.time() - t0
    parsed = {l: _parsed_cached(cache, l, roots[pkgs[l]]) for l in langs}
    en = parsed["en"]
    en_texts = {text for _, text in en.values()}

    # Per language: key -> text, with English fallbacks dropped (same key, same text).
    trans: dict[str, dict[str, str]] = {}
    for l in langs:
        if l == "en":
            trans[l] = {k: t for k, (_, t) in en.items()}
        else:
            trans[l] = {k: t for k, (_, t) in parsed[l].items()
                        if k not in en or en[k][1] != t}

    # ---- task items: 7 classes, deduplicated by English text -----------------------------
    by_text: dict[str, list[str]] = {}
    for k, (mod, t) in en.items():
        if mod in CLASSES:
            by_text.setdefault(t, []).append(k)
    items = []
    ambiguous = 0
    for t, keys in by_text.items():
        mods = {en[k][0] for k in keys}
        if len(mods) > 1:  # same text under different applications: label is ambiguous
            ambiguous += 1
            continue
        # prefer the key with the most translations, then the smallest key
        keys.sort(key=lambda k: (-sum(k in trans[l] for l in langs), k))
        items.append(keys[0])
    items.sort()
    _log(f"task: {len(items)} items after dedup ({ambiguous} English texts dropped as "
         f"ambiguous across classes)")

    held_keys: set[str] = set()  # keys whose text must never appear in MLM
    held_en: set[str] = set()
    records = []
    for k in items:
        split = split_of(k, seed)
        text = {"en": en[k][1]}
        for l in langs:
            if l != "en" and k in trans[l]:
                text[l] = trans[l][k]
        records.append({"key": k, "label": en[k][0], "split": split, "text": text})
        if split != "train":
            held_keys.add(k)
            held_en.add(en[k][1])
    # every key (any module) whose English text equals a held-out item's text is held out too
    for k, (_, t) in en.items():
        if t in held_en:
            held_keys.add(k)
    held_text: set[str] = set()  # every held-out text, in any language
    for r in records:
        if r["split"] != "train":
            held_text.update(r["text"].values())
    for k in held_keys:
        for l in langs:
            if k in trans[l]:
                held_text.add(trans[l][k])

    out.mkdir(parents=True, exist_ok=True)
    (out / "mlm").mkdir(exist_ok=True)
    _write_text(out / "task.jsonl",
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    # ---- MLM text -------------------------------------------------------------------------
    mlm_stats = {}
    for l in adapter_langs:
        seen: set[str] = set()
        lines = []
        for k in sorted(trans[l]):
            t = trans[l][k]
            if k in held_keys or t in held_text or t in seen:
                continue
            if l != "en" and t in en_texts:  # untranslated (English) text under another id
                continue
            seen.add(t)
            lines.append(t)
        _write_text(out / "mlm" / f"{l}.txt", "".join(x + "\n" for x in lines))
        mlm_stats[l] = {"paragraphs": len(lines), "chars": sum(len(x) for x in lines)}

    # ---- stats ------------------------------------------------------------------------------
    per_lang = {}
    for l in langs:
        splits = {"train": 0, "dev": 0, "test": 0}
        for r in records:
            if l in r["text"]:
                splits[r["split"]] += 1
        per_lang[l] = {
            "role": "adapter" if l in adapter_langs else "target",
            "package": pkgs[l],
            "help_paragraphs": len(parsed[l]),
            "translated_paragraphs": len(trans[l]),
            "mlm_paragraphs": mlm_stats.get(l, {}).get("paragraphs", 0),
            "mlm_chars": mlm_stats.get(l, {}).get("chars", 0),
            "task_items": splits,
        }
        if l in RELATED:
            per_lang[l]["related"] = RELATED[l]
    per_class = {c: {"train": 0, "dev": 0, "test": 0} for c in CLASSES}
    for r in records:
        per_class[r["label"]][r["split"]] += 1
    stats = {
        "seed": seed,
        "split_fractions": list(SPLIT_FRACTIONS),
        "n_items": len(records),
        "ambiguous_dropped": ambiguous,
        "languages": per_lang,
        "classes": per_class,
        "fetch_seconds": round(t_fetch, 1),
        "build_seconds": round(time.time() - t0, 1),
    }
    _write_text(out / "stats.json", json.dumps(stats, indent=2, ensure_ascii=False) + "\n")

    # ---- sources / attribution -----------------------------------------------------------------
    rows = "\n".join(f"| {l} | `{pkgs[l]}` | {deb_version(cache / 'debs', pkgs[l])} |"
                     for l in langs)
    _write_text(out / "SOURCES.md", f"""# Sources of the language-arithmetic text bundle

All text comes from the LibreOffice help, as packaged by Debian (bookworm) in the
`libreoffice-help-<lang>` packages. Fetched with `apt-get download` and unpacked with
`dpkg-deb -x` at build time; the raw packages are not redistributed here.

Licence: **MPL-2.0** (Mozilla Public License 2.0), the licence of the LibreOffice help content.

Attribution: LibreOffice Help, Copyright (c) The Document Foundation and the LibreOffice
contributors and translators; https://www.libreoffice.org/ . Modified: paragraphs extracted
from the HTML, whitespace-normalised, untranslated (English fallback) and short paragraphs
removed, split into MLM text and a paragraph -> application classification task.

| language | package | version |
|---|---|---|
{rows}
""")
    _log(f"build done in {time.time() - t0:.1f}s (fetch {t_fetch:.1f}s): {len(records)} task "
         f"items, outputs in {out}")
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, required=True, help="download/extraction cache dir")
    ap.add_argument("--out", type=Path, required=True, help="output dir of the bundle")
    ap.add_argument("--adapter-langs", nargs="+", default=DEFAULT_ADAPTER_LANGS)
    ap.add_argument("--targets", nargs="+", default=DEFAULT_TARGETS)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    build(a.cache, a.out, a.adapter_langs, a.targets, seed=a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
