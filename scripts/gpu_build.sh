#!/usr/bin/env bash
# The trained stages of the embedded bundle (head, adapters, task, evaluate) on a GPU machine that
# has PyTorch but no network, as the shipped bundle was built (one H200; see README "Building it").
#
# On a machine with network, first (CPU, minutes):
#   python -m langarith.bundle build --stages corpus,base            # WORK=~/.cache/langarith/build
#   bash scripts/gpu_build.sh prepare                                 # -> .carry/ and .whl/
# Then, on the GPU machine, in a copy of this repository with .carry/ and .whl/:
#   OUT=/some/folder bash scripts/gpu_build.sh run                    # -> $OUT/bundle.tar.part-*
# Back here: cat bundle.tar.part-* | tar xf - -C WORK, then
#   python -m langarith.bundle build --work WORK --stages package
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-${LANGARITH_CACHE:-$HOME/.cache/langarith}/build}
case "${1:-}" in
  prepare)
    mkdir -p .carry .whl
    cp "$WORK/carry/e5-small-pruned.q4" "$WORK/keep_ids.json" "$WORK/stages.json" .carry/
    (cd "$WORK/corpus" && tar czf - task.jsonl mlm SOURCES.md stats.json) > .carry/corpus.tgz
    # the GPU machine's Python may differ: wheels of the pinned stack for CPython 3.12, x86_64
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any -d .whl \
      transformers==4.57.6 adapters==1.3.0 tokenizers==0.22.2 huggingface_hub==0.36.2
    du -sh .carry .whl ;;
  run)
    : "${OUT:?set OUT to the folder that receives the results}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LANGARITH_CACHE=/tmp/c LANGARITH_EXPORT=$OUT
    W=/tmp/work; mkdir -p $W/corpus; tar xzf .carry/corpus.tgz -C $W/corpus; cp .carry/keep_ids.json $W/
    python3 -c "from langarith.encoder import build_base; from pathlib import Path; \
build_base(Path('/tmp/c'), None, Path('$W/base'), q4_path=Path('.carry/e5-small-pruned.q4'))"
    # the stages done here (corpus, base) are marked done there with their own timings
    python3 -c "import json; s = json.load(open('.carry/stages.json')); \
json.dump({k: s[k] for k in ('corpus', 'base')}, open('$W/stages.json', 'w'))"
    python3 -m langarith.bundle build --work $W --stages head,adapters,task,evaluate --device cuda \
      2>&1 | tee "$OUT/log.txt" ;;
  *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
