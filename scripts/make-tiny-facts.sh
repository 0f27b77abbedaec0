#!/usr/bin/env bash
# Exports models/tiny-facts from the committed trained weights (training/tiny-facts: weights.pt,
# config.json, tokenizer.json) with Debian's python3 (torch 1.13, what the default addon links).
# No training here: `npm run train:example` remakes the weights. Skipped when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${TORCHSIGHT_PYTHON:-/usr/bin/python3}"
export PYTHONPATH="$PWD/python:$PWD${PYTHONPATH:+:$PYTHONPATH}"
src=training/tiny-facts
out=models/tiny-facts
if [ ! -f "$out/torchsight.json" ] || [ ! -f "$out/step.pt" ] || [ ! -f "$out/eager_state.pt" ] \
  || [ "$src/weights.pt" -nt "$out/torchsight.json" ] || [ -n "${FORCE:-}" ]; then
  "$PY" -m training.export --weights "$src" --out "$out"
fi
