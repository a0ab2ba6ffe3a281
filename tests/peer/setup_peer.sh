#!/usr/bin/env bash
# Build (once) the virtual environment that holds NNCodec 2.1.3, the reference software of
# ISO/IEC 15938-17, for the interoperability tests. NNCodec is never a dependency of nnr: it
# lives in its own environment (it needs numpy<2) and is driven by tests/peer/nncodec_driver.py.
#
#   NNR_PEER_VENV   where the environment goes (default: <repo>/.peer-venv, gitignored)
#   PEER_PYTHON     the interpreter that creates it (default: python3)
#
# Idempotent: an environment that already imports NNCodec 2.1.3 is reused as it is (also one
# built by hand). One that this script started but did not finish is removed and built again;
# any other directory in the way is left alone (error). Prints the environment's path.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${NNR_PEER_VENV:-$repo/.peer-venv}"
python="${PEER_PYTHON:-python3}"
owned="$venv/.nnr-peer-owned"
nncodec_version="2.1.3"

ready() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<EOF >/dev/null 2>&1
import importlib.metadata, numpy
from nncodec.nnc_core.hdsp.hdsp_tool import HdspTool
from nncodec.extensions import deepCABAC
assert importlib.metadata.version("nncodec") == "$nncodec_version"
EOF
}

build() {
    if [ -e "$venv" ]; then
        if [ ! -f "$owned" ]; then
            echo "setup_peer: $venv exists but does not import NNCodec $nncodec_version;" \
                 "remove it or set NNR_PEER_VENV to another directory" >&2
            exit 1
        fi
        rm -rf "$venv"
    fi
    echo "setup_peer: building NNCodec $nncodec_version in $venv (compiles its C++ extension)" >&2
    "$python" -m venv "$venv"
    touch "$owned"
    local pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input -q)
    "${pip[@]}" install 'numpy<2' pybind11 setuptools wheel
    "${pip[@]}" install --no-deps --no-build-isolation "nncodec==$nncodec_version"
    ready || { echo "setup_peer: NNCodec was installed but does not import" >&2; exit 1; }
}

main() {
    if ready; then
        echo "$venv"
        return 0
    fi
    mkdir -p "$(dirname "$venv")"
    if command -v flock >/dev/null 2>&1; then
        # One builder at a time (parallel test workers); the others wait and then reuse it.
        exec 9>"$venv.lock"
        flock 9
        if ready; then
            echo "$venv"
            return 0
        fi
    fi
    build
    echo "$venv"
}

main "$@"
