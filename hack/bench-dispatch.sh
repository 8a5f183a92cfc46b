#!/usr/bin/env bash
# `make bench-dispatch [CONCURRENCY=64]` (a comma-separated list, e.g. 1,16,64): how fast the
# release `switchyard dispatch` moves 256-byte events from a JetStream pull consumer to a local
# HTTP handler, next to a bare pull consumer and a bare HTTP client measured in the same run
# (benches/dispatch.rs says how); latency added at half load; the dispatcher's peak RSS.
# Appends a dated section to BENCHMARKS.md. A benchmark, not a test: it asserts nothing.
#
# Needs only nats-server, not the Kubernetes environment: it starts a private one with
# JetStream on free ports and a temporary store, and stops it on exit, so it never touches a
# server somebody else is using.
#
# Environment: EVENTS (pre-filled stream, default 1500000), WINDOW_SECONDS (each throughput
# window, default 5), LATENCY_SECONDS (each fixed-rate latency phase, default 10), LIGHT_RATE
# (events/s of the extra latency phases at a light load, default 1000; 0 skips them).
# The dispatchers' logs and the latency samples are kept in <target dir>/bench-dispatch-logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONCURRENCY="${1:-64}"
EVENTS="${EVENTS:-1500000}"
WINDOW_SECONDS="${WINDOW_SECONDS:-5}"
LATENCY_SECONDS="${LATENCY_SECONDS:-10}"
LIGHT_RATE="${LIGHT_RATE:-1000}"

nats_server="$(hack/tools.sh --print-bin-dir)/nats-server"
[[ -x $nats_server ]] || { echo "bench-dispatch: $nats_server is missing; run make tools" >&2; exit 1; }

# Builds go where cargo puts them (CARGO_TARGET_DIR may point elsewhere than target/).
target_dir="$(cargo metadata --locked --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build --locked --release --bin switchyard 2>&1 | tail -n 1
cargo bench --locked --bench dispatch --no-run 2>&1 | tail -n 1

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-dispatch.XXXXXX")"
logs="$target_dir/bench-dispatch-logs"
# JetStream refuses to store more than the disk can take ("insufficient resources"): about 300
# bytes per event are needed, twice that to be safe. A tmpfs (TMPDIR=/dev/shm) does as well.
need_kib=$((EVENTS * 600 / 1024))
free_kib="$(df --output=avail -k "$work" | tail -n 1 | tr -d ' ')"
if (( free_kib < need_kib )); then
  echo "bench-dispatch: $work has $((free_kib / 1024)) MiB free, the stream needs about $((need_kib / 1024)) MiB; set TMPDIR elsewhere or lower EVENTS" >&2
  rm -rf "$work"
  exit 1
fi
nats_pid=""
cleanup() {
  if [[ -n $nats_pid ]]; then
    kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
  fi
  # Keep the logs for a look afterwards; the store (hundreds of MiB) goes.
  rm -rf "$logs" && mkdir -p "$logs" && cp "$work"/*.log "$logs"/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Port -1: the server picks free ports itself and writes them to the ports file, so there is
# no race between choosing a port and binding it.
"$nats_server" --addr 127.0.0.1 --port -1 --http_port -1 --ports_file_dir "$work" \
  --server_name bench-dispatch --jetstream --store_dir "$work/store" >"$work/nats.log" 2>&1 &
nats_pid=$!
ports_file="$work/nats-server_$nats_pid.ports"
for _ in $(seq 100); do [[ -s $ports_file ]] && break; sleep 0.1; done
[[ -s $ports_file ]] || { echo "bench-dispatch: nats-server did not start; see $logs/nats.log" >&2; exit 1; }
read -r nats_url monitor_url < <(python3 -c 'import json, sys; p = json.load(open(sys.argv[1])); print(p["nats"][0], p["monitoring"][0])' "$ports_file")
# /healthz?js-enabled-only=true answers ok once JetStream is enabled.
for _ in $(seq 100); do curl -fsS "$monitor_url/healthz?js-enabled-only=true" >/dev/null 2>&1 && break; sleep 0.1; done

# The figures only mean something on a quiet machine: record how busy it was just before and
# the niceness the bench ran at; each measurement also says how much CPU went to other processes.
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
results="$(cargo bench --locked --bench dispatch -- \
  --nats-url "$nats_url" --nats-pid "$nats_pid" --switchyard "$target_dir/release/switchyard" \
  --work-dir "$work" --concurrency "$CONCURRENCY" --events "$EVENTS" \
  --seconds "$WINDOW_SECONDS" --latency-seconds "$LATENCY_SECONDS" --light-rate "$LIGHT_RATE" 2> >(grep --line-buffered -v '^ *\(Finished\|Running\)' >&2))"

machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m)"
report="$(cat <<MD

### bench-dispatch, $(date -u +%Y-%m-%dT%H:%MZ)
- Machine: $machine, load average $load_before before the run, bench processes at nice $(nice); switchyard $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release build; $("$nats_server" --version), private server, file storage
- Method: one process each for nats-server, the handler (axum, 200 with an empty body) and the dispatcher (\`switchyard dispatch --stream bench_dispatch --consumer … --endpoint http://127.0.0.1:…/ --concurrency C --subject-prefix bench.dispatch --http-addr 127.0.0.1:… --nats-url …\`, default tokio runtime); the bare consumer (a) and client (b) run in the bench process. Rates over ${WINDOW_SECONDS} s windows after a 1 s warm-up: (a) and (c) from the consumer's ack floor, (b) from answered requests. Latency: events published at a fixed rate (half of c; those falling due within the same 250 µs go out together) carry their publication time; "added" = the dispatcher path's percentile (publish → handler) minus the bare consumer's (publish → receipt) at the same rate, the first second left out; ${LATENCY_SECONDS} s each, then again at a light ${LIGHT_RATE} events/s
- CPU time / context switches (cs) per event: each process's user + system time, and its threads' context switches, over the window, divided by the events in it
$results
MD
)"
echo "$report"
[[ -f BENCHMARKS.md ]] || printf '# Benchmarks\n\nResults of `make bench-*`, newest last. Figures are from the machine named in each entry.\n' >BENCHMARKS.md
echo "$report" >>BENCHMARKS.md
