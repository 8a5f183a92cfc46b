#!/usr/bin/env bash
# Builds the pinned third-party tools the local test environment needs, from
# source, through the Go module proxy, into a cache that lives OUTSIDE the
# clone so that a second run (or a fresh clone on the same machine) costs
# seconds:
#
#   $SWITCHYARD_CACHE/tools/<name>-<version>/bin/...   the binaries
#   $SWITCHYARD_CACHE/tools/<name>-<version>/.stamp    hash of the build recipe
#   $SWITCHYARD_CACHE/bin/                             stable symlinks: put this on PATH
#   $SWITCHYARD_CACHE/share/kwok/stages.yaml           kwok Stage definitions
#   $SWITCHYARD_CACHE/logs/<name>-<version>.log        build logs
#
# SWITCHYARD_CACHE defaults to ~/.cache/switchyard. Go's own module and build
# caches are left where Go puts them (GOMODCACHE / GOCACHE); they persist on
# the machine and make rebuilds incremental.
#
# Usage:
#   hack/tools.sh                   build/verify every tool
#   hack/tools.sh kubernetes nats-server
#                                   only the named tools (names as in TOOLS below)
#   hack/tools.sh --print-bin-dir   print the bin dir (nothing is built)
#   hack/tools.sh --print-cache-dir print the cache root (nothing is built)
#   hack/tools.sh --check           exit 0 if every tool is already cached, 1 otherwise
#   hack/tools.sh --regen-modules   regenerate hack/gomod/*/go.{mod,sum} and
#                                   hack/kstatus-check/go.{mod,sum} from the versions
#                                   below (run after changing a version)
#
# Environment:
#   SWITCHYARD_CACHE       cache root (default ~/.cache/switchyard)
#   SWITCHYARD_TOOLS_JOBS  how many tool builds run at once (default 2; the
#                          Kubernetes build is by far the longest, so 2 lets the
#                          small tools build alongside it)
#   GOTOOLCHAIN            respected if set; otherwise "local" (every pin below
#                          builds with Go >= 1.26.0)
set -euo pipefail

# ---------------------------------------------------------------------------
# Pinned versions. Every module listed here declares `go 1.26.0` or lower, so
# the installed Go 1.26.x builds all of them without a toolchain download.
# ---------------------------------------------------------------------------

# NATS server with JetStream. The project needs >= 2.12; 2.15.2 is the newest
# release the module proxy serves (JetStream API level 5).
NATS_SERVER_VERSION=v2.15.2

# etcd for kube-apiserver. Kubernetes 1.37 accepts etcd >= 3.5.24 (kubeadm's
# MinExternalEtcdVersion) and its own integration tests use 3.7.0; the 3.6
# line is the long-supported stable one, and v3.6.16 is its newest patch on
# the proxy. (v3.7.x builds the same way if ever wanted.)
ETCD_VERSION=v3.6.16

# Kubernetes control plane + kubectl. 1.37.2 matches the Rust side's
# k8s-openapi feature `v1_37`. Its go.mod says `go 1.26.0`, so no newer Go is
# needed. The staging modules (k8s.io/api, client-go, ...) are published as
# v0.37.2 and are pinned to that in hack/gomod/kubernetes/go.mod.
KUBERNETES_VERSION=v1.37.2

# kwok simulates nodes and pod lifecycles (no kubelet, no containers).
# v0.8.0 is the newest release on the proxy; it is built against k8s 1.36
# client libraries, which talk to a 1.37 apiserver fine (one minor of skew).
KWOK_VERSION=v0.8.0

# Helm 3 (for the demo chart). v3.22.0 is the newest 3.x the proxy serves and
# is built against k8s 0.37 client libraries.
HELM_VERSION=v3.22.0

# kstatus, the library Flux and `kubectl`-style waits use to judge health, behind a small
# command of ours (hack/kstatus-check, whose go.mod pins this version) that the health tests run
# on the objects the operator wrote. v0.37.2 is the newest release on the proxy.
KSTATUS_VERSION=v0.37.2

TOOLS=(nats-server etcd kubernetes kwok helm kstatus-check)

# ---------------------------------------------------------------------------

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
BIN_DIR="$CACHE/bin"
LOG_DIR="$CACHE/logs"
JOBS="${SWITCHYARD_TOOLS_JOBS:-2}"

# Shared linker flags: -s -w drop the symbol table and DWARF (the Kubernetes
# binaries shrink by ~30%); -trimpath makes builds independent of the paths of
# the module cache.
BASE_LDFLAGS="-s -w"

log() { printf '%s\n' "$*" >&2; }
die() { log "tools.sh: error: $*"; exit 1; }

# Version of a Kubernetes-style tag, split into parts: v1.37.2 -> 1 37 2.
semver_parts() { local v="${1#v}"; echo "${v//./ }"; }

version_for() {
  case "$1" in
    nats-server) echo "$NATS_SERVER_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kubernetes) echo "$KUBERNETES_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kstatus-check) echo "$KSTATUS_VERSION" ;;
    *) die "unknown tool '$1' (known: ${TOOLS[*]})" ;;
  esac
}

# Binaries each tool provides (all symlinked into $BIN_DIR).
binaries_for() {
  case "$1" in
    nats-server) echo "nats-server" ;;
    etcd) echo "etcd" ;;
    kubernetes) echo "kube-apiserver kube-controller-manager kube-scheduler kubectl" ;;
    kwok) echo "kwok" ;;
    helm) echo "helm" ;;
    kstatus-check) echo "kstatus-check" ;;
  esac
}

kube_ldflags() {
  # Without these the binaries report v0.0.0-master+$Format:...$, which breaks
  # `kubectl version` skew checks, helm's kubeVersion checks and any client
  # that gates features on /version. buildDate is the release tag's time as
  # recorded by the module proxy, so the build stays reproducible.
  local major minor build_date
  read -r major minor _ <<<"$(semver_parts "$KUBERNETES_VERSION")"
  build_date="$(module_time "k8s.io/kubernetes" "$KUBERNETES_VERSION")" || return 1
  local flags="$BASE_LDFLAGS" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION"
    flags+=" -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
    # The release commit is not known from the module; leave it empty rather
    # than the "$Format:%H$" placeholder.
    flags+=" -X $pkg.gitCommit="
  done
  echo "$flags"
}

ldflags_for() {
  case "$1" in
    kubernetes) kube_ldflags ;;
    helm)
      # Helm's source only carries "v3.22"; stamp the full version.
      echo "$BASE_LDFLAGS -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
    *) echo "$BASE_LDFLAGS" ;;
  esac
}

# Release time of a module version as the proxy records it, e.g.
# 2026-10-27T12:01:04Z.
module_time() {
  local t
  t="$(cd / && go list -m -json "$1@$2" | sed -n 's/.*"Time": "\([^"]*\)".*/\1/p' | head -n1)"
  [[ -n "$t" ]] || die "could not get the release time of $1@$2 from the module proxy"
  echo "$t"
}

module_dir() {
  (cd / && go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\([^"]*\)".*/\1/p' | head -n1)
}

# ---------------------------------------------------------------------------
# Go toolchain checks
# ---------------------------------------------------------------------------
check_go() {
  # Go's default install location, in case a non-login shell lacks it on PATH.
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= 1.26; see https://go.dev/doc/install)"
  # Respect an explicit GOTOOLCHAIN (e.g. go1.27.3), otherwise never let the go
  # command try to fetch another toolchain behind our back.
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
  local gv major minor
  gv="$(go env GOVERSION)"; gv="${gv#go}"
  major="${gv%%.*}"; minor="${gv#*.}"; minor="${minor%%.*}"
  if (( major < 1 || (major == 1 && minor < 26) )); then
    die "Go $gv is too old: these pins need Go >= 1.26.0 (or export GOTOOLCHAIN=go1.27.3)"
  fi
  # VCS stamping would look at the surrounding git repo; irrelevant here.
  export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
}

# ---------------------------------------------------------------------------
# Wrapper modules (hack/gomod/<tool>/go.mod + go.sum) for modules that cannot
# be built with `go install pkg@version` because their go.mod has local
# `replace` directives (k8s.io/kubernetes, go.etcd.io/etcd/server/v3). The
# go.sum files are committed so that every machine builds exactly the same
# dependency graph; `--regen-modules` rewrites them from the pins above.
# ---------------------------------------------------------------------------
regen_kubernetes_mod() {
  local dir="$HACK_DIR/gomod/kubernetes" modfile staging_version
  mkdir -p "$dir"
  go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
  modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
  [[ -f "$modfile" ]] || die "could not fetch go.mod of k8s.io/kubernetes@$KUBERNETES_VERSION"
  # Staging modules are published as v0.<minor>.<patch> for v1.<minor>.<patch>.
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  {
    echo "// Generated by hack/tools.sh --regen-modules. Do not edit by hand."
    echo "// Builds the Kubernetes control plane binaries at a pinned version: the"
    echo "// k8s.io/kubernetes module replaces its staging modules with local paths,"
    echo "// so they are replaced here with their published versions instead."
    echo "module switchyard.local/hack/gomod/kubernetes"
    echo
    echo "go 1.26.0"
    echo
    echo "tool ("
    local c
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      echo "	k8s.io/kubernetes/cmd/$c"
    done
    echo ")"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    # Every `k8s.io/x => ./staging/src/k8s.io/x` line of that release's go.mod.
    grep -oE '^[[:space:]]*k8s\.io/[A-Za-z0-9._-]+ => \./staging/src/' "$modfile" |
      awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$dir/go.mod"
  rm -f "$dir/go.sum"
  (cd "$dir" && go mod tidy)
  log "regenerated $dir/go.mod ($(grep -c ' => ' "$dir/go.mod") staging replaces)"
}

regen_etcd_mod() {
  local dir="$HACK_DIR/gomod/etcd"
  mkdir -p "$dir"
  {
    echo "// Generated by hack/tools.sh --regen-modules. Do not edit by hand."
    echo "// Builds etcd at a pinned version: go.etcd.io/etcd/server/v3 replaces its"
    echo "// sibling modules with local paths, so \`go install\` refuses it; required"
    echo "// from here, its requirements resolve to the published sibling releases."
    echo "module switchyard.local/hack/gomod/etcd"
    echo
    echo "go 1.26.0"
    echo
    echo "tool go.etcd.io/etcd/server/v3"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  } >"$dir/go.mod"
  rm -f "$dir/go.sum"
  (cd "$dir" && go mod tidy)
  log "regenerated $dir/go.mod"
}

regen_kstatus_check_mod() {
  local dir="$HACK_DIR/kstatus-check"
  (cd "$dir" && go get "sigs.k8s.io/cli-utils@$KSTATUS_VERSION" && go mod tidy)
  log "updated $dir/go.mod"
}

check_wrapper_mod() {
  # $1 tool, $2 module path, $3 version[, $4 module dir (default hack/gomod/<tool>)]
  local mod="${4:-$HACK_DIR/gomod/$1}/go.mod"
  [[ -f "$mod" && -f "${mod%.mod}.sum" ]] ||
    die "$mod or its go.sum is missing; run hack/tools.sh --regen-modules"
  grep -qE "^(require )?[[:space:]]*${2//./\\.} ${3//./\\.}( //.*)?\$" "$mod" ||
    die "$mod does not pin $2 $3 (the version in hack/tools.sh); run hack/tools.sh --regen-modules"
}

# ---------------------------------------------------------------------------
# Builders. Each writes into $1 (the tool's versioned prefix, e.g.
# .../tools/kubernetes-v1.37.2) and logs to stdout/stderr (redirected to the
# tool's build log by the caller).
# ---------------------------------------------------------------------------

# Build the `tool` packages of a committed wrapper module. The module is copied
# into a scratch dir inside the cache, so nothing is written into the clone.
build_wrapper() {
  local tool="$1" prefix="$2"; shift 2
  local scratch="$CACHE/build/$tool" ldflags
  ldflags="$(ldflags_for "$tool")"
  rm -rf "$scratch"; mkdir -p "$scratch" "$prefix/bin"
  cp "$HACK_DIR/gomod/$tool/go.mod" "$HACK_DIR/gomod/$tool/go.sum" "$scratch/"
  (cd "$scratch" && go build -trimpath -ldflags "$ldflags" -o "$prefix/bin/" "$@")
  rm -rf "$scratch"
}

build_tool() {
  local tool="$1" prefix="$2"
  case "$tool" in
    nats-server)
      GOBIN="$prefix/bin" go install -trimpath -ldflags "$(ldflags_for nats-server)" \
        "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION" ;;
    etcd)
      check_wrapper_mod etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
      build_wrapper etcd "$prefix" go.etcd.io/etcd/server/v3
      # go names the binary after the module path without its /v3 suffix
      # ("server"); give it its real name.
      mv "$prefix/bin/server" "$prefix/bin/etcd" ;;
    kubernetes)
      check_wrapper_mod kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
      build_wrapper kubernetes "$prefix" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ;;
    kwok)
      GOBIN="$prefix/bin" go install -trimpath -ldflags "$(ldflags_for kwok)" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
      # kwok refuses to start without Stage definitions. The upstream defaults
      # (the ones kwokctl embeds) ship in the module source: node-initialize,
      # node heartbeat with lease, and the fast pod ready/complete/delete
      # stages. Keep a copy next to the binary so it matches its version.
      local src
      src="$(module_dir sigs.k8s.io/kwok "$KWOK_VERSION")/kustomize/stage"
      mkdir -p "$prefix/share"
      local f first=1
      : >"$prefix/share/stages.yaml"
      for f in node/fast/node-initialize.yaml \
               node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
               pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        [[ -f "$src/$f" ]] || { echo "missing kwok stage $src/$f"; return 1; }
        (( first )) || echo "---" >>"$prefix/share/stages.yaml"
        first=0
        cat "$src/$f" >>"$prefix/share/stages.yaml"
      done ;;
    helm)
      GOBIN="$prefix/bin" go install -trimpath -ldflags "$(ldflags_for helm)" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    kstatus-check)
      # Our own source; building it writes nothing into the clone (go.sum is complete).
      check_wrapper_mod kstatus-check sigs.k8s.io/cli-utils "$KSTATUS_VERSION" "$HACK_DIR/kstatus-check"
      (cd "$HACK_DIR/kstatus-check" &&
        go build -trimpath -ldflags "$(ldflags_for kstatus-check)" -o "$prefix/bin/kstatus-check" .) ;;
  esac
}

# Identifies a build: if anything here changes, the tool is rebuilt.
recipe_hash() {
  local tool="$1"
  {
    echo "$tool $(version_for "$tool")"
    # The Kubernetes ldflags need the proxy (build date), which the version
    # determines anyway; hash a recipe revision instead.
    if [[ "$tool" == kubernetes ]]; then echo "kube-ldflags-v2"; else ldflags_for "$tool"; fi
    if [[ -d "$HACK_DIR/gomod/$tool" ]]; then
      cat "$HACK_DIR/gomod/$tool/go.mod" "$HACK_DIR/gomod/$tool/go.sum"
    fi
    if [[ "$tool" == kwok ]]; then echo "stages-v1"; fi
    if [[ "$tool" == kstatus-check ]]; then cat "$HACK_DIR"/kstatus-check/{go.mod,go.sum,*.go}; fi
  } | sha256sum | cut -c1-16
}

prefix_for() { echo "$CACHE/tools/$1-$(version_for "$1")"; }

is_cached() {
  local tool="$1" prefix b
  prefix="$(prefix_for "$tool")"
  [[ -f "$prefix/.stamp" && "$(cat "$prefix/.stamp")" == "$(recipe_hash "$tool")" ]] || return 1
  for b in $(binaries_for "$tool"); do [[ -x "$prefix/bin/$b" ]] || return 1; done
}

link_tool() {
  local tool="$1" prefix b
  prefix="$(prefix_for "$tool")"
  mkdir -p "$BIN_DIR"
  for b in $(binaries_for "$tool"); do ln -sfn "$prefix/bin/$b" "$BIN_DIR/$b"; done
  if [[ "$tool" == kwok ]]; then
    mkdir -p "$CACHE/share/kwok"
    ln -sfn "$prefix/share/stages.yaml" "$CACHE/share/kwok/stages.yaml"
  fi
}

# One-line description of what was installed, from the binary itself (this
# also proves the binary runs).
describe() {
  local bin="$BIN_DIR"
  case "$1" in
    nats-server) "$bin/nats-server" --version ;;
    etcd) "$bin/etcd" --version | head -n1 ;;
    kubernetes) echo "$("$bin/kubectl" version --client 2>/dev/null | head -n1); kube-apiserver $("$bin/kube-apiserver" --version | awk '{print $2}')" ;;
    kwok) "$bin/kwok" --version 2>&1 | head -n1 ;;
    helm) "$bin/helm" version --short ;;
    kstatus-check) "$bin/kstatus-check" --version ;;
  esac
}

# Build one tool (in the background from main); writes status files that the
# main loop reads.
run_build() {
  local tool="$1" version prefix logf start rc
  version="$(version_for "$tool")"
  prefix="$(prefix_for "$tool")"
  logf="$LOG_DIR/$tool-$version.log"
  start=$SECONDS
  rm -rf "$prefix"
  mkdir -p "$prefix"
  set +e
  ( set -euo pipefail; build_tool "$tool" "$prefix" ) >"$logf" 2>&1
  rc=$?
  set -e
  if (( rc == 0 )); then
    recipe_hash "$tool" >"$prefix/.stamp" || rc=1
  fi
  echo "$rc $((SECONDS - start))" >"$STATUS_DIR/$tool"
}

main() {
  local mode=build
  local -a want=()
  while (( $# )); do
    case "$1" in
      --print-bin-dir) echo "$BIN_DIR"; return 0 ;;
      --print-cache-dir) echo "$CACHE"; return 0 ;;
      --check) mode=check ;;
      --regen-modules) mode=regen ;;
      -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
      -*) die "unknown option $1" ;;
      *) version_for "$1" >/dev/null; want+=("$1") ;;
    esac
    shift
  done
  (( ${#want[@]} )) || want=("${TOOLS[@]}")

  check_go

  if [[ "$mode" == regen ]]; then
    regen_etcd_mod
    regen_kubernetes_mod
    regen_kstatus_check_mod
    return 0
  fi

  if [[ "$mode" == check ]]; then
    local t missing=0
    for t in "${want[@]}"; do
      if is_cached "$t"; then link_tool "$t"; else log "missing: $t $(version_for "$t")"; missing=1; fi
    done
    return "$missing"
  fi

  mkdir -p "$CACHE/tools" "$BIN_DIR" "$LOG_DIR"
  STATUS_DIR="$(mktemp -d)"
  trap 'rm -rf "$STATUS_DIR"' EXIT

  # Kubernetes first: it is the long pole (~7 min cold on 2 cores, most of
  # the total), the others build alongside it.
  local -a todo=() t
  for t in kubernetes etcd nats-server kwok helm kstatus-check; do
    [[ " ${want[*]} " == *" $t "* ]] || continue
    if is_cached "$t"; then
      link_tool "$t"
      printf '%-12s %-8s cached   %s\n' "$t" "$(version_for "$t")" "$(describe "$t" | tr '\n' ' ')"
    else
      todo+=("$t")
    fi
  done
  (( ${#todo[@]} )) || return 0

  # Lock the cache so two concurrent runs (e.g. two make targets) do not build
  # into the same directories.
  exec 9>"$CACHE/.tools.lock"
  if ! flock -n 9; then
    log "another hack/tools.sh is building into $CACHE; waiting for it..."
    flock 9
  fi

  log "building ${todo[*]} (logs in $LOG_DIR; a cold build of everything takes ~10-15 min on 2 cores)"
  local -a pids=()
  local running=0 failed=0
  for t in "${todo[@]}"; do
    # Re-check: a concurrent run may have built it while we waited for the lock.
    if is_cached "$t"; then
      echo "0 0" >"$STATUS_DIR/$t"; continue
    fi
    while (( running >= JOBS )); do
      wait -n || true
      running=$((running - 1))
    done
    log "  building $t $(version_for "$t") ..."
    run_build "$t" &
    pids+=($!)
    running=$((running + 1))
  done
  wait "${pids[@]}" 2>/dev/null || true

  for t in "${todo[@]}"; do
    local rc secs
    read -r rc secs <"$STATUS_DIR/$t" || { rc=1; secs=0; }
    if (( rc == 0 )); then
      link_tool "$t"
      printf '%-12s %-8s built in %4ss  %s\n' "$t" "$(version_for "$t")" "$secs" "$(describe "$t" | tr '\n' ' ')"
    else
      failed=1
      log ""
      log "FAILED: $t $(version_for "$t") (exit $rc after ${secs}s). Last lines of $LOG_DIR/$t-$(version_for "$t").log:"
      tail -n 40 "$LOG_DIR/$t-$(version_for "$t").log" >&2 || true
    fi
  done
  (( failed == 0 )) || die "some tools failed to build (see above)"
}

main "$@"
