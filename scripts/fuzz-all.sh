#!/usr/bin/env bash
# Runs every fuzz target of the module for the given time each (default
# 10s): the decoders' targets (among them FuzzChatRequest, the OpenAI-compatible
# API's body decoder) and the HTTP handlers' (ingress, egress).
# CI (.ci/run) runs it with 5s each. A failing input is written by Go to
# the package's testdata/fuzz/<Target>/ directory; commit it with the fix,
# and plain `go test` replays it as a regression test from then on.
#
# Targets are found with grep, not `go test -list`, which would build every
# package's test binary once more.
set -euo pipefail
fuzztime=${1:-10s}
cd "$(dirname "$0")/.."
start=$(date +%s)
n=0
while IFS=: read -r file target; do
  pkg=./$(dirname "$file")
  echo "== $pkg $target ($fuzztime)"
  if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"; then
    echo "FAIL: $target in $pkg; the failing input is in $pkg/testdata/fuzz/$target/" >&2
    echo "      reproduce: go test -run '^${target}\$' $pkg" >&2
    exit 1
  fi
  n=$((n + 1))
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' | sed -E 's/func (Fuzz[A-Za-z0-9_]+).*/\1/' | sort)
echo "fuzzed $n targets for $fuzztime each in $(($(date +%s) - start))s"
