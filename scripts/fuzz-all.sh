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
flaked=0
while IFS=: read -r file target; do
  pkg=./$(dirname "$file")
  corpus="$pkg/testdata/fuzz/$target"
  echo "== $pkg $target ($fuzztime)"
  before=$(ls "$corpus" 2>/dev/null | sort || true)
  log=$(mktemp)
  if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -ne 0 ]; then
    after=$(ls "$corpus" 2>/dev/null | sort || true)
    # Go's fuzz coordinator (go1.26, go.dev/issue/75804, fixed in go1.27) can
    # fail a target with a bare "context deadline exceeded" when -fuzztime ends
    # while a worker is mid-input: no input is written and nothing fails. Such
    # a run counts as a flake once the target's corpus replays clean; any run
    # that wrote an input, or failed otherwise, fails.
    if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$log" &&
       ! grep -q -e 'panic:' -e 'Failing input written' "$log" &&
       go test -run "^${target}\$" "$pkg" >/dev/null; then
      echo "FLAKE: $target ended with Go's fuzztime deadline race (go.dev/issue/75804), no input written, corpus replays clean" >&2
      flaked=$((flaked + 1))
    else
      echo "FAIL: $target in $pkg; the failing input is in $corpus/" >&2
      echo "      reproduce: go test -run '^${target}\$' $pkg" >&2
      rm -f "$log"
      exit 1
    fi
  fi
  rm -f "$log"
  n=$((n + 1))
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' | sed -E 's/func (Fuzz[A-Za-z0-9_]+).*/\1/' | sort)
echo "fuzzed $n targets for $fuzztime each in $(($(date +%s) - start))s ($flaked ended by Go's deadline race)"
