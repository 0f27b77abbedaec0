#!/usr/bin/env bash
# The whole tiny-facts recipe (npm run train:example): train the tokenizer and the model with the
# seed, check the weights against transformers' GPT-2, draw the training curve, export
# models/tiny-facts with the torch the addon links, and print the phenomena measured in eager PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN_PY="${TORCHSIGHT_TRAIN_PYTHON:-.venv/bin/python}"  # torch >= 2.0, tokenizers, transformers
if ! "$TRAIN_PY" -c 'import torch, tokenizers, transformers' 2>/dev/null; then
  echo "train:example needs torch, tokenizers and transformers in $TRAIN_PY (set TORCHSIGHT_TRAIN_PYTHON)" >&2
  exit 1
fi
"$TRAIN_PY" -m training.train --out training/tiny-facts "$@"
"$TRAIN_PY" -m training.check_hf --weights training/tiny-facts
"$TRAIN_PY" -m training.plot_loss training/tiny-facts/train-log.json docs/tiny-facts-training.svg
FORCE=1 bash scripts/make-tiny-facts.sh
"$TRAIN_PY" -m training.evaluate --weights training/tiny-facts
