#!/usr/bin/env bash
# Start a local stack on 127.0.0.1: a Ray head (dashboard on), an S3-protocol server (moto) and an MLflow
# server (SQLite backend, artifacts in the S3 bucket). Prints the variables to export. Stop with local_down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${REID_STACK_DIR:-runs/stack}
S3_PORT=${REID_S3_PORT:-9000}
MLFLOW_PORT=${REID_MLFLOW_PORT:-5000}
BUCKET=${REID_BUCKET:-reid}
mkdir -p "$STATE"
VENV_BIN="$(pwd)/.venv/bin"
export PATH="$VENV_BIN:$PATH" RAY_AUTH_MODE=disabled
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
export MLFLOW_S3_ENDPOINT_URL="$AWS_ENDPOINT_URL"

nohup "$VENV_BIN/moto_server" -H 127.0.0.1 -p "$S3_PORT" > "$STATE/s3.log" 2>&1 &
echo $! > "$STATE/s3.pid"
for _ in $(seq 50); do curl -sf "$AWS_ENDPOINT_URL" > /dev/null && break; sleep 0.2; done
"$VENV_BIN/python" -c "import boto3; boto3.client('s3').create_bucket(Bucket='$BUCKET')"

MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false nohup "$VENV_BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" \
  --workers 1 --backend-store-uri "sqlite:///$(pwd)/$STATE/mlflow.db" \
  --artifacts-destination "s3://$BUCKET/mlflow" > "$STATE/mlflow.log" 2>&1 &
echo $! > "$STATE/mlflow.pid"

# The head runs with the project's venv first on PATH, so `ray job submit` entrypoints use it.
ray start --head --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 --temp-dir "$(pwd)/$STATE/ray" \
  --disable-usage-stats > "$STATE/ray.log" 2>&1
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$MLFLOW_PORT/health" > /dev/null && break; sleep 0.3; done

cat <<VARS
export RAY_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=disabled
export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY AWS_REGION=$AWS_REGION
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT MLFLOW_S3_ENDPOINT_URL=$AWS_ENDPOINT_URL
VARS
