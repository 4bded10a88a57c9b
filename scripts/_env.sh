# Sourced by the project's scripts: make sure .venv exists and holds this checkout's dependencies.
# FLUE_ENV says which: "main" (the default: the project alone, what ./scripts/example runs) or "test"
# (the test extras and the Postgres plugin too, what ./scripts/test runs). A test install holds all a
# main one does, so the example is content with either; the tests are content only with their own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
FLUE_ENV="${FLUE_ENV:-main}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.flue-installed"
wanted="$(cat pyproject.toml plugins/flue-postgres/pyproject.toml | sha1sum | cut -d' ' -f1)"
installed="$(cat "$stamp" 2>/dev/null || true)"
case "$FLUE_ENV" in
    main) [ "$installed" = "$wanted main" ] || [ "$installed" = "$wanted test" ] \
              || { .venv/bin/python -m pip install --quiet --disable-pip-version-check -e . \
                   && echo "$wanted main" > "$stamp"; } ;;
    # The Postgres backend is a distribution of its own (plugins/flue-postgres), installed beside Flue
    # as a third party's would be: found through its entry point, tested by its own tests.
    test) [ "$installed" = "$wanted test" ] \
              || { .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" -e plugins/flue-postgres \
                   && echo "$wanted test" > "$stamp"; } ;;
    *) echo "scripts/_env.sh: FLUE_ENV must be main or test, not $FLUE_ENV" >&2; exit 2 ;;
esac
export PATH="$ROOT/.venv/bin:$PATH"
