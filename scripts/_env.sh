# Sourced by the project's scripts: make sure .venv exists and holds this checkout's dependencies.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.flue-installed"
wanted="$(cat pyproject.toml plugins/flue-postgres/pyproject.toml | sha1sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    # The Postgres backend is a distribution of its own (plugins/flue-postgres), installed beside Flue
    # as a third party's would be: found through its entry point, tested by its own tests.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" -e plugins/flue-postgres
    echo "$wanted" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
