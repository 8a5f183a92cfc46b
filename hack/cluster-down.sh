#!/usr/bin/env bash
# Stops what hack/cluster-up.sh started, by recorded PID: SIGTERM, wait up to
# 15 s, then SIGKILL. Any other target/dev-env/pids/NAME.pid whose process is
# still an executable called NAME (e.g. the operator hack/demo.sh starts) is
# stopped first, the same way. Removes the PID files and keeps the logs (and, unless
# --purge, the data: etcd, the JetStream store, the PKI, the ports).
#
# Usage:
#   hack/cluster-down.sh                  stop everything
#   hack/cluster-down.sh nats-server      stop only the named component(s):
#                                         nats-server etcd kube-apiserver
#                                         kube-controller-manager kube-scheduler kwok
#                                         (nats-server: every NATS server, all
#                                         nodes of a NATS_NODES cluster too;
#                                         nats-server-N: only node N)
#   hack/cluster-down.sh --purge          stop everything and delete
#                                         target/dev-env except logs/
#   --quiet                               print nothing when there is nothing to stop
#
# Succeeds when nothing is running.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
DEV="$REPO_ROOT/target/dev-env"
PID_DIR="$DEV/pids"
GRACE_SECONDS=15

# shellcheck source=SCRIPTDIR/lib.sh
source "$HACK_DIR/lib.sh"

QUIET=0
log() { (( QUIET )) || printf '[cluster-down] %s\n' "$*" >&2; }

stop_component() {
  local name="$1" pid i
  pid="$(component_pid "$name" || true)"
  if pid_is_component "$pid" "$name"; then
    QUIET=0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < GRACE_SECONDS * 10; i++)); do
      pid_is_component "$pid" "$name" || break
      sleep 0.1
    done
    if pid_is_component "$pid" "$name"; then
      log "$name (pid $pid) did not exit after ${GRACE_SECONDS}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        pid_is_component "$pid" "$name" || break
        sleep 0.1
      done
    fi
  fi
  rm -f "$PID_DIR/$name.pid"
}

main() {
  local purge=0
  local -a names=()
  # The NATS servers in effect: the single one or the nodes of a cluster
  # (whatever has a PID file; cluster-up never leaves both).
  local -a nats=()
  mapfile -t nats < <(recorded_nats_components)
  if (( ${#nats[@]} == 0 )); then nats=(nats-server); fi
  ALL_COMPONENTS=("${nats[@]}" "${KUBE_COMPONENTS[@]}")
  while (( $# )); do
    case "$1" in
      --purge) purge=1 ;;
      --quiet) QUIET=1 ;;
      -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
      -*) echo "cluster-down: unknown option $1" >&2; return 2 ;;
      nats-server) names+=("${nats[@]}") ;;
      *)
        [[ " ${KUBE_COMPONENTS[*]} " == *" $1 "* || "$1" =~ ^nats-server-[1-9][0-9]*$ ]] ||
          { echo "cluster-down: unknown component '$1' (known: nats-server nats-server-N ${KUBE_COMPONENTS[*]})" >&2; return 2; }
        names+=("$1") ;;
    esac
    shift
  done
  local all=0
  if (( ${#names[@]} == 0 )); then
    all=1; names=("${ALL_COMPONENTS[@]}")
  elif (( purge )); then
    echo "cluster-down: --purge stops everything; do not name components" >&2; return 2
  fi

  # Other processes that recorded a PID file here (e.g. the operator started
  # by hack/demo.sh as pids/switchyard.pid) are clients of the cluster: stop
  # them first. Same rule: the file is named after the executable.
  local f extra
  if (( all )) && [[ -d "$PID_DIR" ]]; then
    for f in "$PID_DIR"/*.pid; do
      [[ -e "$f" ]] || continue
      extra="$(basename "$f" .pid)"
      if [[ " ${ALL_COMPONENTS[*]} " != *" $extra "* ]]; then stop_component "$extra"; fi
    done
  fi

  # Reverse start order: kwok and the controllers before the apiserver, the
  # apiserver before etcd. A named NATS node that has no PID file has nothing
  # to stop.
  local i
  for ((i = ${#ALL_COMPONENTS[@]} - 1; i >= 0; i--)); do
    local c="${ALL_COMPONENTS[$i]}"
    if [[ " ${names[*]} " == *" $c "* ]]; then stop_component "$c"; fi
  done

  if (( purge )) && [[ -d "$DEV" ]]; then
    log "deleting $DEV (except logs/)"
    find "$DEV" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  fi
  return 0
}

main "$@"
