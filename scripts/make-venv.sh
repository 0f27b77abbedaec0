#!/usr/bin/env bash
# The exporter's Python environment: .venv in the repository with python/requirements.txt
# (torch 2.x and transformers), made from Debian's python3. Skipped when TORCHSIGHT_PYTHON names
# another interpreter, and when .venv already holds exactly the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=python/requirements.txt
if [ -n "${TORCHSIGHT_PYTHON:-}" ]; then
  echo "make-venv: TORCHSIGHT_PYTHON=$TORCHSIGHT_PYTHON is the exporter's Python; no .venv made"
  exit 0
fi
# every `name==version` line of the requirements installed at that version
matches() {
  [ -x .venv/bin/python ] && .venv/bin/python - "$REQ" <<'PY'
import sys
from importlib import metadata
bad = []
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if "==" not in line:
        continue
    name, want = (s.strip() for s in line.split("=="))
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        bad.append(f"{name} {have or 'missing'} (want {want})")
if bad:
    print("make-venv: .venv differs: " + ", ".join(bad))
    sys.exit(1)
PY
}
if matches; then
  echo "make-venv: .venv has $(grep -c '==' "$REQ") pinned packages already"
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "make-venv: creating .venv with /usr/bin/python3"
  /usr/bin/python3 -m venv .venv
fi
echo "make-venv: installing $REQ (torch is a large download)"
.venv/bin/python -m pip install --disable-pip-version-check --no-input -r "$REQ"
matches
