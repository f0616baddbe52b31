#!/usr/bin/env bash
# Stop what local_up.sh started and nothing else: the Ray head's and worker nodes' processes (those whose command line names this
# stack's own Ray temp dir; `ray stop` would end every Ray on the host), then MLflow and the S3 server by pid.
# The secrets in $STATE/secrets stay, for the next start; delete the directory to forget them.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE=$(cd "${REID_STACK_DIR:-runs/stack}" 2>/dev/null && pwd) || { echo "no local stack at ${REID_STACK_DIR:-runs/stack}"; exit 0; }

# Process ids whose command line contains this stack's Ray temp dir.
ray_pids() {
  local pid
  for pid in /proc/[0-9]*; do
    { tr '\0' ' ' < "$pid/cmdline"; } 2>/dev/null | grep -qF -- "$STATE/ray/" && echo "${pid#/proc/}"
  done
}

PIDS=$(ray_pids)
if [ -n "$PIDS" ]; then
  kill $PIDS 2>/dev/null || true
  for _ in $(seq 20); do PIDS=$(ray_pids); [ -z "$PIDS" ] && break; sleep 0.5; done
  [ -n "$PIDS" ] && kill -9 $PIDS 2>/dev/null || true
fi
rm -f "$STATE"/node-*.pid  # the worker nodes' raylets ran under the same temp dir: stopped above
for name in mlflow s3; do
  if [ -f "$STATE/$name.pid" ]; then
    pid=$(cat "$STATE/$name.pid")
    pkill -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$STATE/$name.pid"
  fi
done
echo "local stack stopped"
