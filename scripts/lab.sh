#!/usr/bin/env bash
# Start the JupyterLab workbench (`make lab`): JupyterLab on 127.0.0.1 with the project's
# kernel and a federation, printing the URL with its token.
#
#   LAB_PORT        port (default 8888; fails rather than picking another)
#   LAB_ROOT        folder JupyterLab serves (default: the repository)
#   LAB_TOKEN       access token (default: a fresh random one each start)
#   FDP_FEDERATION  federation.yaml or its folder (default: data/demo, built with
#                   `fdp synth` when missing)
# Extra arguments go to `jupyter lab`. The token reaches JupyterLab through JUPYTER_TOKEN,
# so it is not in the process list.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FDP_VENV:-$REPO/.venv}/bin
PORT=${LAB_PORT:-8888}
ROOT=${LAB_ROOT:-$REPO}

log() { printf 'lab: %s\n' "$*" >&2; }

for tool in python fdp jupyter; do
    if [ ! -x "$BIN/$tool" ]; then
        log "ERROR: $BIN/$tool is missing; run \`make lab\` (installs the 'lab' extra)"
        exit 3
    fi
done

FEDERATION=${FDP_FEDERATION:-$REPO/data/demo/federation.yaml}
[ -d "$FEDERATION" ] && FEDERATION="$FEDERATION/federation.yaml"
if [ ! -f "$FEDERATION" ]; then
    if [ -n "${FDP_FEDERATION:-}" ]; then
        log "ERROR: FDP_FEDERATION=$FDP_FEDERATION has no federation.yaml"
        exit 3
    fi
    log "no demo federation yet: building it in data/demo (fdp synth, about 20 s)"
    "$BIN/fdp" synth --out "$REPO/data/demo"
fi
FEDERATION=$(cd "$(dirname "$FEDERATION")" && pwd)/$(basename "$FEDERATION")

# The notebooks run in kernel "python3": it must be this environment's Python.
"$BIN/python" -c 'import sys; from fdp_kernel.reports.schedule import ensure_kernel
ensure_kernel(sys.stderr)'

TOKEN=${LAB_TOKEN:-$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))')}
extra=()
[ "$(id -u)" -eq 0 ] && extra+=(--allow-root)

log "federation: $FEDERATION"
log "serving $ROOT; open notebooks/getting_started.ipynb or notebooks/explore_population_health.ipynb"
printf 'http://127.0.0.1:%s/lab?token=%s\n' "$PORT" "$TOKEN"

export FDP_FEDERATION=$FEDERATION JUPYTER_TOKEN=$TOKEN
cd "$ROOT"
exec "$BIN/jupyter" lab --no-browser --ip=127.0.0.1 --port="$PORT" --port-retries=0 \
    --ServerApp.root_dir="$ROOT" --LabApp.news_url=None \
    --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate "${extra[@]}" "$@"
