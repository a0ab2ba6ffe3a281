#!/usr/bin/env bash
# Sanitizers and fuzzing: the C++ unit tests built with AddressSanitizer + UndefinedBehavior-
# Sanitizer (gcc) and run by ctest, a short libFuzzer run over the C++ payload decoder
# (clang, -fsanitize=fuzzer,address,undefined) and a short atheris run over nnr.decode /
# nnr.inspect. Installs what it needs (clang and libFuzzer from Debian, atheris into the test
# environment) and exits non-zero on any failure or finding.
#
#   PYTHON         interpreter of the environment nnr is installed in (default: python3);
#                  the atheris run uses it, make_seeds.py imports nnr with it
#   FUZZ_SECONDS   length of each fuzzing run (default: 45)
#   NNR_SAN_DIR    build and work directory (default: a fresh temporary directory)
#
# Findings are left in $NNR_SAN_DIR (crash-*, timeout-*, oom-* files) and named in the log.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
seconds="${FUZZ_SECONDS:-45}"
jobs="$(nproc 2>/dev/null || echo 2)"
work="${NNR_SAN_DIR:-}"
created=""
if [ -z "$work" ]; then
    work="$(mktemp -d "${TMPDIR:-/tmp}/nnr-san.XXXXXX")"
    created=1
fi
mkdir -p "$work"
generator="$(command -v ninja >/dev/null && echo Ninja || echo 'Unix Makefiles')"

step() { printf '\n=== sanitizers: %s (%ss)\n' "$1" "$SECONDS"; }

have_libfuzzer() {
    command -v clang++ >/dev/null 2>&1 || return 1
    printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
        > "$work/probe.cpp"
    clang++ -fsanitize=fuzzer,address,undefined "$work/probe.cpp" -o "$work/probe" >/dev/null 2>&1
}

step "C++ unit tests with ASan + UBSan (gcc)"
cmake -S "$repo" -B "$work/asan" -G "$generator" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="${CXX:-g++}" \
    -DNNR_BUILD_PYTHON=OFF -DNNR_BUILD_TESTS=ON -DNNR_SANITIZE=address,undefined >/dev/null
cmake --build "$work/asan" -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    bash -c "cd '$work/asan' && ctest --output-on-failure"

step "clang with libFuzzer"
if ! have_libfuzzer; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq clang libclang-rt-dev >/dev/null \
        || apt-get install -y -qq clang "libclang-rt-$(clang --version 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -1)-dev" >/dev/null
    have_libfuzzer || { echo "clang cannot link -fsanitize=fuzzer" >&2; exit 1; }
fi

step "libFuzzer over nnr::decode_payload ($seconds s)"
cmake -S "$repo" -B "$work/fuzz" -G "$generator" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DNNR_BUILD_PYTHON=OFF -DNNR_BUILD_FUZZ=ON -DNNR_SANITIZE=address,undefined >/dev/null
cmake --build "$work/fuzz" -j "$jobs" --target fuzz_payload
mkdir -p "$work/cpp-seeds" "$work/cpp-corpus"
(cd "$repo" && "$python" cpp/fuzz/make_seeds.py "$work/cpp-seeds")
if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$work/fuzz/fuzz_payload" "$work/cpp-corpus" "$work/cpp-seeds" -max_total_time="$seconds" \
    -max_len=512 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/cpp-" \
    -print_final_stats=1 > "$work/cpp-fuzz.log" 2>&1; then
    sed -E '/^#[0-9]+/d' "$work/cpp-fuzz.log" | tail -40
    echo "libFuzzer finding: see $work/cpp-*" >&2
    exit 1
fi
sed -E '/^#[0-9]+/d' "$work/cpp-fuzz.log" | tail -8

step "atheris over nnr.decode / nnr.inspect ($seconds s)"
"$python" -c "import atheris" 2>/dev/null || "$python" -m pip install --disable-pip-version-check -q atheris
mkdir -p "$work/py-seeds" "$work/py-corpus"
find "$repo/tests/vectors" -name '*.nnc' -size -16k -exec cp {} "$work/py-seeds/" \;
cp "$repo"/tests/malformed/corpus/*.nnr "$work/py-seeds/"
(cd "$repo" && "$python" tests/malformed/make_corpus.py --out "$work/tmp-corpus" --seeds "$work/py-seeds" >/dev/null)
# run from the work directory: the package the environment installed, not the source tree
if ! (cd "$work" && NNR_FUZZ_AS_MB=4096 "$python" "$repo/tests/fuzz/fuzz_decode.py" \
        "$work/py-corpus" "$work/py-seeds" -max_total_time="$seconds" -max_len=16384 \
        -timeout=30 -rss_limit_mb=4096 -artifact_prefix="$work/py-" -print_final_stats=1 \
        > "$work/py-fuzz.log" 2>&1); then
    sed -E '/^#[0-9]+/d; /^INFO: Instrumenting/d' "$work/py-fuzz.log" | tail -40
    echo "atheris finding: see $work/py-*" >&2
    exit 1
fi
sed -E '/^#[0-9]+/d; /^INFO: Instrumenting/d' "$work/py-fuzz.log" | tail -8

step "done: no findings"
[ -n "$created" ] && rm -rf "$work"
exit 0
