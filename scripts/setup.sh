#!/usr/bin/env bash
# Set up commpulse in ./.venv on Debian 12 with Python 3.11. Safe to run again.
#   scripts/setup.sh          the application
#   scripts/setup.sh test     the application and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
  done
fi
if [ -z "$python" ]; then
  echo "setup: Python 3.11 is needed (apt-get install -y python3)" >&2
  exit 1
fi
"$python" - <<'PY' || exit 1
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f"setup: Python 3.11 is needed, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11")
PY

if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c "import ensurepip" >/dev/null 2>&1; then
    # Debian ships venv separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
      echo "setup: the venv module is missing; run: sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
  fi
  "$python" -m venv .venv
fi

.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# (the build backend warns about editable installs; nothing to act on)
PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
version=$(.venv/bin/commpulse --version) || {
  echo "setup: the installed commpulse does not start (the error is above)" >&2
  exit 1
}
echo "setup: ${version} is ready in .venv" >&2
