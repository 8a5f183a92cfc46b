# shellcheck shell=bash disable=SC2034
# Shared by hack/cluster-up.sh and hack/cluster-down.sh (sourced, not run).
# Expects PID_DIR to be set.

# Start order; cluster-down stops in reverse. NATS is one server
# (nats-server) or, with NATS_NODES=N, a cluster of nats-server-1 ..
# nats-server-N; use_nats_layout switches the lists.
NATS_COMPONENTS=(nats-server)
KUBE_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
ALL_COMPONENTS=("${NATS_COMPONENTS[@]}" "${KUBE_COMPONENTS[@]}")

# use_nats_layout N: 1 is the single server, more is a cluster of N nodes.
use_nats_layout() {
  local i
  NATS_COMPONENTS=(nats-server)
  if (( $1 > 1 )); then
    NATS_COMPONENTS=()
    for ((i = 1; i <= $1; i++)); do NATS_COMPONENTS+=("nats-server-$i"); done
  fi
  ALL_COMPONENTS=("${NATS_COMPONENTS[@]}" "${KUBE_COMPONENTS[@]}")
}

# NATS components that have a PID file, in start order. Only cluster-down
# removes PID files, so a server that died still counts: this is the layout
# in effect.
recorded_nats_components() {
  local f
  if [[ -f "$PID_DIR/nats-server.pid" ]]; then echo nats-server; fi
  for f in "$PID_DIR"/nats-server-*.pid; do
    f="${f##*/}"; f="${f%.pid}"
    if [[ "$f" =~ ^nats-server-[1-9][0-9]*$ ]]; then echo "$f"; fi
  done | sort -t- -k3,3n
}

# PID recorded for a component, or nothing.
component_pid() {
  local f="$PID_DIR/$1.pid"
  [[ -f "$f" ]] && tr -dc '0-9' <"$f"
}

# True if the recorded PID is alive AND is still that component (the kernel
# may have reused the PID after a reboot or a crash). /proc/PID/comm holds the
# first 15 characters of the executable's name; the nodes of a NATS cluster
# (nats-server-N) are the executable nats-server. A zombie counts as dead: the
# components are reparented to PID 1 when the starting shell exits, and an
# init that reaps lazily can leave them as zombies for seconds.
pid_is_component() {
  local pid="$1" name="$2" comm stat state
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  if [[ "$name" =~ ^nats-server-[0-9]+$ ]]; then name=nats-server; fi
  [[ "$comm" == "${name:0:15}" ]] || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  state="${stat##*) }"; state="${state%% *}"
  [[ "$state" != Z && "$state" != X ]]
}

component_alive() {
  pid_is_component "$(component_pid "$1")" "$1"
}

# group_alive nats|kube: every process of the group is alive.
group_alive() {
  local c
  local -n _group="${1^^}_COMPONENTS"
  for c in "${_group[@]}"; do component_alive "$c" || return 1; done
}
