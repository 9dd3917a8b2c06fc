#!/usr/bin/env bash
# Starts Switchboard's local stack as separate processes with prefixed logs:
# devbroker (kfake, data on disk), topics, modelsim, router-worker, egress
# and ingress. Ctrl-C (or SIGTERM) stops them in reverse order; running it
# again reuses the data directory. Every setting below can be overridden from
# the environment, e.g. `INGRESS_PORT=9080 MODELSIM_LATENCY=50ms make run`.
set -euo pipefail

BIN=${BIN:-bin}
DATA_DIR=${DATA_DIR:-data}
INGRESS_PORT=${INGRESS_PORT:-8080}
INGRESS_GRPC_PORT=${INGRESS_GRPC_PORT:-8083}
EGRESS_PORT=${EGRESS_PORT:-8081}
# Admin listeners (/metrics, /healthz, /readyz), apart from the public APIs.
INGRESS_ADMIN_PORT=${INGRESS_ADMIN_PORT:-8084}
EGRESS_ADMIN_PORT=${EGRESS_ADMIN_PORT:-8085}
ROUTER_PORT=${ROUTER_PORT:-8082}
MODELSIM_PORT=${MODELSIM_PORT:-8090}
BROKER_PORTS=${BROKER_PORTS:-19092,19093,19094}
MODELSIM_LATENCY=${MODELSIM_LATENCY:-200ms}
MODELSIM_JITTER=${MODELSIM_JITTER:-20ms}
MODELSIM_LONG_TAIL_FRACTION=${MODELSIM_LONG_TAIL_FRACTION:-0}
MODELSIM_LONG_TAIL_LATENCY=${MODELSIM_LONG_TAIL_LATENCY:-1500ms}
BACKENDS_FILE=${BACKENDS_FILE:-backends.yaml}
TENANTS_FILE=${TENANTS_FILE:-tenants.yaml}
LOG_FORMAT=${LOG_FORMAT:-text}
LOG_LEVEL=${LOG_LEVEL:-info}

brokers=$(echo "$BROKER_PORTS" | tr ',' '\n' | sed 's/^/127.0.0.1:/' | paste -sd, -)
export SWITCHBOARD_BROKERS=$brokers
export SWITCHBOARD_MODELSIM_URL=http://127.0.0.1:$MODELSIM_PORT/v1
mkdir -p "$DATA_DIR"
# egress's cursor secret, kept with the data so that a client's cursor still
# resumes after egress restarts.
if [ -z "${SWITCHBOARD_CURSOR_SECRET:-}" ]; then
  [ -s "$DATA_DIR/cursor-secret" ] || (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$DATA_DIR/cursor-secret")
  SWITCHBOARD_CURSOR_SECRET=$(cat "$DATA_DIR/cursor-secret")
  export SWITCHBOARD_CURSOR_SECRET
fi

names=()
pids=()
stopping=0
stop_all() {
  stopping=1
  trap - INT TERM
  echo "[run] stopping..."
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "[run] stopped; data kept in $DATA_DIR"
}
trap 'stop_all; exit 0' INT TERM
trap '[ "$stopping" = 1 ] || stop_all' EXIT

# start NAME CMD...: run CMD in its own session (so Ctrl-C reaches only this
# script, which stops the services in order) with its output prefixed.
start() {
  local name=$1; shift
  setsid "$@" > >(trap '' INT TERM; exec sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
  names+=("$name")
}

# wait_for DESCRIPTION COMMAND...: retry COMMAND for up to 30 seconds.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "[run] $what did not come up within 30s" >&2
  stop_all
  exit 1
}

rm -f "$DATA_DIR/devbroker.ready"
start devbroker "$BIN/devbroker" --ports "$BROKER_PORTS" --data-dir "$DATA_DIR/devbroker" \
  --ready-file "$DATA_DIR/devbroker.ready" --log-format "$LOG_FORMAT" --log-level "$LOG_LEVEL"
wait_for devbroker test -s "$DATA_DIR/devbroker.ready"

if ! "$BIN/topics" --brokers "$brokers" --log-format "$LOG_FORMAT" 2>&1 | sed -u 's/^/[topics] /'; then
  echo "[run] provisioning topics failed" >&2
  exit 1
fi

start modelsim "$BIN/modelsim" --addr "127.0.0.1:$MODELSIM_PORT" --latency "$MODELSIM_LATENCY" \
  --jitter "$MODELSIM_JITTER" --long-tail-fraction "$MODELSIM_LONG_TAIL_FRACTION" \
  --long-tail-latency "$MODELSIM_LONG_TAIL_LATENCY" --log-format "$LOG_FORMAT" --log-level "$LOG_LEVEL"
start router "$BIN/router-worker" --admin-addr "127.0.0.1:$ROUTER_PORT" --backends "$BACKENDS_FILE" \
  --log-format "$LOG_FORMAT" --log-level "$LOG_LEVEL"
start egress "$BIN/egress" --addr "127.0.0.1:$EGRESS_PORT" --admin-addr "127.0.0.1:$EGRESS_ADMIN_PORT" --tenants "$TENANTS_FILE" \
  --log-format "$LOG_FORMAT" --log-level "$LOG_LEVEL"
start ingress "$BIN/ingress" --addr "127.0.0.1:$INGRESS_PORT" --admin-addr "127.0.0.1:$INGRESS_ADMIN_PORT" \
  --grpc-addr "127.0.0.1:$INGRESS_GRPC_PORT" \
  --tenants "$TENANTS_FILE" --log-format "$LOG_FORMAT" --log-level "$LOG_LEVEL"

wait_for modelsim curl -fsS "http://127.0.0.1:$MODELSIM_PORT/readyz"
wait_for router-worker curl -fsS "http://127.0.0.1:$ROUTER_PORT/readyz"
wait_for egress curl -fsS "http://127.0.0.1:$EGRESS_ADMIN_PORT/readyz"
wait_for ingress curl -fsS "http://127.0.0.1:$INGRESS_ADMIN_PORT/readyz"

cat <<MSG

[run] Switchboard is up: ingress :$INGRESS_PORT (gRPC :$INGRESS_GRPC_PORT), egress :$EGRESS_PORT,
[run] metrics on the admin ports: ingress :$INGRESS_ADMIN_PORT, egress :$EGRESS_ADMIN_PORT, router-worker :$ROUTER_PORT,
[run] modelsim :$MODELSIM_PORT (model "sim", ${MODELSIM_LATENCY}), Kafka (devbroker) $brokers, data in $DATA_DIR/.
[run] Send a first message (sk-switchboard-dev is the development key of $TENANTS_FILE):

  curl -sS -X POST localhost:$INGRESS_PORT/v1/conversations/demo/messages \\
    -H 'Authorization: Bearer sk-switchboard-dev' -H 'Content-Type: application/json' \\
    -d '{"model":"sim","stream":true,"messages":[{"role":"user","content":"Hello, Switchboard!"}]}'

[run] and watch its answer stream in with the same key (the last 5 minutes are replayed, then it follows live):

  curl -N localhost:$EGRESS_PORT/v1/conversations/demo/events -H 'Authorization: Bearer sk-switchboard-dev'

[run] Ctrl-C stops everything.

MSG

# If a service dies on its own, stop the rest and say which one.
set +e
wait -n "${pids[@]}"
code=$?
if [ "$stopping" = 0 ]; then
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then echo "[run] ${names[i]} exited (status $code)" >&2; fi
  done
  stop_all
  exit 1
fi
