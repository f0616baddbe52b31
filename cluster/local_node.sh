#!/usr/bin/env bash
# Add or kill one worker node of the stack local_up.sh started (several raylets on this machine, as Ray's own
# multi-node tests run them):
#   cluster/local_node.sh add ID [CPUS]   a raylet joining the head, with its own object store
#                                         (REID_NODE_OBJECT_STORE_MB, default 512), CPUS (default 1), the custom
#                                         resource node_ID (one unit) so that placement can be asked for and checked,
#                                         and its own Ray temp dir ($STATE/ray/nID) as a machine of its own has: a
#                                         node joining mid-job extracts the job's working directory there, not over
#                                         the copy the head's driver and the other nodes' workers run in
#   cluster/local_node.sh kill ID         SIGKILL that raylet and its workers, as a lost machine would go
#   cluster/local_node.sh list            the worker nodes started here and whether their raylet is alive
# Each node's raylet pid is kept in $STATE/node-ID.pid; local_down.sh stops every node with the head.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=$(cd "${REID_STACK_DIR:-runs/stack}" 2>/dev/null && pwd) || { echo "local_node.sh: no local stack at ${REID_STACK_DIR:-runs/stack}: run cluster/local_up.sh first" >&2; exit 2; }
[ -f "$STATE/stack.env" ] || { echo "local_node.sh: $STATE/stack.env missing: run cluster/local_up.sh first" >&2; exit 2; }
# shellcheck source=/dev/null
. "$STATE/stack.env"  # NODE_IP, RAY_PORT, RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH (a path, never the token)
export RAY_AUTH_MODE RAY_AUTH_TOKEN_PATH PATH="$VENV_BIN:$PATH"

raylets() { pgrep -f "/raylet/raylet .*$STATE/ray/" 2>/dev/null | sort || true; }

case "${1:-}" in
  add)
    id=${2:?local_node.sh add ID [CPUS]}
    cpus=${3:-1}
    [[ "$id" =~ ^[a-zA-Z0-9_]+$ ]] || { echo "local_node.sh: node id '$id' must be letters, digits or _" >&2; exit 2; }
    if [ -f "$STATE/node-$id.pid" ] && kill -0 "$(cat "$STATE/node-$id.pid")" 2>/dev/null; then
      echo "local_node.sh: node $id is running (pid $(cat "$STATE/node-$id.pid"))" >&2; exit 2
    fi
    before=$(raylets)
    ray start --address "$NODE_IP:$RAY_PORT" --node-ip-address "$NODE_IP" --num-cpus "$cpus" \
      --resources "{\"node_$id\": 1}" --object-store-memory $(( ${REID_NODE_OBJECT_STORE_MB:-512} * 1024 * 1024 )) \
      --temp-dir "$STATE/ray/n$id" --disable-usage-stats > "$STATE/node-$id.log" 2>&1 \
      || { tail -3 "$STATE/node-$id.log" >&2; echo "local_node.sh: ray start failed (log: $STATE/node-$id.log)" >&2; exit 1; }
    pid=$(comm -13 <(echo "$before") <(raylets) | head -1)
    [ -n "$pid" ] || { echo "local_node.sh: node $id started but its raylet was not found" >&2; exit 1; }
    echo "$pid" > "$STATE/node-$id.pid"
    echo "node $id: raylet pid $pid, $cpus CPU, resource node_$id"
    ;;
  kill)
    id=${2:?local_node.sh kill ID}
    [ -f "$STATE/node-$id.pid" ] || { echo "local_node.sh: no node $id here" >&2; exit 2; }
    pid=$(cat "$STATE/node-$id.pid")
    children=$(pgrep -P "$pid" 2>/dev/null || true)
    kill -9 "$pid" $children 2>/dev/null || true
    rm -f "$STATE/node-$id.pid"
    echo "node $id: raylet pid $pid killed"
    ;;
  list)
    for file in "$STATE"/node-*.pid; do
      [ -e "$file" ] || continue
      id=${file##*/node-}; id=${id%.pid}; pid=$(cat "$file")
      if kill -0 "$pid" 2>/dev/null; then echo "node $id: raylet pid $pid alive"; else echo "node $id: raylet pid $pid gone"; fi
    done
    ;;
  *)
    echo "usage: cluster/local_node.sh add ID [CPUS] | kill ID | list" >&2; exit 2 ;;
esac
