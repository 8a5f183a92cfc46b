#!/usr/bin/env bash
# `make test`: bring the local environment up (unless it already is), run every unit and
# integration test against it, and stop what this script started, even when tests fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEV_ENV=target/dev-env/env
started_here=0
cleanup() {
  if (( started_here )); then hack/cluster-down.sh --quiet || true; fi
}
trap cleanup EXIT

env_is_up() {
  [[ -f $DEV_ENV ]] || return 1
  # shellcheck disable=SC1090
  ( source "$DEV_ENV" && kubectl --request-timeout=3s get --raw /readyz >/dev/null 2>&1 )
}

if ! env_is_up; then started_here=1; fi
hack/cluster-up.sh
# shellcheck disable=SC1090
source "$DEV_ENV"

# Build first so compile time never counts against a test's patience.
cargo build --locked --all-targets
before="$(mktemp)"
hack/leftovers.py snapshot "$before"
# Integration tests mostly wait on servers, so more threads than cores is the right trade.
status=0
cargo test --locked --no-fail-fast -- --test-threads "${TEST_THREADS:-8}" || status=$?
# Every test removes its namespace and streams, also when it fails; prove it.
hack/leftovers.py check "$before" || status=1
rm -f "$before"
exit "$status"
