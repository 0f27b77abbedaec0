#!/usr/bin/env bash
# Checks that binding.gyp still builds the addon with node-gyp, in a scratch copy so the
# cmake-js build in build/ is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r binding.gyp package.json native scripts "$scratch"/
ln -s "$PWD/node_modules" "$scratch/node_modules"
gyp="$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
nodedir="${npm_config_nodedir:-$(npm config get nodedir 2>/dev/null || true)}"
args=(rebuild -j "$(nproc)")
if [ -n "$nodedir" ] && [ "$nodedir" != "undefined" ]; then args+=(--nodedir "$nodedir"); fi
(cd "$scratch" && node "$gyp" "${args[@]}" > gyp.log 2>&1) || { tail -40 "$scratch/gyp.log"; exit 1; }
node -e "const a=require('$scratch/build/Release/torchsight.node'); const p=require('$scratch/build/Release/torchsight_preload.node'); if (typeof a.loadModel!=='function' || typeof p.preload!=='function') process.exit(1); console.log('binding.gyp build OK: libtorch', a.info().torch, '+ the preload shim')"
