# Sourced by the CI scripts. start_eucora LOG [ARGS...] starts `eucora serve`
# on ports it picks itself (no race for a port chosen in advance), waits until
# grpc.health.v1 says SERVING, and sets EUCORA_PID, GRPC_ADDR and METRICS_ADDR.
start_eucora() {
  local log=$1 line=""
  shift
  "$CARGO_TARGET_DIR/debug/eucora" serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --log-format json "$@" \
    >"$log" 2>&1 &
  EUCORA_PID=$!
  for _ in $(seq 1 400); do
    line=$(grep -m1 '"listening"' "$log" || true)
    [ -n "$line" ] && break
    kill -0 "$EUCORA_PID" 2>/dev/null || { cat "$log"; echo "eucora exited" >&2; return 1; }
    sleep 0.05
  done
  [ -n "$line" ] || { cat "$log"; echo "eucora never said where it listens" >&2; return 1; }
  GRPC_ADDR=$(jq -r .fields.grpc_addr <<<"$line")
  METRICS_ADDR=$(jq -r .fields.metrics_addr <<<"$line")
  for _ in $(seq 1 400); do
    "$CARGO_TARGET_DIR/debug/eucora" health --addr "$GRPC_ADDR" 2>/dev/null && return 0
    sleep 0.05
  done
  cat "$log"
  echo "eucora never became SERVING" >&2
  return 1
}
