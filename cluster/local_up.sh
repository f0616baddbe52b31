#!/usr/bin/env bash
# Start a local stack: a Ray head (dashboard on), REID_STACK_WORKERS worker nodes (default 0; each a raylet of
# its own on this machine with REID_NODE_CPUS CPUs, default 1, and the resource node_<i>: cluster/local_node.sh),
# an S3-protocol server (moto) and an MLflow server (SQLite backend, artifacts in the S3 bucket). REID_HEAD_CPUS
# caps the head's CPUs, REID_HEAD_OBJECT_STORE_MB its object store (default 1024; each worker node's:
# REID_NODE_OBJECT_STORE_MB, default 512), REID_DASHBOARD_AGENT_PORT the head's job agent (Ray's 52365; another Ray
# on this host holds that one). Prints the variables to export. Stop with local_down.sh.
#
# Doors. REID_STACK_HOST (default 127.0.0.1) is the address Ray and MLflow listen on. Beyond loopback both are
# locked, always: Ray with token authentication (RAY_AUTH_MODE=token: its dashboard, job API and GCS want the
# token) and MLflow behind its basic-auth app (every API call wants the user and password). On loopback they are
# open unless REID_STACK_AUTH=1 (only this machine reaches them). The S3 server (moto) checks no credentials at
# all, so it stays on 127.0.0.1 whatever the host: MLflow proxies artifacts, remote clients never need it.
#
# Secrets, each read from the environment when set, else generated once into $STATE/secrets (mode 600, reused at
# the next start; never printed, never in this file): RAY_AUTH_TOKEN -> secrets/ray_token; MLFLOW_TRACKING_PASSWORD
# (the admin's, user MLFLOW_TRACKING_USERNAME, default admin) -> secrets/mlflow_password;
# MLFLOW_FLASK_SERVER_SECRET_KEY (MLflow's CSRF key) -> secrets/mlflow_flask_key.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
mkdir -p "${REID_STACK_DIR:-runs/stack}"
STATE=$(cd "${REID_STACK_DIR:-runs/stack}" && pwd)
HOST=${REID_STACK_HOST:-127.0.0.1}
S3_PORT=${REID_S3_PORT:-9000}
MLFLOW_PORT=${REID_MLFLOW_PORT:-5000}
RAY_PORT=${REID_RAY_PORT:-6379}
DASHBOARD_PORT=${REID_DASHBOARD_PORT:-8265}
BUCKET=${REID_BUCKET:-reid}
VENV_BIN="$ROOT/.venv/bin"
export PATH="$VENV_BIN:$PATH"

case "$HOST" in 0.0.0.0) NODE_IP=$(hostname -I | cut -d' ' -f1) ;; *) NODE_IP=$HOST ;; esac
loopback() { case "$1" in 127.*|localhost|::1) return 0 ;; *) return 1 ;; esac; }
AUTH=${REID_STACK_AUTH:-}
if ! loopback "$HOST"; then
  if [ "$AUTH" = 0 ]; then
    echo "local_up.sh: refusing REID_STACK_AUTH=0 on $HOST: beyond loopback Ray and MLflow always ask for credentials" >&2
    exit 2
  fi
  AUTH=1
fi
AUTH=${AUTH:-0}

# secret NAME FILE: the variable NAME when set, else the file's content, else a new random secret in the file.
secret() {
  local file="$STATE/secrets/$2"
  (umask 077 && mkdir -p "$STATE/secrets")
  if [ -n "${!1:-}" ]; then
    (umask 077 && printf '%s' "${!1}" > "$file")
  elif [ ! -s "$file" ]; then
    (umask 077 && "$VENV_BIN/python" -c "import secrets; print(secrets.token_urlsafe(32), end='')" > "$file")
  fi
  echo "$file"
}

export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
export MLFLOW_S3_ENDPOINT_URL="$AWS_ENDPOINT_URL"

nohup "$VENV_BIN/moto_server" -H 127.0.0.1 -p "$S3_PORT" > "$STATE/s3.log" 2>&1 &
echo $! > "$STATE/s3.pid"
for _ in $(seq 50); do curl -sf "$AWS_ENDPOINT_URL" > /dev/null && break; sleep 0.2; done
"$VENV_BIN/python" -c "import boto3; boto3.client('s3').create_bucket(Bucket='$BUCKET')"

MLFLOW_ARGS=()
if [ "$AUTH" = 1 ]; then
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH
  RAY_AUTH_TOKEN_PATH=$(secret RAY_AUTH_TOKEN ray_token)
  unset RAY_AUTH_TOKEN  # Ray reads the file; the value stays out of every process's environment
  export MLFLOW_TRACKING_USERNAME=${MLFLOW_TRACKING_USERNAME:-admin}
  MLFLOW_PASSWORD_FILE=$(secret MLFLOW_TRACKING_PASSWORD mlflow_password)
  FLASK_KEY_FILE=$(secret MLFLOW_FLASK_SERVER_SECRET_KEY mlflow_flask_key)
  (umask 077 && printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///%s/mlflow_auth.db\nadmin_username = %s\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
    "$STATE" "$MLFLOW_TRACKING_USERNAME" > "$STATE/mlflow_auth.ini")
  MLFLOW_ARGS=(--app-name basic-auth)
else
  export RAY_AUTH_MODE=disabled
fi

# The admin password and the CSRF key reach the MLflow server only (a subshell's environment), from their files.
(
  if [ "$AUTH" = 1 ]; then
    MLFLOW_AUTH_ADMIN_PASSWORD=$(cat "$MLFLOW_PASSWORD_FILE") MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$FLASK_KEY_FILE")
    export MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY MLFLOW_AUTH_CONFIG_PATH="$STATE/mlflow_auth.ini"
  fi
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec nohup "$VENV_BIN/mlflow" server "${MLFLOW_ARGS[@]}" --host "$HOST" \
    --port "$MLFLOW_PORT" --workers 1 --backend-store-uri "sqlite:///$STATE/mlflow.db" \
    --artifacts-destination "s3://$BUCKET/mlflow" > "$STATE/mlflow.log" 2>&1
) &
echo $! > "$STATE/mlflow.pid"

# The head runs with the project's venv first on PATH, so `ray job submit` entrypoints use it; with auth its jobs
# inherit the MLflow user and read the password from its file (tracking clients take MLFLOW_TRACKING_PASSWORD).
(
  if [ "$AUTH" = 1 ]; then
    MLFLOW_TRACKING_PASSWORD=$(cat "$MLFLOW_PASSWORD_FILE")
    export MLFLOW_TRACKING_PASSWORD
  fi
  exec ray start --head --node-ip-address "$NODE_IP" --port "$RAY_PORT" --dashboard-host "$HOST" \
    --dashboard-port "$DASHBOARD_PORT" --dashboard-agent-listen-port "${REID_DASHBOARD_AGENT_PORT:-52365}" \
    --temp-dir "$STATE/ray" --disable-usage-stats \
    --object-store-memory $(( ${REID_HEAD_OBJECT_STORE_MB:-1024} * 1024 * 1024 )) \
    ${REID_HEAD_CPUS:+--num-cpus "$REID_HEAD_CPUS"} > "$STATE/ray.log" 2>&1
) || { tail -3 "$STATE/ray.log" >&2; echo "local_up.sh: ray start failed (log: $STATE/ray.log); stop the rest with local_down.sh" >&2; exit 1; }
# What cluster/local_node.sh needs to add a worker node (addresses and the token's file, never a secret).
printf 'NODE_IP=%q\nRAY_PORT=%q\nRAY_AUTH_MODE=%q\nRAY_AUTH_TOKEN_PATH=%q\nVENV_BIN=%q\n' "$NODE_IP" "$RAY_PORT" \
  "$RAY_AUTH_MODE" "${RAY_AUTH_TOKEN_PATH:-}" "$VENV_BIN" > "$STATE/stack.env"
for i in $(seq 1 "${REID_STACK_WORKERS:-0}"); do
  bash cluster/local_node.sh add "$i" "${REID_NODE_CPUS:-1}" > /dev/null \
    || { echo "local_up.sh: worker node $i did not start; stop the rest with local_down.sh" >&2; exit 1; }
done
for _ in $(seq 100); do curl -sf "http://$NODE_IP:$MLFLOW_PORT/health" > /dev/null && break; sleep 0.3; done
curl -sf "http://$NODE_IP:$MLFLOW_PORT/health" > /dev/null || { tail -3 "$STATE/mlflow.log" >&2;
  echo "local_up.sh: MLflow did not come up (log: $STATE/mlflow.log); stop the rest with local_down.sh" >&2; exit 1; }

# What to export: addresses and the files secrets live in, never a secret (your own AWS keys are not repeated).
echo "export RAY_ADDRESS=http://$NODE_IP:$DASHBOARD_PORT RAY_AUTH_MODE=$RAY_AUTH_MODE${RAY_AUTH_TOKEN_PATH:+ RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH}"
if [ "$AWS_SECRET_ACCESS_KEY" = local ]; then  # moto's placeholders
  echo "export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=$AWS_REGION"
else
  echo "export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_REGION=$AWS_REGION"
fi
echo "export MLFLOW_TRACKING_URI=http://$NODE_IP:$MLFLOW_PORT MLFLOW_S3_ENDPOINT_URL=$AWS_ENDPOINT_URL"
if [ "$AUTH" = 1 ]; then
  echo "export MLFLOW_TRACKING_USERNAME=$MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD=\"\$(cat $MLFLOW_PASSWORD_FILE)\""
fi
