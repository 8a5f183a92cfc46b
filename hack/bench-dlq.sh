#!/usr/bin/env bash
# `make bench-dlq`: the dead-letter relay's latency (final failed delivery → copy stored, p50 and
# p99) and the dead letters a second it sustains (benches/dlq.rs says how). Appends a dated
# section to BENCHMARKS.md. A benchmark, not a test: it asserts nothing.
#
# Needs only nats-server, not the Kubernetes environment: it starts a private one with
# JetStream on free ports and a temporary store, and stops it on exit, so it never touches a
# server somebody else is using.
#
# Environment: EVENTS (events terminated in each throughput phase, default 20000), RATE
# (events/s of the latency phase, default 200), LATENCY_EVENTS (default 2000). The latency
# samples and the server's log are kept in <target dir>/bench-dlq-logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS="${EVENTS:-20000}"
RATE="${RATE:-200}"
LATENCY_EVENTS="${LATENCY_EVENTS:-2000}"

nats_server="$(hack/tools.sh --print-bin-dir)/nats-server"
[[ -x $nats_server ]] || { echo "bench-dlq: $nats_server is missing; run make tools" >&2; exit 1; }

# Builds go where cargo puts them (CARGO_TARGET_DIR may point elsewhere than target/).
target_dir="$(cargo metadata --locked --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
cargo bench --locked --bench dlq --no-run 2>&1 | tail -n 1

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-dlq.XXXXXX")"
logs="$target_dir/bench-dlq-logs"
nats_pid=""
cleanup() {
  if [[ -n $nats_pid ]]; then
    kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
  fi
  # Keep the samples and the log for a look afterwards; the store goes.
  rm -rf "$logs" && mkdir -p "$logs" && cp "$work"/*.log "$work"/*.txt "$logs"/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Port -1: the server picks free ports itself and writes them to the ports file, so there is
# no race between choosing a port and binding it.
"$nats_server" --addr 127.0.0.1 --port -1 --http_port -1 --ports_file_dir "$work" \
  --server_name bench-dlq --jetstream --store_dir "$work/store" >"$work/nats.log" 2>&1 &
nats_pid=$!
ports_file="$work/nats-server_$nats_pid.ports"
for _ in $(seq 100); do [[ -s $ports_file ]] && break; sleep 0.1; done
[[ -s $ports_file ]] || { echo "bench-dlq: nats-server did not start; see $logs/nats.log" >&2; exit 1; }
read -r nats_url monitor_url < <(python3 -c 'import json, sys; p = json.load(open(sys.argv[1])); print(p["nats"][0], p["monitoring"][0])' "$ports_file")
# /healthz?js-enabled-only=true answers ok once JetStream is enabled.
for _ in $(seq 100); do curl -fsS "$monitor_url/healthz?js-enabled-only=true" >/dev/null 2>&1 && break; sleep 0.1; done

# The figures only mean something on a quiet machine: record how busy it was just before.
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
results="$(cargo bench --locked --bench dlq -- \
  --nats-url "$nats_url" --nats-pid "$nats_pid" --work-dir "$work" \
  --rate "$RATE" --latency-events "$LATENCY_EVENTS" --events "$EVENTS" 2> >(grep --line-buffered -v '^ *\(Finished\|Running\)' >&2))"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m)"
report="$(cat <<MD

### bench-dlq, $(date -u +%Y-%m-%dT%H:%MZ)
- Machine: $machine, load average $load_before before the run and $load_after after it, bench at nice $(nice); switchyard $(git rev-parse --short HEAD 2>/dev/null || echo unknown), bench profile (release); $("$nats_server" --version), private server, file storage
- Command: \`make bench-dlq\` with EVENTS=$EVENTS RATE=$RATE LATENCY_EVENTS=$LATENCY_EVENTS
- Method: the library's relay (default settings: 256 advisories in flight, 30 s ack wait) in the bench process with a fixed route table, reading an advisory stream scoped to the origin stream; a handler in the same process terminates 256-byte events from a durable pull consumer with \`+TERM HandlerRejected: HTTP 400\`; a copy counts as stored when the relay reports it (after the dead-letter stream acknowledged it)
$results
MD
)"
echo "$report"
[[ -f BENCHMARKS.md ]] || printf '# Benchmarks\n\nResults of `make bench-*`, newest last. Figures are from the machine named in each entry.\n' >BENCHMARKS.md
echo "$report" >>BENCHMARKS.md
