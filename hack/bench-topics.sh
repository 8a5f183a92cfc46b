#!/usr/bin/env bash
# `make bench-topics [N=1000] [TRAFFIC_TOPICS=200] [TRAFFIC_SECONDS=60]`: create N Topics at once
# and measure, against the local environment,
#   - seconds from the last create until every Topic is Ready,
#   - API writes the operator made per Topic (Topic patches and Events, from the apiserver's metrics),
#   - writes while idle (two resync periods after everything is Ready),
#   - then a traffic phase: events published continuously to TRAFFIC_TOPICS of the Topics for
#     TRAFFIC_SECONDS; status writes per busy Topic per minute and the operator's CPU,
#   - then a broker restart: NATS down for OUTAGE_SECONDS (default 15) and back; seconds until
#     every Topic is Ready again and the writes it cost,
#   - the operator's peak RSS after each phase.
# Appends a dated section to BENCHMARKS.md. A benchmark, not a test: it asserts nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${1:-1000}"
TRAFFIC_TOPICS="${TRAFFIC_TOPICS:-200}"
TRAFFIC_SECONDS="${TRAFFIC_SECONDS:-60}"
(( TRAFFIC_TOPICS <= N )) || TRAFFIC_TOPICS=$N
RESYNC=10
NS="bench-topics-$$"
DEV=target/dev-env

started_here=0
[[ -f $DEV/env ]] && (source "$DEV/env" && kubectl --request-timeout=3s get --raw /readyz >/dev/null 2>&1) || started_here=1
hack/cluster-up.sh >/dev/null
# shellcheck disable=SC1090
source "$DEV/env"
cargo build --locked --release --bin switchyard 2>&1 | tail -n 1
cargo bench --locked --bench publish_load --no-run 2>&1 | tail -n 1

operator_pid=""
cleanup() {
  # Leave nothing behind in a kept environment: switch the Topics to deletionPolicy Delete so the
  # still-running operator removes their streams as the namespace goes.
  if [[ -n $operator_pid && -n ${manifest:-} ]] && kill -0 "$operator_pid" 2>/dev/null; then
    sed 's/^  maxAge: 1h$/  maxAge: 1h\n  deletionPolicy: Delete/' "$manifest" |
      kubectl apply --server-side --force-conflicts -f - >/dev/null 2>&1 || true
    kubectl delete namespace "$NS" --timeout=120s >/dev/null 2>&1 || true
  fi
  [[ -n $operator_pid ]] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  rm -f "${manifest:-}"
  if (( started_here )); then hack/cluster-down.sh --quiet || true; fi
}
trap cleanup EXIT

kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established -f crds/ --timeout=60s >/dev/null
kubectl create namespace "$NS" >/dev/null

# Operator writes = apiserver write requests on topics and events (the bench's own creates are
# POSTs on topics, which are excluded). Server-side apply is counted under the verb APPLY.
operator_writes() {
  kubectl get --raw /metrics | python3 -c '
import re, sys
topics = events = 0
for line in sys.stdin:
    if not line.startswith("apiserver_request_total{"):
        continue
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", line))
    res, verb, sub = labels.get("resource"), labels.get("verb"), labels.get("subresource", "")
    if verb not in ("APPLY", "PATCH", "PUT", "POST", "DELETE"):
        continue
    value = float(line.rsplit(" ", 1)[1])
    if res == "topics" and not (verb == "POST" and sub == ""):
        topics += value
    elif res == "events":
        events += value
print(int(topics), int(events))
'
}

manifest="$(mktemp)"
for ((i = 0; i < N; i++)); do
  printf 'apiVersion: switchyard.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: t%04d\n  namespace: %s\nspec:\n  maxAge: 1h\n---\n' "$i" "$NS"
done >"$manifest"

target/release/switchyard run --namespace "$NS" --resync-interval "${RESYNC}s" --log-format json --http-addr off --leader-election off \
  >"$DEV/logs/bench-operator.log" 2>&1 &
operator_pid=$!
sleep 1
writes_before="$(operator_writes)"

first_create_at="$(date +%s.%N)"
kubectl create -f "$manifest" >/dev/null
applied_at="$(date +%s.%N)"

ready_count() {
  kubectl get topics -n "$NS" -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for t in items for c in t.get("status", {}).get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"))'
}
# Waits (at most 300 s after $1) until every Topic is Ready; sets $ready.
wait_all_ready() {
  local since="$1" now
  while :; do
    ready="$(ready_count)"
    (( ready >= N )) && break
    now="$(date +%s.%N)"
    if python3 -c "import sys; sys.exit(0 if $now - $since > 300 else 1)"; then
      echo "only $ready of $N Topics Ready after 300 s" >&2; break
    fi
    sleep 0.2
  done
}
wait_all_ready "$applied_at"
ready_at="$(date +%s.%N)"
writes_ready="$(operator_writes)"
sleep $((RESYNC * 2 + 2))
writes_idle="$(operator_writes)"
rss_kib="$(awk '/VmHWM/ {print $2}' "/proc/$operator_pid/status")"

# Operator CPU seconds so far (user + system), from /proc/PID/stat.
cpu_seconds() {
  python3 -c "import os; f=open('/proc/$operator_pid/stat').read().rsplit(')', 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))"
}
echo "traffic: $TRAFFIC_TOPICS Topics for $TRAFFIC_SECONDS s" >&2
writes_traffic_before="$(operator_writes)"
cpu_before="$(cpu_seconds)"
published="$(cargo bench --locked --bench publish_load -- "$NATS_URL" "$NS" "$TRAFFIC_TOPICS" "$TRAFFIC_SECONDS" 2>/dev/null | tail -n 1)"
cpu_after="$(cpu_seconds)"
writes_traffic_after="$(operator_writes)"
read -r stored failed rate <<<"$published"
read -r traffic_topics_before _ <<<"$writes_traffic_before"
read -r traffic_topics_after _ <<<"$writes_traffic_after"
traffic_writes="$(python3 -c "print(f'{($traffic_topics_after - $traffic_topics_before) / $TRAFFIC_TOPICS / ($TRAFFIC_SECONDS / 60):.2f}')")"
traffic_target="$(python3 -c "print(f'{1 + 60 / $RESYNC:.0f}')")"
cpu_percent="$(python3 -c "print(f'{($cpu_after - $cpu_before) / $TRAFFIC_SECONDS * 100:.1f}')")"
rss_traffic_kib="$(awk '/VmHWM/ {print $2}' "/proc/$operator_pid/status")"

# Broker restart: NATS stopped for OUTAGE_SECONDS (longer than a resync, so every Topic notices)
# and started again on the same port and store.
OUTAGE_SECONDS="${OUTAGE_SECONDS:-15}"
echo "broker restart: NATS down for $OUTAGE_SECONDS s" >&2
writes_outage_before="$(operator_writes)"
hack/cluster-down.sh --quiet nats-server
sleep "$OUTAGE_SECONDS"
not_ready_in_outage=$((N - $(ready_count)))
hack/cluster-up.sh nats >/dev/null 2>&1
back_at="$(date +%s.%N)"
wait_all_ready "$back_at"
recovered_at="$(date +%s.%N)"
writes_outage_after="$(operator_writes)"
read -r outage_topics_before outage_events_before <<<"$writes_outage_before"
read -r outage_topics_after outage_events_after <<<"$writes_outage_after"
recovery_seconds="$(python3 -c "print(f'{$recovered_at - $back_at:.1f}')")"
outage_writes="$(python3 -c "print(f'{($outage_topics_after - $outage_topics_before) / $N:.2f} status + {($outage_events_after - $outage_events_before) / $N:.2f} Event')")"
rss_outage_kib="$(awk '/VmHWM/ {print $2}' "/proc/$operator_pid/status")"

seconds="$(python3 -c "print(f'{$ready_at - $applied_at:.1f}')")"
create_seconds="$(python3 -c "print(f'{$applied_at - $first_create_at:.1f}')")"
read -r topics_before events_before <<<"$writes_before"
read -r topics_ready events_ready <<<"$writes_ready"
read -r topics_idle events_idle <<<"$writes_idle"
topic_writes="$(python3 -c "print(f'{($topics_ready - $topics_before) / $N:.2f}')")"
event_writes="$(python3 -c "print(f'{($events_ready - $events_before) / $N:.2f}')")"
idle=$((topics_idle + events_idle - topics_ready - events_ready))
rss_mib="$(python3 -c "print(f'{$rss_kib / 1024:.1f}')")"
rss_traffic_mib="$(python3 -c "print(f'{$rss_traffic_kib / 1024:.1f}')")"
rss_outage_mib="$(python3 -c "print(f'{$rss_outage_kib / 1024:.1f}')")"

versions="switchyard $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(kubectl version -o json | python3 -c 'import json,sys; print("kube-apiserver", json.load(sys.stdin)["serverVersion"]["gitVersion"])'), $(nats-server --version)"
machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m)"
report="$(cat <<MD

### bench-topics, $(date -u +%Y-%m-%dT%H:%MZ)
- Machine: $machine; $versions; release build, resync ${RESYNC}s
- Topics: $N (ready $ready of $N)
- Seconds from last create to all Ready: **$seconds** (target ≤ 15); creating all $N took $create_seconds s (kubectl, one request each), during which the operator was already reconciling
- Operator API writes per Topic to reach Ready: **$topic_writes** on the Topic (status) + **$event_writes** Event (StreamCreated) (target ≤ 2)
- Operator writes while idle for $((RESYNC * 2 + 2)) s: **$idle** (target 0)
- Operator peak RSS with $N Topics: **$rss_mib MiB** (target ≤ 20)
- Traffic: $stored events stored ($failed failed, $rate/s) on $TRAFFIC_TOPICS Topics for $TRAFFIC_SECONDS s
- Status writes per busy Topic per minute: **$traffic_writes** (target ≤ $traffic_target = 1 + 60/resync)
- Operator CPU during traffic: **$cpu_percent %** of one core; peak RSS after traffic: **$rss_traffic_mib MiB**
- Broker restart (NATS down $OUTAGE_SECONDS s; $not_ready_in_outage of $N Topics reported it): all Ready **$recovery_seconds s** after NATS was back ($ready of $N); writes per Topic over outage and recovery: **$outage_writes**; peak RSS **$rss_outage_mib MiB**
MD
)"
echo "$report"
[[ -f BENCHMARKS.md ]] || printf '# Benchmarks\n\nResults of `make bench-*`, newest last. Figures are from the machine named in each entry.\n' >BENCHMARKS.md
echo "$report" >>BENCHMARKS.md
