#!/usr/bin/env bash
# Creates (once) the project's Python venv in .venv and installs scripts/requirements.txt.
# Prints the path of the venv's python.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
req="$root/scripts/requirements.txt"
stamp="$venv/.kiln-requirements"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2 || {
    echo "venv: python3 -m venv failed; on Debian install python3-venv (apt-get install python3-venv)" >&2
    exit 1
  }
fi
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
  echo "venv: installing $(grep -vc '^#' "$req") packages into $venv ..." >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$stamp"
fi
echo "$venv/bin/python"
