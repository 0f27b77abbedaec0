#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a working torchsight: system packages,
# npm packages, the exporter's Python environment (.venv), the native addon, the TypeScript
# build, the example models, and the first tutorial. Safe to run again (each step skips what is already done).
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server: scale-out serving (serve --redis, torchsight worker) and its tests, which start
# their own on a free loopback port (.ci/run one for the suite); the package's service is not used
APT_PACKAGES=(libtorch-dev python3-torch python3-venv libopenblas0-pthread cmake g++ make ccache chromium redis-server)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${APT_PACKAGES[@]}"
fi

echo "setup: npm packages"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi

echo "setup: the exporter's Python environment (.venv)"
bash scripts/make-venv.sh

echo "setup: native addon (cmake-js), against Debian's libtorch 1.13"
npm run build:native
echo "setup: native addon against the torch 2.x of .venv (build-torch2/; the suite runs on both)"
npm run build:native:torch2
echo "setup: TypeScript"
npm run build:ts
echo "setup: example models"
npm run models
echo "setup: tutorial 1"
npm run tutorial
