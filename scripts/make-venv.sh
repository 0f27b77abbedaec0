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
# torch 2.15's PyPI wheel brings CUDA's libraries (import torch needs them even on a CPU): .venv
# ends at about 5.7 GB and pip peaks near 9 GB while the wheels wait unpacked in TMPDIR.
# No pip cache: it would keep another 3 GB of wheels that .venv never needs again.
free_gb() { df -Pk "$1" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
tmp="${TMPDIR:-/tmp}"
here=$(free_gb .); there=$(free_gb "$tmp")
low=$(( here < there ? here : there ))
if [ "$low" -lt 6 ]; then
  echo "make-venv: .venv needs about 9 GB free while installing and 5.7 GB after; $PWD has $here GB, $tmp $there GB" >&2
  echo "make-venv: free some space, or set TORCHSIGHT_PYTHON to a Python that has torch 2.x and transformers" >&2
  exit 1
elif [ "$low" -lt 9 ]; then
  echo "make-venv: warning: only $low GB free (pip peaks near 9 GB); it may run out of space"
fi
echo "make-venv: installing $REQ (torch and CUDA's libraries: about 4 GB to download)"
if ! .venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check --no-input -r "$REQ"; then
  echo "make-venv: pip failed (above); free space now: $PWD $(free_gb .) GB, $tmp $(free_gb "$tmp") GB (it needs about 9)" >&2
  exit 1
fi
matches
