#!/usr/bin/env bash
# `make bench-schema-compat`: time compatibility checks for a realistic and a very large pair of
# schema versions, and peak memory by schema size; appends a dated section to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

results="$(cargo bench --locked --bench schema_compat 2>/dev/null)"
machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m)"
report="$(cat <<MD

### bench-schema-compat, $(date -u +%Y-%m-%dT%H:%MZ)
- Machine: $machine; switchyard $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release profile
- Targets: realistic pair < 1 ms, 5,000-property pair < 100 ms, memory linear in schema size
$results
MD
)"
echo "$report"
[[ -f BENCHMARKS.md ]] || printf '# Benchmarks\n\nResults of `make bench-*`, newest last. Figures are from the machine named in each entry.\n' >BENCHMARKS.md
echo "$report" >>BENCHMARKS.md
