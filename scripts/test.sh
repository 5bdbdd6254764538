#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (unit and integration).
# Extra arguments go to pytest, e.g. scripts/test.sh -k ingest
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the integration tests start (Alertmanager); required in CI.
scripts/system-packages.sh || [ "${CI:-}" != true ]
scripts/setup.sh test
# Two workers, whole files each (a module's broker and fixtures stay in one process); the
# longest modules start first (tests/integration/conftest.py). `-n 0` runs in one process.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
