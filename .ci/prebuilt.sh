#!/usr/bin/env bash
# One job of .github/workflows/prebuilt.yml: build the addon for one prebuilt variant, test it,
# pack the npm tarballs into .cache/pack, and (Debian variant) check the source-build fallback
# from the packed main package. Runs the same on a developer's Debian 12 machine:
#   bash .ci/prebuilt.sh linux-x64-torch1.13-debian
# Upstream variants need LIBTORCH (an unpacked libtorch zip) and, to run the suite,
# TORCHSIGHT_PYTHON (a Python whose torch is the same version).
set -euo pipefail
cd "$(dirname "$0")/.."
variant="${1:?usage: .ci/prebuilt.sh <variant>}"
start=$(date +%s)
step() { echo "::group::$1 ($(( $(date +%s) - start )) s)"; }
end() { echo "::endgroup::"; }

case "$variant" in
  *-debian)
    step "setup (the README's first command)"; npm run setup; end
    step "test (the README's second command)"; npm test; end
    ;;
  *)
    : "${LIBTORCH:?set LIBTORCH to the unpacked libtorch for $variant}"
    step "npm packages"; npm ci --no-audit --no-fund; end
    step "build against $LIBTORCH"; npm run build; end
    if [ -n "${TORCHSIGHT_PYTHON:-}" ]; then
      step "models and test"; npm run models; npm test; end
    else
      echo "prebuilt: no TORCHSIGHT_PYTHON with torch: built, not tested (CUDA variants are tested on a GPU machine)"
    fi
    ;;
esac

step "pack"
rm -rf .cache/pack
node scripts/pack.mjs --variant "$variant" --out .cache/pack
ls -la .cache/pack
end

if [[ "$variant" == *-debian ]]; then
  # The packed main package alone (no platform package): first use must build from source into
  # the cache, then run the tutorial. This is the path of a user whose libtorch has no prebuilt.
  step "source-build fallback from the packed package"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && echo '{"name":"fallback","private":true,"type":"module"}' > package.json &&
    npm install --no-audit --no-fund --prefer-offline "$OLDPWD"/.cache/pack/torchsight-[0-9]*.tgz &&
    cp "$OLDPWD/tests/fixtures/package/tutorial.mjs" . &&
    env -u TORCHSIGHT_ADDON TORCHSIGHT_CACHE="$tmp/cache" node tutorial.mjs "$OLDPWD/models/gpt2" | tee out.json &&
    grep -q '(built now' out.json &&
    env -u TORCHSIGHT_ADDON TORCHSIGHT_CACHE="$tmp/cache" TORCHSIGHT_BUILD=never node tutorial.mjs "$OLDPWD/models/gpt2" | grep -q '(source build (cache)')
  end
fi
echo "prebuilt $variant: done in $(( $(date +%s) - start )) s"
