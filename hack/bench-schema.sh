#!/usr/bin/env bash
# `make bench-schema [ROUNDS=3]`: what schema enforcement costs. Validations per second of a
# representative 1 KiB event against its compiled schema, in process; then the release
# `switchyard dispatch` draining a pre-filled stream of such events with the schema bound
# (--schema-key) and without, in alternating rounds, with the harness of bench-dispatch
# (benches/schema_validation.rs says how). Appends a dated section to BENCHMARKS.md. A
# benchmark, not a test: it asserts nothing.
#
# Needs only nats-server, not the Kubernetes environment: it starts a private one with
# JetStream on free ports and a temporary store, and stops it on exit.
#
# Environment: ROUNDS (default 3), EVENTS (pre-filled stream, default 400000), WINDOW_SECONDS
# (each throughput window, default 5), CONCURRENCY (the dispatcher's, default 64), CONTENT_TYPE
# of the events (default application/json, as the README's publishers send them; set it empty
# for unlabelled payloads).
# The dispatchers' logs are kept in <target dir>/bench-schema-logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS="${ROUNDS:-3}"
EVENTS="${EVENTS:-400000}"
WINDOW_SECONDS="${WINDOW_SECONDS:-5}"
CONCURRENCY="${CONCURRENCY:-64}"
CONTENT_TYPE="${CONTENT_TYPE-application/json}"

nats_server="$(hack/tools.sh --print-bin-dir)/nats-server"
[[ -x $nats_server ]] || { echo "bench-schema: $nats_server is missing; run make tools" >&2; exit 1; }

target_dir="$(cargo metadata --locked --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build --locked --release --bin switchyard 2>&1 | tail -n 1
cargo bench --locked --bench schema_validation --no-run 2>&1 | tail -n 1

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-schema.XXXXXX")"
logs="$target_dir/bench-schema-logs"
# About 1.3 KiB of store per 1 KiB event, twice that to be safe.
need_kib=$((EVENTS * 2600 / 1024))
free_kib="$(df --output=avail -k "$work" | tail -n 1 | tr -d ' ')"
if (( free_kib < need_kib )); then
  echo "bench-schema: $work has $((free_kib / 1024)) MiB free, the stream needs about $((need_kib / 1024)) MiB; set TMPDIR elsewhere or lower EVENTS" >&2
  rm -rf "$work"
  exit 1
fi
nats_pid=""
cleanup() {
  if [[ -n $nats_pid ]]; then
    kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
  fi
  rm -rf "$logs" && mkdir -p "$logs" && cp "$work"/*.log "$logs"/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$nats_server" --addr 127.0.0.1 --port -1 --http_port -1 --ports_file_dir "$work" \
  --server_name bench-schema --jetstream --store_dir "$work/store" >"$work/nats.log" 2>&1 &
nats_pid=$!
ports_file="$work/nats-server_$nats_pid.ports"
for _ in $(seq 100); do [[ -s $ports_file ]] && break; sleep 0.1; done
[[ -s $ports_file ]] || { echo "bench-schema: nats-server did not start; see $logs/nats.log" >&2; exit 1; }
read -r nats_url monitor_url < <(python3 -c 'import json, sys; p = json.load(open(sys.argv[1])); print(p["nats"][0], p["monitoring"][0])' "$ports_file")
for _ in $(seq 100); do curl -fsS "$monitor_url/healthz?js-enabled-only=true" >/dev/null 2>&1 && break; sleep 0.1; done

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
results="$(cargo bench --locked --bench schema_validation -- \
  --nats-url "$nats_url" --nats-pid "$nats_pid" --switchyard "$target_dir/release/switchyard" \
  --work-dir "$work" --concurrency "$CONCURRENCY" --events "$EVENTS" \
  --seconds "$WINDOW_SECONDS" --rounds "$ROUNDS" ${CONTENT_TYPE:+--content-type "$CONTENT_TYPE"} 2> >(grep --line-buffered -v '^ *\(Finished\|Running\)' >&2))"

machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m)"
report="$(cat <<MD

### bench-schema, $(date -u +%Y-%m-%dT%H:%MZ)
- Machine: $machine, load average $load_before before the run, bench processes at nice $(nice); switchyard $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release build; $("$nats_server" --version), private server, file storage
- Method: (1) \`CompiledSchema::check\` (the dispatcher's per-event validation: the body parsed into a flat, borrowed document, then walked by the jsonschema validator compiled once from the registered record) in a loop on one thread, 2 s per figure. (2) one process each for nats-server, the handler (axum, 200 with an empty body, as in bench-dispatch) and \`switchyard dispatch --stream bench_schema --consumer … --endpoint http://127.0.0.1:…/ --concurrency $CONCURRENCY --subject-prefix bench.orders [--schema-key bench.order.placed.latest]\` on a fresh consumer from the start of the stream; rate from the consumer's ack floor over ${WINDOW_SECONDS} s after a 1 s warm-up; $ROUNDS rounds of off/on, alternating which goes first; CPU time and context switches (cs) per event of each process over the window
$results
MD
)"
echo "$report"
[[ -f BENCHMARKS.md ]] || printf '# Benchmarks\n\nResults of `make bench-*`, newest last. Figures are from the machine named in each entry.\n' >BENCHMARKS.md
echo "$report" >>BENCHMARKS.md
