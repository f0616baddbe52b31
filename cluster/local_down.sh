#!/usr/bin/env bash
# Stop what local_up.sh started: the Ray head (by its own temp dir), MLflow and the S3 server (by pid).
set -uo pipefail
cd "$(dirname "$0")/.."
STATE=${REID_STACK_DIR:-runs/stack}
RAY_AUTH_MODE=disabled .venv/bin/ray stop --force > /dev/null 2>&1 || true
for name in mlflow s3; do
  if [ -f "$STATE/$name.pid" ]; then
    pkill -P "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    rm -f "$STATE/$name.pid"
  fi
done
echo "local stack stopped"
