# shellcheck shell=bash disable=SC2034
# Shared by hack/cluster-up.sh and hack/cluster-down.sh (sourced, not run).
# Expects PID_DIR to be set.

# Start order; cluster-down stops in reverse.
NATS_COMPONENTS=(nats-server)
KUBE_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
ALL_COMPONENTS=("${NATS_COMPONENTS[@]}" "${KUBE_COMPONENTS[@]}")

# PID recorded for a component, or nothing.
component_pid() {
  local f="$PID_DIR/$1.pid"
  [[ -f "$f" ]] && tr -dc '0-9' <"$f"
}

# True if the recorded PID is alive AND is still that component (the kernel
# may have reused the PID after a reboot or a crash). /proc/PID/comm holds the
# first 15 characters of the executable's name. A zombie counts as dead: the
# components are reparented to PID 1 when the starting shell exits, and an
# init that reaps lazily can leave them as zombies for seconds.
pid_is_component() {
  local pid="$1" name="$2" comm stat state
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
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
