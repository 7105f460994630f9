#!/usr/bin/env bash
# The Python packages lit-lm needs that the lent GPU machine's image lacks, as wheels in .whl/ (ignored by git; named
# in the device call's `carry`; benchmarks/gpu.sh installs them there with pip --no-index --target /tmp/site).
# The image has torch, lightning, torchmetrics, tokenizers, tensorboard, safetensors and transformers
# (/work/.library/device/KINDS.md); it lacks jsonargparse and its [signatures] extra (docstring-parser,
# typeshed-client), which LightningCLI needs. `datasets` is imported only for hub corpora, which gpu.sh does not read.
# Versions: jsonargparse as requirements.txt pins it; the other two as this checkout's environment has them
# (what the tests ran with). All three are pure Python (py3-none-any); the platform flags are the device README's.
#   bash benchmarks/gpu_wheels.sh          # from anywhere; PYTHON=... picks the interpreter whose pip downloads
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3

jsonargparse=$(sed -n 's/^jsonargparse\(\[[a-z,]*\]\)\?==\([0-9.]*\).*/\2/p' requirements.txt)
installed() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
wheels=("jsonargparse==$jsonargparse" "docstring-parser==$(installed docstring-parser)"
        "typeshed-client==$(installed typeshed-client)")

rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${wheels[@]}"
# what they need beyond themselves (extras skipped): PyYAML and typing-extensions, both in the image
for w in .whl/*.whl; do
  needs=$(unzip -p "$w" '*/METADATA' | sed -n 's/^Requires-Dist: //p' | grep -v 'extra ==' | tr '\n' ';' || true)
  echo "$(basename "$w")  ($(du -k "$w" | cut -f1) KiB)  needs: ${needs:-nothing}"
done
