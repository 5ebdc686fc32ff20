#!/usr/bin/env bash
# Set up everything the benchmarks need, then run them: benchmarks/run.sh [--quick] [...]
#
# - benchmarks/.venv from requirements.txt (pinned), plus the dependencies rx_informer's
#   pyproject.toml declares (the pins win where they overlap);
# - benchmarks/node/node_modules from package-lock.json (npm ci);
# - benchmarks/clientgo/clientgo-driver (go build, pinned by go.sum, with the local Go).
# Arguments go to `python -m benchmarks`; see `benchmarks/run.sh --help`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.requirements-installed"
if [ ! -f "$stamp" ] || [ "$here/requirements.txt" -nt "$stamp" ]; then
    "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
    touch "$stamp"
fi
if [ -f "$repo/pyproject.toml" ]; then
    # The drivers import rx_informer from the source tree (PYTHONPATH); only its declared
    # dependencies are installed, so nothing is written into the repository. A failure shows
    # up in the report as "rx_informer unavailable", with the reason.
    mapfile -t deps < <("$venv/bin/python" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as file:
    print("\n".join(tomllib.load(file)["project"].get("dependencies", [])))
' "$repo/pyproject.toml")
    if [ "${#deps[@]}" -gt 0 ]; then
        "$venv/bin/pip" install --quiet -c "$here/requirements.txt" "${deps[@]}" \
            || echo "run.sh: installing rx_informer's dependencies failed; going on" >&2
    fi
fi

if [ ! -d "$here/node/node_modules/@kubernetes/client-node" ]; then
    (cd "$here/node" && npm ci --no-audit --no-fund)
fi
(cd "$here/clientgo" && GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go build -o clientgo-driver .)

cd "$repo"
exec "$venv/bin/python" -m benchmarks "$@"
