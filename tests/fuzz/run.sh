#!/usr/bin/env bash
# Fuzzes the API from its own OpenAPI document with schemathesis, against the real daemon
# (`renderburst serve` with the embedded simulator, a store in a temporary directory).
# Fails on any 5xx, any response that does not match the document, or a daemon that crashed
# or logged a panic. Bounded: MAX_EXAMPLES per operation (default 30), a few minutes.
#
#   tests/fuzz/run.sh                 # builds target/debug/renderburst if needed
#   MAX_EXAMPLES=100 tests/fuzz/run.sh
#
# Needs python3 with venv; schemathesis is installed into .venv-fuzz (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${MAX_EXAMPLES:-30}"
VENV=.venv-fuzz

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
cargo build --quiet -p renderburst

tmp="$(mktemp -d)"
daemon_pid=""
cleanup() {
    if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
token="fuzz-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
cat > "$tmp/config.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[store]
url = "sqlite://$tmp/renderburst.db"

[controller]
reconcile_interval_seconds = 2

[auth]
admin_token = "$token"

[simulator.latency_ms]
vm_create = 50
vm_start = 20
vm_deallocate = 20
vm_delete = 20
nic = 5
disk = 5
TOML

NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" target/debug/renderburst serve --config "$tmp/config.toml" \
    >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 100); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/daemon.log"; echo "the daemon died at start" >&2; exit 1; }
    sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null || { tail -50 "$tmp/daemon.log"; echo "the daemon is not ready" >&2; exit 1; }
# The wait above may have seen /readyz answer 503 (not ready yet): only what the daemon logs
# from here on counts.
ready_at_line=$(wc -l <"$tmp/daemon.log")

status=0
started=$SECONDS
"$VENV/bin/schemathesis" --no-color run "$base/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --seed "${SEED:-1}" \
    || status=$?
echo "schemathesis took $((SECONDS - started)) s"

sed -i 's/\x1b\[[0-9;]*m//g' "$tmp/daemon.log"
if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "FAIL: the daemon crashed" >&2
    tail -50 "$tmp/daemon.log" >&2
    status=1
fi
if grep -q "panicked" "$tmp/daemon.log"; then
    echo "FAIL: the daemon panicked" >&2
    grep -B2 -A10 "panicked" "$tmp/daemon.log" | head -60 >&2
    status=1
fi
if tail -n +"$((ready_at_line + 1))" "$tmp/daemon.log" | grep -q '"status":5[0-9][0-9]\|status=5[0-9][0-9]'; then
    echo "FAIL: the daemon answered 5xx" >&2
    tail -n +"$((ready_at_line + 1))" "$tmp/daemon.log" | grep '"status":5[0-9][0-9]\|status=5[0-9][0-9]' | head -20 >&2
    status=1
fi
if [[ $status -eq 0 ]]; then echo "fuzz: OK"; else echo "fuzz: FAILED" >&2; fi
exit $status
