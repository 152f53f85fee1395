#!/usr/bin/env bash
# Runs the Azure SDK and CLI compatibility checks against a fresh simulator.
#
#   tests/compat/run.sh [sdk|cli|batch|schedule|all]     (default all)
#
# Venvs (git-ignored): .venv-compat (SDKs, requirements.txt) and .venv-compat-cli (azure-cli,
# requirements-cli.txt; separate because azure-cli pins older mgmt SDKs).
# Env: RENDERBURST (binary, default target/debug/renderburst), SIM_URL + SIM_CA to use an already
# running simulator instead of starting one, COMPAT_SDK_ARGS (extra sdk_check.py args, e.g. --debug).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WHAT=${1:-all}
BIN=${RENDERBURST:-$ROOT/target/debug/renderburst}
# `az vm create` goes through ARM template deployments and image-version lookups, which the
# simulator does not model (VMs are created with `az resource create` instead); its failure is
# expected until it does. Set COMPAT_XFAIL= (empty) to count it.
export COMPAT_XFAIL=${COMPAT_XFAIL-"vm create (az vm create)"}

ensure_venv() { # DIR REQUIREMENTS
    local dir=$1 req=$2 stamp
    stamp=$dir/.compat-req.sha
    if [[ ! -x "$dir/bin/python" ]]; then
        echo "# creating $dir" >&2
        python3 -m venv "$dir" || return 1
        "$dir/bin/pip" install -q --upgrade pip >&2 || return 1
    fi
    if [[ ! -f "$stamp" ]] || ! sha256sum -c --status "$stamp" 2>/dev/null; then
        echo "# installing $req into $dir (this takes a while)" >&2
        "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" >&2 || return 1
        sha256sum "$req" >"$stamp"
    fi
}

if [[ "$WHAT" == all || "$WHAT" == sdk || "$WHAT" == batch || "$WHAT" == schedule ]]; then
    ensure_venv "$ROOT/.venv-compat" "$HERE/requirements.txt" || { echo "FAIL venv (sdk)"; exit 1; }
fi
if [[ "$WHAT" == all || "$WHAT" == cli ]]; then
    ensure_venv "$ROOT/.venv-compat-cli" "$HERE/requirements-cli.txt" || { echo "FAIL venv (cli)"; exit 1; }
fi

TMP=$(mktemp -d /tmp/compat-run.XXXXXX)
SIM_PID=""
cleanup() {
    if [[ -n "$SIM_PID" ]]; then
        kill "$SIM_PID" 2>/dev/null
        wait "$SIM_PID" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

URL=${SIM_URL:-}
CA=${SIM_CA:-}
if [[ -z "$URL" ]]; then
    if [[ ! -x "$BIN" ]]; then
        echo "FAIL simulator: $BIN not found (cargo build -p renderburst)"
        exit 1
    fi
    CA=$TMP/ca.pem
    "$BIN" sim --listen 127.0.0.1:0 --ca-out "$CA" >"$TMP/sim.out" 2>"$TMP/sim.err" &
    SIM_PID=$!
    for _ in $(seq 1 100); do
        URL=$(grep -oE 'https://127\.0\.0\.1:[0-9]+' "$TMP/sim.out" | head -1)
        [[ -n "$URL" && -s "$CA" ]] && break
        if ! kill -0 "$SIM_PID" 2>/dev/null; then
            echo "FAIL simulator exited early: $(tail -5 "$TMP/sim.err")"
            SIM_PID=""
            exit 1
        fi
        sleep 0.1
    done
    if [[ -z "$URL" || ! -s "$CA" ]]; then
        echo "FAIL simulator printed no https URL / wrote no CA within 10 s: $(head -5 "$TMP/sim.out")"
        exit 1
    fi
    echo "# simulator $URL (pid $SIM_PID, CA $CA, logs $TMP/sim.{out,err})"
fi

RC=0
if [[ "$WHAT" == all || "$WHAT" == sdk ]]; then
    echo "## Python SDKs"
    # shellcheck disable=SC2086
    "$ROOT/.venv-compat/bin/python" "$HERE/sdk_check.py" --url "$URL" --ca "$CA" \
        --endpoints-out "$TMP/sdk-endpoints.txt" ${COMPAT_SDK_ARGS:-} || RC=1
fi
if [[ "$WHAT" == all || "$WHAT" == schedule ]]; then
    echo "## Compute Schedule SDK (bulk VM operations)"
    "$ROOT/.venv-compat/bin/python" "$HERE/computeschedule_check.py" --url "$URL" --ca "$CA" || RC=1
fi
if [[ "$WHAT" == all || "$WHAT" == batch ]]; then
    echo "## azure-mgmt-batch sees the pool renderburst created"
    "$ROOT/.venv-compat/bin/python" "$HERE/batch_check.py" --url "$URL" --ca "$CA" --bin "$BIN" || RC=1
fi
if [[ "$WHAT" == all || "$WHAT" == cli ]]; then
    echo "## Azure CLI"
    "$HERE/cli_check.sh" "$URL" "$CA" || RC=1
fi
if [[ -n "$SIM_PID" ]] && ! kill -0 "$SIM_PID" 2>/dev/null; then
    echo "FAIL simulator died during the run: $(tail -5 "$TMP/sim.err")"
    SIM_PID=""
    RC=1
fi
exit $RC
