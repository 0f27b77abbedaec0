#!/usr/bin/env bash
# The test suite against an AddressSanitizer build of the addon (npm run test:asan).
# Node itself is not instrumented: libasan is preloaded, every process logs to .cache/asan/,
# and scripts/asan-report.mjs fails on any invalid access and on any leak whose allocation
# stack passes through torchsight.node (V8's and libtorch's own process-lifetime allocations
# are not ours to fix).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
node node_modules/cmake-js/bin/cmake-js compile -O build-asan --CDTORCHSIGHT_ASAN=ON --parallel "$(nproc)" > .cache/asan-build.log 2>&1 \
  || { tail -30 .cache/asan-build.log; exit 1; }
bash scripts/make-models.sh  # before the preload: python must not run under the sanitizer
rm -rf .cache/asan && mkdir -p .cache/asan
export TORCHSIGHT_ADDON="$PWD/build-asan/Release/torchsight.node"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
# slow unwinding: libtorch has no frame pointers, and a leak's stack must reach our frames
# allocator_may_return_null: an impossible allocation (the out-of-memory test) returns null, and
# libtorch throws its own error, as it does without the sanitizer
export ASAN_OPTIONS="detect_leaks=1:log_path=$PWD/.cache/asan/asan:halt_on_error=1:detect_odr_violation=0:fast_unwind_on_malloc=0:malloc_context_size=64:allocator_may_return_null=1"
# everything runs ~20x slower under the sanitizer: a smaller fuzz budget with a longer bound a case
export FUZZ_ITERS="${FUZZ_ITERS:-300}" FUZZ_CASE_TIMEOUT_MS="${FUZZ_CASE_TIMEOUT_MS:-120000}"
export LSAN_OPTIONS="exitcode=0"
set +e
# and the timeouts grow with it (a model load includes its warm-up forwards)
npx vitest run --testTimeout=1200000 --hookTimeout=1200000 "$@"
rc=$?
unset LD_PRELOAD
set -e
node scripts/asan-report.mjs .cache/asan
exit $rc
