#!/usr/bin/env bash
# `make bench-subscriptions [N=500]`: against the local environment, measure
#   - N Topics and N Subscriptions (each on its own Topic, no workers) created in one go: seconds
#     from the last create until every one is Ready, the operator's Kubernetes API writes per
#     object by kind and by what was written (its counter switchyard_kube_writes_total, read from
#     its /metrics; the apiserver's own request count is shown beside it as a cross-check that
#     also sees writes which failed), and its peak RSS,
#   - writes in the first resync period after that (live figures catching up: each Topic now
#     counts its Subscription's consumer) and in the second (truly idle),
#   - autoscaling: one more Topic with a Subscription whose worker autoscales (min 0, max 10,
#     lagPerReplica 100); a backlog of BACKLOG (450) events is published, and the worker
#     Deployment's .spec.replicas is polled every 200 ms: seconds from the last publish ack until
#     it reaches ceil(BACKLOG/100) = 5, then, once the backlog is acked through the durable
#     consumer, seconds until it is back at 0. An autoscaler that does not react is reported as
#     such, not treated as a failure.
#   - with LONG_IDLE=S (`make bench-idle`: 200 + 200 for 15 minutes), a long idle phase after
#     that: the operator's CPU time (from /proc) as a share of one core, its writes by kind and
#     what was written, and its peak RSS.
# Appends a dated section to BENCHMARKS.md. A benchmark, not a test: it asserts nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${1:-500}"
# The operator's default resync: the load phase (about 20 s at N=500) then sees no resync, so
# its writes are those that bring objects to Ready, and the idle phase shows what resyncs cost.
RESYNC="${RESYNC:-60}"
BACKLOG="${BACKLOG:-450}"
LONG_IDLE="${LONG_IDLE:-0}"
LAG_PER_REPLICA=100
WANT_REPLICAS=$(((BACKLOG + LAG_PER_REPLICA - 1) / LAG_PER_REPLICA))
# How long the autoscaler gets to reach WANT_REPLICAS before the bench says it did not.
REACT_LIMIT=30
# Scaling down waits out the 30 s stabilization window, plus the lag readings (every
# --autoscale-interval, or at resync) that notice the drain.
SCALE_DOWN_LIMIT=90
NS="bench-subs-$$"
DEV=target/dev-env

started_here=0
# shellcheck disable=SC1090,SC1091
[[ -f $DEV/env ]] && (source "$DEV/env" && kubectl --request-timeout=3s get --raw /readyz >/dev/null 2>&1) || started_here=1

work="$(mktemp -d)"
operator_pid=""
backlog_bin=""
cleanup() {
  # The operator (while it runs) releases the Subscriptions' finalizers and deletes their
  # consumers as the namespace goes. Topics are Retain, so their streams stay: they are
  # deleted directly afterwards, which also covers a run whose operator died.
  if [[ -n $operator_pid ]] && kill -0 "$operator_pid" 2>/dev/null; then
    kubectl delete namespace "$NS" --timeout=180s >/dev/null 2>&1 || true
  fi
  if [[ -n $operator_pid ]]; then kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true; fi
  if [[ -n $backlog_bin && -n ${NATS_URL:-} ]]; then
    "$backlog_bin" delete-streams "$NATS_URL" "${NS}_" >/dev/null 2>&1 || echo "could not delete the streams ${NS}_*" >&2
  fi
  # Without an operator nobody releases the finalizers; drop them so the namespace can go.
  if kubectl get namespace "$NS" >/dev/null 2>&1; then
    local obj
    for obj in $(kubectl get topics,subscriptions -n "$NS" -o name 2>/dev/null); do
      kubectl patch -n "$NS" "$obj" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  if (( started_here )); then hack/cluster-down.sh --quiet || true; fi
}
trap cleanup EXIT

hack/cluster-up.sh >/dev/null
# shellcheck disable=SC1090,SC1091
source "$DEV/env"

# executable NAME: path of the executable built for the target NAME, from cargo's JSON messages
# on stdin (so CARGO_TARGET_DIR is honoured; a bench build also reports the crate's binaries).
executable() {
  python3 -c '
import json, sys
paths = [m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m.get("executable")
         and m["target"]["name"] == sys.argv[1]]
print(paths[-1])' "$1"
}
operator_bin="$(cargo build --locked --release --bin switchyard --message-format=json 2>/dev/null | executable switchyard)"
backlog_bin="$(cargo bench --locked --bench backlog --no-run --message-format=json 2>/dev/null | executable backlog)"

kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established -f crds/ --timeout=60s >/dev/null
kubectl create namespace "$NS" >/dev/null

# Microseconds since the epoch, and a difference of two of them in seconds.
now_us() { local t="$EPOCHREALTIME"; echo "${t//[.,]/}"; }
seconds() { awk -v us="$(($2 - $1))" 'BEGIN { printf "%.1f", us / 1e6 }'; }
rss_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$operator_pid/status"; }
# The operator's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$operator_pid/stat"; }

metrics_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$operator_bin" run --namespace "$NS" --nats-url "$NATS_URL" --resync-interval "${RESYNC}s" --log-format json \
  --http-addr "127.0.0.1:$metrics_port" --leader-election off >"$DEV/logs/bench-subscriptions-operator.log" 2>&1 &
operator_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

# snapshot NAME: the operator's write and reconcile counters, and the apiserver's request
# counts, at this moment.
snapshot() {
  curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -E '^switchyard_(kube_writes|reconciles)_total' >"$work/$1.prom" || true
  kubectl get --raw /metrics | grep '^apiserver_request_total{' >"$work/$1.api" || true
}

# counter FROM TO METRIC [LABEL=VALUE...]: growth of an operator counter between two snapshots,
# summed over the series matching the labels given.
counter() {
  python3 - "$work/$1.prom" "$work/$2.prom" "$3" "${@:4}" <<'PY'
import re, sys
def load(path):
    out = {}
    for line in open(path):
        name, _, rest = line.partition("{")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        out[(name, tuple(sorted(labels.items())))] = float(line.rsplit(" ", 1)[1])
    return out
before, after = load(sys.argv[1]), load(sys.argv[2])
want = dict(a.split("=", 1) for a in sys.argv[4:])
print(int(sum(v - before.get(k, 0) for k, v in after.items()
              if k[0] == sys.argv[3] and all(dict(k[1]).get(l) == x for l, x in want.items()))))
PY
}
writes() { counter "$1" "$2" switchyard_kube_writes_total "${@:3}"; }

# api_writes FROM TO: write requests the apiserver served on topics, subscriptions, events and
# deployments, failed ones included, except the bench's own creates (POST without subresource
# on topics and subscriptions). Server-side apply is counted under the verb APPLY.
api_writes() {
  python3 - "$work/$1.api" "$work/$2.api" <<'PY'
import re, sys
def load(path):
    total = 0.0
    for line in open(path):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        res, verb, sub = labels.get("resource"), labels.get("verb"), labels.get("subresource", "")
        if verb not in ("APPLY", "PATCH", "PUT", "POST", "DELETE"):
            continue
        if res in ("topics", "subscriptions") and not (verb == "POST" and sub == ""):
            total += float(line.rsplit(" ", 1)[1])
        elif res in ("events", "deployments"):
            total += float(line.rsplit(" ", 1)[1])
    return total
print(int(load(sys.argv[2]) - load(sys.argv[1])))
PY
}

# ready_counts: "<Topics Ready> <Subscriptions Ready>" among the first phase's objects.
ready_counts() {
  kubectl get topics,subscriptions -n "$NS" -l bench=load -o json | python3 -c '
import json, sys
ready = {"Topic": 0, "Subscription": 0}
for item in json.load(sys.stdin)["items"]:
    if any(c["type"] == "Ready" and c["status"] == "True" for c in item.get("status", {}).get("conditions", [])):
        ready[item["kind"]] += 1
print(ready["Topic"], ready["Subscription"])'
}

# Each Subscription right after its Topic, as a team's file would have them: some
# Subscriptions meet a Topic whose stream does not exist yet, and wait for it.
manifest="$work/load.yaml"
for ((i = 0; i < N; i++)); do
  printf 'apiVersion: switchyard.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: t-%04d\n  namespace: %s\n  labels: {bench: load}\nspec:\n  maxAge: 1h\n---\n' "$i" "$NS"
  printf 'apiVersion: switchyard.dev/v1alpha1\nkind: Subscription\nmetadata:\n  name: s-%04d\n  namespace: %s\n  labels: {bench: load}\nspec:\n  topicRef: {name: t-%04d}\n---\n' "$i" "$NS" "$i"
done >"$manifest"

echo "creating $N Topics and $N Subscriptions" >&2
snapshot start
first_create_at="$(now_us)"
kubectl create -f "$manifest" >/dev/null
applied_at="$(now_us)"
ready_topics=0 ready_subs=0
while :; do
  read -r ready_topics ready_subs <<<"$(ready_counts)"
  (( ready_topics >= N && ready_subs >= N )) && break
  if (( $(now_us) - applied_at > 300000000 )); then
    echo "only $ready_topics Topics and $ready_subs Subscriptions of $N each Ready after 300 s" >&2; break
  fi
  sleep 0.2
done
ready_at="$(now_us)"
snapshot ready
rss_ready="$(rss_mib)"

echo "idle for two resyncs, $((RESYNC * 2 + 4)) s" >&2
sleep $((RESYNC + 2))
snapshot resync1
sleep $((RESYNC + 2))
snapshot idle
rss_idle="$(rss_mib)"

long_idle_row=""
if (( LONG_IDLE > 0 )); then
  echo "idle for $LONG_IDLE s more" >&2
  ticks_before="$(cpu_ticks)"
  long_idle_from="$(now_us)"
  sleep "$LONG_IDLE"
  ticks_after="$(cpu_ticks)"
  long_idle_seconds="$(seconds "$long_idle_from" "$(now_us)")"
  snapshot long_idle
  rss_long_idle="$(rss_mib)"
  cpu_share="$(awk -v t="$((ticks_after - ticks_before))" -v hz="$(getconf CLK_TCK)" -v s="$long_idle_seconds" \
    'BEGIN { printf "%.3f", 100 * t / hz / s }')"
  long_writes="$(writes idle long_idle)"
  long_status="$(writes idle long_idle write=status)"
  long_idle_row="| idle for $long_idle_seconds s after that: operator CPU (share of one core) / writes / of which status / peak RSS | **$cpu_share %** ($((ticks_after - ticks_before)) ticks at $(getconf CLK_TCK)/s) / **$long_writes** / **$long_status** ($(api_writes idle long_idle) apiserver) / **$rss_long_idle MiB** | ≤ 1 % / 0 / 0 / — |"
fi

# Autoscaling. The worker's pods never run a dispatcher (kwok simulates them), so only this
# bench consumes the backlog.
echo "autoscaling: backlog of $BACKLOG events" >&2
cat >"$work/auto.yaml" <<YAML
apiVersion: switchyard.dev/v1alpha1
kind: Topic
metadata: {name: auto, namespace: $NS}
spec: {maxAge: 1h}
---
apiVersion: switchyard.dev/v1alpha1
kind: Subscription
metadata: {name: auto, namespace: $NS}
spec:
  topicRef: {name: auto}
  worker:
    image: registry.example/handler:1
    autoscaling: {minReplicas: 0, maxReplicas: 10, lagPerReplica: $LAG_PER_REPLICA, stabilizationWindow: 30s}
YAML
auto_created_at="$(now_us)"
kubectl create -f "$work/auto.yaml" >/dev/null
auto_ready="no"
kubectl wait -n "$NS" --for=condition=Ready topic/auto subscription/auto --timeout=120s >/dev/null 2>&1 && auto_ready="yes"
auto_ready_seconds="$(seconds "$auto_created_at" "$(now_us)")"

# Current .spec.replicas of the worker Deployment, or "none" while it does not exist.
replicas() {
  local r
  r="$(kubectl get deployment auto-worker -n "$NS" -o jsonpath='{.spec.replicas}' 2>/dev/null)" || r=""
  echo "${r:-none}"
}
subscription_status() {
  kubectl get subscription auto -n "$NS" -o jsonpath='lag {.status.lag}, desiredWorkers {.status.desiredWorkers}, scaling "{.status.scaling}"' 2>/dev/null || echo "unreadable"
}
replicas_before="$(replicas)"
snapshot auto_before
read -r published publish_failed published_at <<<"$("$backlog_bin" publish "$NATS_URL" "$NS.auto.order.placed" "$BACKLOG")"

# Scale-up: poll every 200 ms until WANT_REPLICAS or REACT_LIMIT.
first_change="" reached="" peak="$replicas_before"
while (( $(now_us) - published_at < REACT_LIMIT * 1000000 )); do
  r="$(replicas)"
  t="$(now_us)"
  if [[ $r != "$replicas_before" && -z $first_change ]]; then first_change="$(seconds "$published_at" "$t")"; fi
  if [[ $r =~ ^[0-9]+$ ]] && { ! [[ $peak =~ ^[0-9]+$ ]] || (( r > peak )); }; then peak="$r"; fi
  if [[ $r =~ ^[0-9]+$ ]] && (( r >= WANT_REPLICAS )); then reached="$(seconds "$published_at" "$t")"; break; fi
  sleep 0.2
done
status_loaded="$(subscription_status)"
if [[ -n $reached ]]; then
  scale_up="**$reached s** to reach $WANT_REPLICAS replicas (first change after $first_change s)"
elif [[ -n $first_change ]]; then
  scale_up="autoscaler reached only $peak of $WANT_REPLICAS replicas within $REACT_LIMIT s (first change after $first_change s)"
else
  scale_up="autoscaler did not react within $REACT_LIMIT s (replicas stayed $replicas_before)"
fi
echo "$scale_up; Subscription status: $status_loaded" >&2

# Drain through the durable consumer with a plain pull client, then wait for scale-down.
# A consumer that is missing (the Subscription never became Ready) drains nothing.
read -r drained drained_at <<<"$("$backlog_bin" drain "$NATS_URL" "${NS}_auto" "sub_${NS}_auto" "$BACKLOG" || echo "0 $(now_us)")"
scale_down="not measured (no scale-up)"
if [[ -z $first_change ]]; then
  # Give the operator a resync to read the drained consumer, so the status below shows it.
  sleep $((RESYNC + 1))
else
  scale_down=""
  while (( $(now_us) - drained_at < SCALE_DOWN_LIMIT * 1000000 )); do
    if [[ $(replicas) == 0 ]]; then scale_down="**$(seconds "$drained_at" "$(now_us)") s** to return to 0"; break; fi
    sleep 0.2
  done
  [[ -n $scale_down ]] || scale_down="not back at 0 within $SCALE_DOWN_LIMIT s (replicas $(replicas))"
fi
status_drained="$(subscription_status)"
snapshot auto_after
auto_writes="$(writes auto_before auto_after kind=Subscription)"
rss_end="$(rss_mib)"

# Figures.
create_seconds="$(seconds "$first_create_at" "$applied_at")"
ready_seconds="$(seconds "$applied_at" "$ready_at")"
per() { awk -v n="$1" -v d="$2" 'BEGIN { printf "%.2f", n / d }'; }
# breakdown FROM TO KIND: what KIND wrote per object between two snapshots, e.g.
# "status 1.00, event 1.00".
breakdown() {
  local w n out=""
  for w in finalizers status child event; do
    n="$(writes "$1" "$2" "kind=$3" "write=$w")"
    if (( n > 0 )); then out+="${out:+, }$w $(per "$n" "$N")"; fi
  done
  echo "${out:-none}"
}
# Writes to the objects themselves (finalizers, status, children); Events are counted apart.
object_writes() {
  echo $(($(writes "$1" "$2" "${@:3}") - $(writes "$1" "$2" "${@:3}" write=event)))
}
topic_writes="$(object_writes start ready kind=Topic)"
sub_writes="$(object_writes start ready kind=Subscription)"
all_writes="$(object_writes start ready)"
all_events="$(writes start ready write=event)"
api_ready="$(api_writes start ready)"
resync1_writes="$(writes ready resync1)"
resync1_topic="$(breakdown ready resync1 Topic)"
resync1_sub="$(breakdown ready resync1 Subscription)"
idle_writes="$(writes resync1 idle)"
idle_topic="$(breakdown resync1 idle Topic)"
idle_sub="$(breakdown resync1 idle Subscription)"
reconciles_topic="$(per "$(counter start ready switchyard_reconciles_total kind=Topic)" "$N")"
reconciles_sub="$(per "$(counter start ready switchyard_reconciles_total kind=Subscription)" "$N")"
api_idle="$(api_writes resync1 idle)"
# Subscriptions that had to wait for their Topic: reconciles that ended in these reasons.
waited="$(counter start ready switchyard_reconciles_total kind=Subscription reason=TopicNotReady) TopicNotReady, $(counter start ready switchyard_reconciles_total kind=Subscription reason=TopicNotFound) TopicNotFound"
log_levels="$(python3 -c '
import json, sys
counts = {}
for line in open(sys.argv[1]):
    try:
        level = json.loads(line).get("level", "?")
    except ValueError:
        level = "unparsed"
    counts[level] = counts.get(level, 0) + 1
print(", ".join(f"{n} {l}" for l, n in sorted(counts.items())))' "$DEV/logs/bench-subscriptions-operator.log")"

versions="switchyard $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(kubectl version -o json | python3 -c 'import json,sys; print("kube-apiserver", json.load(sys.stdin)["serverVersion"]["gitVersion"])'), $(nats-server --version)"
machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m)"
report="$(cat <<MD

### bench-subscriptions, $(date -u +%Y-%m-%dT%H:%MZ)
- Machine: $machine; $versions; release build, resync ${RESYNC}s
- Load: $N Topics + $N Subscriptions (WorkerGroup, no worker), each Subscription created right after its Topic in one \`kubectl create\` ($create_seconds s, one request each, the operator reconciling meanwhile); Ready: $ready_topics Topics, $ready_subs Subscriptions; reconciles until Ready: $reconciles_topic per Topic, $reconciles_sub per Subscription, of which $waited
- Autoscaling: Subscription with worker autoscaling (min 0, max 10, lagPerReplica $LAG_PER_REPLICA, stabilizationWindow 30s) Ready: $auto_ready after $auto_ready_seconds s; $published events published ($publish_failed failed), $drained acked back through \`sub_${NS}_auto\`
- Subscription status when the wait for scale-up ended: $status_loaded; at the end, after the drain: $status_drained
- Operator log: $log_levels

| measure | result | target |
|---|---|---|
| all $N + $N Ready, from the last create | **$ready_seconds s** | — |
| operator writes to the object per Topic, until Ready | **$(per "$topic_writes" "$N")** (all writes: $(breakdown start ready Topic)) | ≤ 2 |
| operator writes to the object per Subscription, until Ready | **$(per "$sub_writes" "$N")** (all writes: $(breakdown start ready Subscription)) | ≤ 2 |
| operator writes to the objects per object, all; Events beside them | **$(per "$all_writes" $((2 * N)))**; Events $(per "$all_events" $((2 * N))) | ≤ 2 |
| apiserver write requests per object, Events included (cross-check, failed ones included) | $(per "$api_ready" $((2 * N))) | — |
| writes in the first resync after Ready, per object | $(per "$resync1_writes" $((2 * N))) (per Topic: $resync1_topic; per Subscription: $resync1_sub) | — |
| writes in the second resync, idle, per object | **$(per "$idle_writes" $((2 * N)))** ($idle_writes operator, $api_idle apiserver; per Topic: $idle_topic; per Subscription: $idle_sub) | ~0 |
| operator peak RSS: after Ready / after idle / at the end | **$rss_ready** / $rss_idle / $rss_end MiB | ≤ 96 |
| backlog of $BACKLOG → $WANT_REPLICAS worker replicas, from the last publish ack | $scale_up | ≤ 5 s |
| back to 0 replicas after the drain, from the last ack | $scale_down | — |
| operator writes on the autoscaled Subscription, publish to end | $auto_writes | — |${long_idle_row:+
$long_idle_row}
MD
)"
echo "$report"
# shellcheck disable=SC2016 # the backquotes are Markdown
[[ -f BENCHMARKS.md ]] || printf '# Benchmarks\n\nResults of `make bench-*`, newest last. Figures are from the machine named in each entry.\n' >BENCHMARKS.md
echo "$report" >>BENCHMARKS.md
