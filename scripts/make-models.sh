#!/usr/bin/env bash
# Exports the seeded example models (random weights, for tests and benchmarks of architectures
# and sizes) and the trained tiny-facts model of the tutorials into models/, with Debian's
# python3 (torch 1.13), so both addons load them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${TORCHSIGHT_PYTHON:-/usr/bin/python3}"
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p models
for arch in gpt2 llama; do
  if [ ! -f "models/$arch/torchsight.json" ] || [ ! -f "models/$arch/step.pt" ] || [ -n "${FORCE:-}" ]; then
    "$PY" -m torchsight_testing.examples --arch "$arch" --out "models/$arch"
  fi
done
# the trained example model of the tutorials (from committed weights; no training)
bash scripts/make-tiny-facts.sh
