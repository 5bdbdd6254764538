#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (unit and integration).
# Extra arguments go to pytest, e.g. scripts/test.sh -k ingest
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the integration tests start (Alertmanager); required in CI.
scripts/system-packages.sh || [ "${CI:-}" != true ]
scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
