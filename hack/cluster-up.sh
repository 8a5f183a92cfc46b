#!/usr/bin/env bash
# Starts a real, local Kubernetes control plane plus a NATS JetStream server,
# all as plain background processes on 127.0.0.1 (no containers, no root
# needed, no network beyond loopback):
#
#   nats-server   JetStream enabled, store in target/dev-env/nats
#                 (or, with NATS_NODES=3, a JetStream cluster: see below)
#   etcd          --unsafe-no-fsync, data in target/dev-env/etcd
#   kube-apiserver, kube-controller-manager, kube-scheduler
#   kwok          simulates the kubelet of fake nodes, so Deployments get
#                 Running pods (no container actually runs; pod IPs do not route)
#
# Everything lives under target/dev-env/ of the repo:
#   pids/<component>.pid  logs/<component>.log  pki/  kubeconfig  env  ports.env
#   nats-nodes (size of the last NATS cluster)
#
# After it returns, `source target/dev-env/env` gives KUBECONFIG, NATS_URL,
# NATS_STORE_DIR, PATH (with the tools) and a few more; see write_env below.
#
# Usage:
#   hack/cluster-up.sh            start whatever is not running yet
#   hack/cluster-up.sh nats       only NATS
#   hack/cluster-up.sh kube       only the Kubernetes part
#
# Idempotent: if everything is up it says so and exits 0. A component group
# whose processes died is restarted (NATS alone can be restarted with
# `hack/cluster-down.sh nats-server && hack/cluster-up.sh`; it keeps its port
# and its JetStream store). Ports are picked at random among free ones on
# first start and reused on restart when still free.
#
# NATS cluster: NATS_NODES=3 hack/cluster-up.sh starts nats-server-1..3 as the
# JetStream cluster "switchyard-dev" (server names switchyard-dev-1..3), each
# node with its own client, monitor and route port and its own store
# target/dev-env/nats-1..3, and returns once every node reports a meta leader
# (/healthz) and every stream has a leader that sees all replicas current. The
# env file then lists every node in NATS_URL and has NATS_MONITOR_URLS and
# NATS_NODE_<i>_{NAME,URL,MONITOR_URL,STORE_DIR,PID_FILE}. Of a cluster only
# the dead nodes restart, on their ports and stores; when cluster-up returns
# they have caught up. To crash node 2 and bring it back:
#   kill -9 "$(cat "$NATS_NODE_2_PID_FILE")"
#   hack/cluster-up.sh nats
# The layout stays until `hack/cluster-down.sh nats-server` (then NATS_NODES
# decides again): without NATS_NODES cluster-up keeps the one in effect, and a
# NATS_NODES that contradicts running servers is an error.
#
# Environment:
#   SWITCHYARD_CACHE        tool cache root (see hack/tools.sh)
#   SWITCHYARD_KWOK_NODES   number of fake nodes (default 1)
#   SWITCHYARD_UP_TIMEOUT   seconds to wait for each component (default 90)
#   NATS_NODES              1: one nats-server (default); 3-9: a cluster
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
DEV="$REPO_ROOT/target/dev-env"
PID_DIR="$DEV/pids"
LOG_DIR="$DEV/logs"
PKI="$DEV/pki"
TIMEOUT="${SWITCHYARD_UP_TIMEOUT:-90}"
NODES="${SWITCHYARD_KWOK_NODES:-1}"

# Cluster-internal ranges. The service range only has to be valid and must
# not collide with the pod range kwok hands out; nothing routes to either.
SERVICE_CIDR=10.96.0.0/16
SERVICE_FIRST_IP=10.96.0.1
SA_ISSUER=https://kubernetes.default.svc.cluster.local

# Cluster name of a NATS_NODES cluster; node i is server switchyard-dev-i.
NATS_CLUSTER=switchyard-dev

# shellcheck source=SCRIPTDIR/lib.sh
source "$HACK_DIR/lib.sh"

START_TS=$SECONDS
log() { printf '[cluster-up %3ss] %s\n' "$((SECONDS - START_TS))" "$*" >&2; }
die() { printf 'cluster-up: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------
ensure_tools() {
  BIN="$("$HACK_DIR/tools.sh" --print-bin-dir)"
  KWOK_STAGES="$("$HACK_DIR/tools.sh" --print-cache-dir)/share/kwok/stages.yaml"
  # --check is fast (hashes a few files); only build when something is missing.
  if ! "$HACK_DIR/tools.sh" --check >/dev/null 2>&1; then
    log "tools missing or outdated; running hack/tools.sh (a cold build takes ~10-15 min)"
    "$HACK_DIR/tools.sh"
  fi
  local b
  for b in nats-server etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing after hack/tools.sh"
  done
  [[ -f "$KWOK_STAGES" ]] || die "$KWOK_STAGES is missing after hack/tools.sh"
  command -v openssl >/dev/null || apt_install openssl
  command -v curl >/dev/null || apt_install curl
  KUBECTL=("$BIN/kubectl" --kubeconfig "$DEV/kubeconfig")
}

apt_install() {
  log "installing $1 with apt-get (needed by cluster-up)"
  apt-get update -qq && apt-get install -y -qq "$1" >/dev/null
}

# ---------------------------------------------------------------------------
# Ports: random free ports in 20000-32000 (below Linux's ephemeral range, so
# outgoing connections do not grab them between picking and binding).
# ---------------------------------------------------------------------------
declare -A PORT=()
declare -A TAKEN=()

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sets PICKED to a free port not handed out before in this run.
pick_port() {
  local p tries=0
  while :; do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    if [[ -z "${TAKEN[$p]:-}" ]] && ! port_in_use "$p"; then
      TAKEN[$p]=1; PICKED="$p"; return 0
    fi
    tries=$((tries + 1)); (( tries < 200 )) || die "could not find a free port"
  done
}

load_ports() {
  if [[ -f "$DEV/ports.env" ]]; then
    local k v
    while IFS='=' read -r k v; do
      if [[ -n "$k" && -n "$v" ]]; then PORT[$k]="$v"; fi
    done <"$DEV/ports.env"
  fi
  # Ports saved for components never go to another component.
  local v
  for v in "${PORT[@]}"; do TAKEN[$v]=1; done
}

save_ports() {
  local k
  for k in "${!PORT[@]}"; do echo "$k=${PORT[$k]}"; done | sort >"$DEV/ports.env"
}

# Keep a saved port when it is still free (so URLs stay stable across a
# restart), otherwise pick a new one.
assign_port() {
  local key="$1"
  if [[ -n "${PORT[$key]:-}" ]] && ! port_in_use "${PORT[$key]}"; then
    return 0
  fi
  if [[ -n "${PORT[$key]:-}" ]]; then log "port ${PORT[$key]} ($key) is taken now; picking another"; fi
  pick_port
  PORT[$key]="$PICKED"
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# start NAME BINARY ARGS...: runs BINARY in its own session (so a Ctrl-C in
# the terminal that ran `make` does not reach it), logs to logs/NAME.log.
start() {
  local name="$1"; shift
  # One log per run (the previous run's is kept as NAME.log.1), so the tail
  # printed on failure is this run's.
  if [[ -s "$LOG_DIR/$name.log" ]]; then mv -f "$LOG_DIR/$name.log" "$LOG_DIR/$name.log.1"; fi
  # A background job of a non-interactive shell is not a process group
  # leader, so setsid execs in place and $! is the component's own PID.
  # 8>&-: the component must not inherit (and so hold) this script's lock.
  setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 8>&- &
  echo $! >"$PID_DIR/$name.pid"
  STARTED+=("$name")
}

STARTED=()

# On failure, stop what this run started, so the next run starts clean (the
# logs stay for inspection).
cleanup_on_error() {
  local rc=$?
  if (( rc != 0 && ${#STARTED[@]} )); then
    log "stopping what this run started: ${STARTED[*]}"
    "$HACK_DIR/cluster-down.sh" --quiet "${STARTED[@]}" || true
  fi
}
trap cleanup_on_error EXIT

# wait_until NAME DESCRIPTION COMMAND...: polls COMMAND until it succeeds, the
# process NAME dies, or the timeout is reached. On failure prints the tail of
# the component's log and exits non-zero.
wait_until() {
  local name="$1" what="$2"; shift 2
  local deadline=$((SECONDS + TIMEOUT))
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! component_alive "$name"; then
      fail "$name exited while waiting for: $what" "$name"
    fi
    if (( SECONDS >= deadline )); then
      fail "timed out after ${TIMEOUT}s waiting for: $what" "$name"
    fi
    sleep 0.3
  done
}

fail() {
  printf '\ncluster-up: error: %s\n--- last lines of %s ---\n' "$1" "$LOG_DIR/$2.log" >&2
  tail -n 40 "$LOG_DIR/$2.log" >&2 || true
  printf -- '--- end of %s ---\n' "$LOG_DIR/$2.log" >&2
  exit 1
}

# ---------------------------------------------------------------------------
# PKI (generated once, kept until `cluster-down.sh --purge`)
# ---------------------------------------------------------------------------
gen_pki() {
  if [[ -f "$PKI/.complete" && -f "$PKI/front-proxy-client.crt" ]]; then return 0; fi
  log "generating PKI in $PKI"
  rm -rf "$PKI"; mkdir -p "$PKI"
  (
    cd "$PKI"
    # ECDSA P-256 keys: generated instantly, accepted by every component.
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=switchyard-dev-ca" 2>/dev/null

    # Serving certificate of the apiserver (also used by kwok's small server).
    openssl req "${ec[@]}" -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    cat >apiserver.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_FIRST_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null

    # Admin client certificate: O=system:masters is bound to cluster-admin.
    # The controller-manager, the scheduler and kwok use it too (simplest; a
    # dev cluster has no need to separate their identities).
    openssl req "${ec[@]}" -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=switchyard-admin" 2>/dev/null
    cat >admin.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -days 3650 -extfile admin.ext -out admin.crt 2>/dev/null

    # Front proxy (aggregation layer): a separate CA whose client certificate
    # the apiserver presents to aggregated API servers. Configuring it also
    # gives the controller-manager and scheduler the request-header CA they
    # look up for delegated authentication (else they log errors forever).
    openssl req -x509 "${ec[@]}" -keyout front-proxy-ca.key -out front-proxy-ca.crt -days 3650 \
      -subj "/CN=switchyard-dev-front-proxy-ca" 2>/dev/null
    openssl req "${ec[@]}" -keyout front-proxy-client.key -out front-proxy-client.csr \
      -subj "/CN=front-proxy-client" 2>/dev/null
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -days 3650 -extfile admin.ext -out front-proxy-client.crt 2>/dev/null

    # Service-account token signing key pair.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
    chmod 600 ./*.key
  )
  touch "$PKI/.complete"
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() {
  local tmp="$DEV/kubeconfig.tmp"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: switchyard-dev
  cluster:
    server: https://127.0.0.1:${PORT[apiserver]}
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: switchyard-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: switchyard-dev
  context:
    cluster: switchyard-dev
    user: switchyard-admin
current-context: switchyard-dev
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$DEV/kubeconfig"
}

# ---------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------
start_nats() {
  assign_port nats; assign_port nats_monitor; save_ports
  mkdir -p "$DEV/nats"
  log "starting nats-server on 127.0.0.1:${PORT[nats]} (monitor ${PORT[nats_monitor]})"
  start nats-server "$BIN/nats-server" \
    --addr 127.0.0.1 --port "${PORT[nats]}" \
    --http_port "${PORT[nats_monitor]}" \
    --server_name switchyard-dev \
    --jetstream --store_dir "$DEV/nats"
}

wait_nats() {
  # /healthz?js-enabled-only=true answers ok once JetStream is enabled.
  wait_until nats-server "NATS /healthz" \
    curl -fsS "http://127.0.0.1:${PORT[nats_monitor]}/healthz?js-enabled-only=true"
  log "nats-server ready"
}

# Decides the NATS layout: NATS_NODES, else the one in effect (PID files),
# else one server; sets NATS_WANT and NATS_COMPONENTS. Switching layouts
# while servers of the other one run would mix them: refused. When they are
# all dead, their PID files go and the new layout starts (the stores differ).
choose_nats_layout() {
  local want_nats="$1" recorded=() recorded_n=0 c
  mapfile -t recorded < <(recorded_nats_components)
  if (( ${#recorded[@]} )); then
    recorded_n=1
    if [[ "${recorded[0]}" != nats-server ]]; then
      # A node stopped by cluster-down has no PID file; the size does not shrink.
      recorded_n="${recorded[-1]##*-}"
      c="$(cat "$DEV/nats-nodes" 2>/dev/null || true)"
      if [[ "$c" =~ ^[0-9]+$ ]] && (( c > recorded_n )); then recorded_n="$c"; fi
    fi
  fi
  NATS_WANT="$recorded_n"
  if (( want_nats )) && [[ -n "${NATS_NODES:-}" ]]; then
    # Two nodes have no quorum once one is down: nothing to test with.
    [[ "$NATS_NODES" =~ ^[1-9]$ && "$NATS_NODES" != 2 ]] ||
      die "NATS_NODES=$NATS_NODES: expected 1 (one server) or 3-9 (a cluster)"
    NATS_WANT="$NATS_NODES"
  fi
  if (( NATS_WANT == 0 )); then NATS_WANT=1; fi
  use_nats_layout "$NATS_WANT"

  local stale=0
  for c in "${recorded[@]}"; do
    [[ " ${NATS_COMPONENTS[*]} " == *" $c "* ]] || stale=1
  done
  if (( !stale && (recorded_n == 0 || recorded_n == NATS_WANT) )); then return 0; fi
  for c in "${recorded[@]}"; do
    if component_alive "$c"; then
      die "NATS runs as $(nats_layout_name "$recorded_n") (${recorded[*]}), NATS_NODES=$NATS_WANT asks for $(nats_layout_name "$NATS_WANT"): stop it first with hack/cluster-down.sh nats-server (stores and ports stay), or leave NATS_NODES unset to keep it"
    fi
  done
  log "NATS was $(nats_layout_name "$recorded_n") and is down; starting $(nats_layout_name "$NATS_WANT") instead"
  "$HACK_DIR/cluster-down.sh" --quiet nats-server
}

# Every stream the nodes hold has a leader, and its leader sees all replicas
# current. /jsz lists a node's own streams; with stream-leader-only, those it
# leads, their replicas as the leader sees them.
nats_streams_settled() {
  local i urls=""
  for ((i = 1; i <= NATS_WANT; i++)); do urls+="${urls:+,}http://127.0.0.1:${PORT[nats_${i}_monitor]}"; done
  python3 - "$urls" <<'EOF_PY'
import json, sys, urllib.request
def streams(url, query):
    with urllib.request.urlopen(url + "/jsz?accounts=true&streams=true" + query, timeout=5) as r:
        data = json.load(r)
    return {(a["name"], s["name"]): s for a in data.get("account_details") or []
            for s in a.get("stream_detail") or []}
held, led = {}, {}
for url in sys.argv[1].split(","):
    held.update(streams(url, ""))
    led.update(streams(url, "&stream-leader-only=true"))
sys.exit(held.keys() != led.keys() or any(not p.get("current") for s in led.values()
                                          for p in (s.get("cluster") or {}).get("replicas") or []))
EOF_PY
}

nats_layout_name() {
  if (( $1 == 1 )); then echo "one server"; else echo "a $1-node cluster"; fi
}

# Node i of a cluster: component nats-server-i, ports nats_i (clients),
# nats_i_monitor and nats_i_cluster (routes), store nats-i. Only the nodes
# that are down start; each routes to all the others.
start_nats_cluster() {
  local i j k routes live=()
  command -v python3 >/dev/null || apt_install python3
  for ((i = 1; i <= NATS_WANT; i++)); do
    if component_alive "nats-server-$i"; then live+=("$i"); fi
  done
  for ((i = 1; i <= NATS_WANT; i++)); do
    [[ " ${live[*]} " != *" $i "* ]] || continue
    for k in "nats_$i" "nats_${i}_monitor" "nats_${i}_cluster"; do
      if (( ${#live[@]} == 0 )); then assign_port "$k"; continue; fi
      # The running nodes route to this node's saved ports and clients hold
      # its URL: it comes back on those or not at all.
      [[ -n "${PORT[$k]:-}" ]] || die "no saved port $k for nats-server-$i; restart the whole cluster: hack/cluster-down.sh nats-server && hack/cluster-up.sh nats"
      if port_in_use "${PORT[$k]}"; then
        die "port ${PORT[$k]} ($k) of nats-server-$i is taken by another process; free it, or restart the whole cluster: hack/cluster-down.sh nats-server && hack/cluster-up.sh nats"
      fi
    done
  done
  save_ports
  echo "$NATS_WANT" >"$DEV/nats-nodes"
  for ((i = 1; i <= NATS_WANT; i++)); do
    [[ " ${live[*]} " != *" $i "* ]] || continue
    routes=""
    for ((j = 1; j <= NATS_WANT; j++)); do
      if (( j != i )); then routes+="${routes:+,}nats://127.0.0.1:${PORT[nats_${j}_cluster]}"; fi
    done
    mkdir -p "$DEV/nats-$i"
    log "starting nats-server-$i on 127.0.0.1:${PORT[nats_$i]} (monitor ${PORT[nats_${i}_monitor]}, routes ${PORT[nats_${i}_cluster]})"
    start "nats-server-$i" "$BIN/nats-server" \
      --addr 127.0.0.1 --port "${PORT[nats_$i]}" \
      --http_port "${PORT[nats_${i}_monitor]}" \
      --server_name "$NATS_CLUSTER-$i" \
      --cluster_name "$NATS_CLUSTER" --cluster "nats://127.0.0.1:${PORT[nats_${i}_cluster]}" \
      --routes "$routes" \
      --jetstream --store_dir "$DEV/nats-$i"
  done
}

# A cluster is usable once JetStream has a meta leader: full /healthz says so
# from each node's view (and that its streams and consumers run). A restarted
# node passes that before its stream leaders have sent it what it missed, and
# a stream whose leader was killed has none for a few seconds: cluster-up also
# waits until every stream has a leader that sees all replicas current.
wait_nats_cluster() {
  local c
  for c in "${STARTED[@]}"; do
    [[ "$c" == nats-server-* ]] || continue
    wait_until "$c" "$c /healthz?js-enabled-only=true" \
      curl -fsS "http://127.0.0.1:${PORT[nats_${c##*-}_monitor]}/healthz?js-enabled-only=true"
  done
  for c in "${STARTED[@]}"; do
    [[ "$c" == nats-server-* ]] || continue
    wait_until "$c" "$c /healthz (meta leader known)" \
      curl -fsS "http://127.0.0.1:${PORT[nats_${c##*-}_monitor]}/healthz"
    wait_until "$c" "every stream led, replicas current (/jsz)" nats_streams_settled
  done
  log "NATS cluster ready (meta leader $(curl -fsS "http://127.0.0.1:${PORT[nats_1_monitor]}/jsz" |
    sed -n 's/.*"leader": *"\([^"]*\)".*/\1/p' | head -n 1))"
}

start_etcd() {
  assign_port etcd; assign_port etcd_peer; save_ports
  mkdir -p "$DEV/etcd"
  chmod 700 "$DEV/etcd"
  log "starting etcd on 127.0.0.1:${PORT[etcd]}"
  # --unsafe-no-fsync: test data need not survive a power cut, and fsync is
  # the main cost of etcd on a shared CI disk.
  start etcd "$BIN/etcd" \
    --name=switchyard-dev --data-dir="$DEV/etcd" \
    --listen-client-urls="http://127.0.0.1:${PORT[etcd]}" \
    --advertise-client-urls="http://127.0.0.1:${PORT[etcd]}" \
    --listen-peer-urls="http://127.0.0.1:${PORT[etcd_peer]}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${PORT[etcd_peer]}" \
    --initial-cluster="switchyard-dev=http://127.0.0.1:${PORT[etcd_peer]}" \
    --unsafe-no-fsync \
    --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) \
    --auto-compaction-mode=periodic --auto-compaction-retention=5m \
    --log-level=warn
}

start_apiserver() {
  assign_port apiserver; save_ports
  log "starting kube-apiserver on 127.0.0.1:${PORT[apiserver]}"
  # Admission: the default plugin set stays on, including ServiceAccount, so
  # the cluster behaves like a real one (pods get the token volume, a missing
  # named ServiceAccount is refused). It needs each namespace's "default"
  # ServiceAccount, which the controller-manager creates within a second of
  # the namespace; a pod created right after its namespace was admitted in
  # every try here, and controllers retry anyway. envtest and kwokctl turn
  # the plugin off because they may run without a controller-manager.
  #
  # --endpoint-reconciler-type=none: the "kubernetes" Service's Endpoints
  # would otherwise get 127.0.0.1, which Endpoints validation rejects.
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:${PORT[etcd]}" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
    --secure-port="${PORT[apiserver]}" \
    --cert-dir="$PKI" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --service-account-issuer="$SA_ISSUER" \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false
}

wait_apiserver() {
  wait_until kube-apiserver "kube-apiserver /readyz" \
    "${KUBECTL[@]}" get --raw /readyz
  log "kube-apiserver ready ($("${KUBECTL[@]}" get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p'))"
}

start_controller_manager() {
  assign_port controller_manager; save_ports
  mkdir -p "$DEV/kube-controller-manager"
  log "starting kube-controller-manager"
  # All default controllers except node-ipam (the fake nodes get their pod
  # CIDRs from their manifest below). The cloud controllers (service LB,
  # routes, cloud node lifecycle) are no longer part of kube-controller-manager
  # at all, so there is nothing else to switch off; naming them is an error.
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$DEV/kubeconfig" \
    --authentication-kubeconfig="$DEV/kubeconfig" \
    --authorization-kubeconfig="$DEV/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="${PORT[controller_manager]}" \
    --cert-dir="$DEV/kube-controller-manager" \
    --leader-elect=false \
    --controllers='*,-node-ipam-controller' \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --profiling=false
}

start_scheduler() {
  assign_port scheduler; save_ports
  mkdir -p "$DEV/kube-scheduler"
  log "starting kube-scheduler"
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$DEV/kubeconfig" \
    --authentication-kubeconfig="$DEV/kubeconfig" \
    --authorization-kubeconfig="$DEV/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="${PORT[scheduler]}" \
    --cert-dir="$DEV/kube-scheduler" \
    --leader-elect=false \
    --profiling=false
}

start_kwok() {
  assign_port kwok; save_ports
  log "starting kwok (managing nodes annotated kwok.x-k8s.io/node=fake)"
  # Stages (from the kwok release, see hack/tools.sh): nodes become Ready and
  # keep a Lease (so the node-lifecycle controller does not evict pods); pods
  # become Running at once, and deleted pods go away at once.
  # The node's InternalIP:port is kwok's own server, where the apiserver would
  # reach a kubelet.
  start kwok "$BIN/kwok" \
    --kubeconfig="$DEV/kubeconfig" \
    --config="$KWOK_STAGES" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --node-port="${PORT[kwok]}" \
    --server-address="127.0.0.1:${PORT[kwok]}" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --node-lease-duration-seconds=40
}

wait_healthz() { # NAME PORTKEY
  wait_until "$1" "$1 /healthz" curl -fsk "https://127.0.0.1:${PORT[$2]}/healthz"
}

# Fake nodes, named kwok-node-0..N-1. The kwok.x-k8s.io/node=fake annotation
# is what kwok is told to manage. No taint: ordinary Deployments schedule on
# them without tolerations.
create_nodes() {
  local i
  for ((i = 0; i < NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    node-role.kubernetes.io/agent: ""
    type: kwok
spec:
  podCIDR: 10.244.$i.0/24
  podCIDRs: [10.244.$i.0/24]
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
EOF
  done | "${KUBECTL[@]}" apply -f - >/dev/null
}

wait_nodes() {
  local i
  for ((i = 0; i < NODES; i++)); do
    # Ready, and the not-ready taint that the controller-manager put on the
    # new node has been lifted (otherwise the first pods would sit Pending).
    wait_until kwok "node kwok-node-$i Ready and untainted" node_ready "kwok-node-$i"
  done
  log "nodes ready: $("${KUBECTL[@]}" get nodes -o name | tr '\n' ' ')"
}

node_ready() {
  local out
  out="$("${KUBECTL[@]}" get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}')"
  [[ "$out" == "True" || "$out" == "True " ]]
}

write_env() {
  local tmp="$DEV/env.tmp"
  {
    echo "# Generated by hack/cluster-up.sh; source it: . target/dev-env/env"
    echo "export SWITCHYARD_DEV_ENV='$DEV'"
    echo "export SWITCHYARD_TOOLS_BIN='$BIN'"
    echo "case \":\$PATH:\" in *\":$BIN:\"*) ;; *) export PATH='$BIN':\"\$PATH\" ;; esac"
    if group_alive kube; then
      echo "export KUBECONFIG='$DEV/kubeconfig'"
      echo "export KUBE_APISERVER_URL='https://127.0.0.1:${PORT[apiserver]}'"
      echo "export SWITCHYARD_KUBE_VERSION='$("$BIN/kube-apiserver" --version | awk '{print $2}')'"
      echo "export SWITCHYARD_KWOK_NODES='$NODES'"
      echo "export ETCD_ENDPOINTS='http://127.0.0.1:${PORT[etcd]}'"
    fi
    if group_alive nats && (( NATS_WANT == 1 )); then
      echo "export NATS_URL='nats://127.0.0.1:${PORT[nats]}'"
      echo "export NATS_MONITOR_URL='http://127.0.0.1:${PORT[nats_monitor]}'"
      echo "export NATS_STORE_DIR='$DEV/nats'"
      echo "export NATS_NODES='1'"
    elif group_alive nats; then
      # NATS_MONITOR_URL and NATS_STORE_DIR are node 1's: what reads them
      # sees one server's view.
      local i urls="" monitors=""
      for ((i = 1; i <= NATS_WANT; i++)); do
        urls+="${urls:+,}nats://127.0.0.1:${PORT[nats_$i]}"
        monitors+="${monitors:+,}http://127.0.0.1:${PORT[nats_${i}_monitor]}"
      done
      echo "export NATS_URL='$urls'"
      echo "export NATS_MONITOR_URL='http://127.0.0.1:${PORT[nats_1_monitor]}'"
      echo "export NATS_STORE_DIR='$DEV/nats-1'"
      echo "export NATS_NODES='$NATS_WANT'"
      echo "export NATS_CLUSTER_NAME='$NATS_CLUSTER'"
      echo "export NATS_MONITOR_URLS='$monitors'"
      for ((i = 1; i <= NATS_WANT; i++)); do
        echo "export NATS_NODE_${i}_NAME='$NATS_CLUSTER-$i'"
        echo "export NATS_NODE_${i}_URL='nats://127.0.0.1:${PORT[nats_$i]}'"
        echo "export NATS_NODE_${i}_MONITOR_URL='http://127.0.0.1:${PORT[nats_${i}_monitor]}'"
        echo "export NATS_NODE_${i}_STORE_DIR='$DEV/nats-$i'"
        echo "export NATS_NODE_${i}_PID_FILE='$PID_DIR/nats-server-$i.pid'"
      done
    fi
  } >"$tmp"
  mv "$tmp" "$DEV/env"
}

# ---------------------------------------------------------------------------
main() {
  local want_nats=1 want_kube=1
  if (( $# )); then
    want_nats=0; want_kube=0
    local a
    for a in "$@"; do
      case "$a" in
        nats|nats-server) want_nats=1 ;;
        kube|kubernetes) want_kube=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$a' (expected: nats, kube)" ;;
      esac
    done
  fi

  mkdir -p "$PID_DIR" "$LOG_DIR"
  # Two cluster-up runs at once (e.g. two make targets) would race for the
  # same ports and directories: the second waits for the first, then finds
  # everything up.
  exec 8>"$DEV/.lock"
  if ! flock -n 8; then
    log "another cluster-up is running; waiting for it"
    flock 8
  fi
  load_ports
  choose_nats_layout "$want_nats"

  local nats_up=1 kube_up=1 c
  group_alive nats || nats_up=0
  group_alive kube || kube_up=0
  if (( (!want_nats || nats_up) && (!want_kube || kube_up) )); then
    [[ -f "$DEV/env" ]] || { ensure_tools; write_env; }
    log "already up (source $DEV/env)"
    return 0
  fi

  ensure_tools

  # A group that is partly up (one process died) is restarted as a whole;
  # the Kubernetes components hold each other's ports and configs. A NATS
  # cluster is the exception: its dead nodes rejoin the live ones, as after a
  # crash in production.
  if (( want_nats && !nats_up && NATS_WANT == 1 )); then
    "$HACK_DIR/cluster-down.sh" --quiet "${NATS_COMPONENTS[@]}"
  fi
  if (( want_kube && !kube_up )); then
    "$HACK_DIR/cluster-down.sh" --quiet "${KUBE_COMPONENTS[@]}"
  fi

  # NATS is independent: start it first and check on it at the end.
  if (( want_nats && !nats_up )); then
    if (( NATS_WANT == 1 )); then start_nats; else start_nats_cluster; fi
  fi

  if (( want_kube && !kube_up )); then
    gen_pki
    start_etcd
    wait_until etcd "etcd /health" curl -fsS "http://127.0.0.1:${PORT[etcd]}/health"
    log "etcd ready"
    start_apiserver
    # kubectl needs the kubeconfig to poll /readyz.
    write_kubeconfig
    wait_apiserver
    start_controller_manager
    start_scheduler
    start_kwok
    wait_healthz kube-controller-manager controller_manager
    wait_healthz kube-scheduler scheduler
    create_nodes
    wait_nodes
    # The controller-manager creates each namespace's default ServiceAccount;
    # waiting for it proves the controllers run, and pods can be admitted.
    wait_until kube-controller-manager "ServiceAccount default/default" \
      "${KUBECTL[@]}" -n default get serviceaccount default
  fi

  if (( want_nats && !nats_up )); then
    if (( NATS_WANT == 1 )); then wait_nats; else wait_nats_cluster; fi
  fi

  for c in "${STARTED[@]}"; do component_alive "$c" || fail "$c exited" "$c"; done
  write_env
  STARTED=()
  if group_alive kube; then log "kube-apiserver https://127.0.0.1:${PORT[apiserver]} ($NODES kwok node(s))"; fi
  if group_alive nats && (( NATS_WANT == 1 )); then log "NATS nats://127.0.0.1:${PORT[nats]} (JetStream store $DEV/nats)"; fi
  if group_alive nats && (( NATS_WANT > 1 )); then
    log "NATS cluster $NATS_CLUSTER of $NATS_WANT: $(sed -n "s/^export NATS_URL='\(.*\)'$/\1/p" "$DEV/env") (JetStream stores $DEV/nats-1..$NATS_WANT)"
  fi
  log "source $DEV/env"
}

main "$@"
