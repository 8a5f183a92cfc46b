#!/usr/bin/env bash
# `make demo`: the local cluster and NATS, the operator running against them, the sample
# topology applied, and its status shown. Everything stays up; `make cluster-down` stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEV=target/dev-env
hack/cluster-up.sh
# shellcheck disable=SC1090
source "$DEV/env"

cargo build --locked --bin switchyard
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established -f crds/ --timeout=60s >/dev/null

pid_file="$DEV/pids/switchyard.pid"
if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  kill "$(cat "$pid_file")" && sleep 1
fi
mkdir -p "$DEV/logs" "$DEV/pids"
http_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
nohup target/debug/switchyard run --log-format json --nats-url "$NATS_URL" --http-addr "127.0.0.1:$http_port" \
  >"$DEV/logs/switchyard.log" 2>&1 &
echo $! >"$pid_file"
echo "operator running (pid $(cat "$pid_file")), logs in $DEV/logs/switchyard.log, metrics on http://127.0.0.1:$http_port/metrics"

kubectl apply -f config/samples/namespace.yaml >/dev/null
echo "Registering order.placed v1 first, so the registry shows the step to v2 (versions never go down):"
# A second demo run finds v2 in place already: the API server refuses to go back to v1.
if ! kubectl -n shop get eventschema order-placed >/dev/null 2>&1; then
  kubectl apply --server-side -f config/samples/schemas/order-placed-v1.yaml
  kubectl -n shop wait --for=jsonpath='{.status.latestVersion}'=1 eventschema/order-placed --timeout=60s >/dev/null
fi
echo
echo "Schema evolution, judged before anything reaches the cluster:"
target/debug/switchyard schema check --compatibility backward \
  config/samples/schemas/order-placed-v1.yaml config/samples/schemas/order-placed-v2.yaml || true
echo
echo "The order-processing topology (kubectl apply -k config/samples):"
kubectl apply --server-side -k config/samples
if ! kubectl -n shop wait --for=condition=Ready topic,subscription,deadletterpolicy,eventschema --all --timeout=90s; then
  echo "Not everything became Ready; the operator's last log lines:" >&2
  tail -n 20 "$DEV/logs/switchyard.log" >&2
  kubectl -n shop get switchyard -o wide >&2
  exit 1
fi
echo
kubectl get switchyard -n shop -o wide
echo
cat <<MSG
Try:
  source $DEV/env
  kubectl describe topic -n shop orders       # conditions, figures and Events
  kubectl describe subscription -n shop billing  # the consumers, lag, bound schema, workers and Events
  kubectl get deploy,pods -n shop              # worker pods (simulated by kwok: no container runs)
  kubectl get dlp -n shop                     # dead letters held per policy
  kubectl describe evs -n shop order-placed   # registered versions, Compatible and Ready
  kubectl edit topic -n shop users            # change maxAge and watch the stream follow
  make cluster-down                           # stop the operator, the cluster and NATS
MSG
