#!/usr/bin/env bash
# One command does the whole set-up on a fresh Debian/Ubuntu machine (Python 3.11, root or sudo), then runs
# either the demo (`demo`: the main job on embedded defaults) or the whole test suite (`test`).
# Set-up is idempotent: system packages are installed only when missing, the virtual environment (.venv)
# is rebuilt only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 demo|test [pytest args...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
action=$1; shift

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

python_bin() {
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"; return
        fi
    done
    echo "ichvol needs Python 3.11 or newer" >&2; exit 1
}

setup_system() {
    local missing=()
    command -v storescu >/dev/null || missing+=(dcmtk)
    command -v dciodvfy >/dev/null || missing+=(dicom3tools)
    command -v Orthanc >/dev/null || missing+=(orthanc)
    command -v openssl >/dev/null || missing+=(openssl)
    "$(python_bin)" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing system packages: ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

setup_python() {
    local stamp=.venv/.ichvol-stamp want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    echo "== creating the Python environment in .venv"
    [ -x .venv/bin/python ] || "$(python_bin)" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    # The CPU build of torch where one is at hand; any torch >= 2.3 satisfies ichvol.
    .venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.3"
    .venv/bin/python -m pip install -q -e ".[jpeg,postgres,dev]"
    echo "$want" > "$stamp"
}

setup_system
setup_python
export PATH="$PWD/.venv/bin:$PATH"

case "$action" in
    demo) exec bash deploy/demo.sh "$@" ;;
    test) exec python -m pytest -q "$@" ;;
    *) usage ;;
esac
