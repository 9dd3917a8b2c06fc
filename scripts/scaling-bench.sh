#!/usr/bin/env bash
# Measures Switchboard with several instances of each service (docs/SCALING.md):
# for each instance layout and offered rate, N short baseline runs of
# `loadtest --stack --instances ...`, one Markdown row per run with the load
# average before it, then the median of the runs.
#
#   scripts/scaling-bench.sh                       # the layouts and rates of docs/SCALING.md
#   LAYOUTS="1/1/1 2/2/2" RATES="600" RUNS=1 scripts/scaling-bench.sh
#
# Layouts are ingress/router-worker/egress. Needs make build and jq. Each run
# starts its own stack on a devbroker (free loopback ports) and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
LAYOUTS=${LAYOUTS:-"1/1/1 2/2/2 1/3/1 3/3/3"}
RATES=${RATES:-"600 2000"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
OUT=${OUT:-bench/scaling-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
echo "| instances (in/rw/eg) | offered/s | achieved/s | p50 ms | p99 ms | lost/dup/order | CPU ms/request: ingress | router-worker | egress | all processes | load average before |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
  for layout in $LAYOUTS; do
    IFS=/ read -r in rw eg <<<"$layout"
    achieved=() p99s=()
    for run in $(seq 1 "$RUNS"); do
      dir="$OUT/$in-$rw-$eg-r$rate-$run"
      load=$(cut -d' ' -f1-3 /proc/loadavg)
      bin/loadtest --stack --instances "ingress=$in,router-worker=$rw,egress=$eg" --scenarios baseline \
        --duration "$DURATION" --warmup 2s --rate "$rate" --conversations "$rate" --stream=false --drain 60s \
        --out "$dir" --label "scaling $layout, run $run" >"$dir.log" 2>&1 || { echo "run failed: see $dir.log" >&2; continue; }
      row=$(jq -r '.reports[0].classes.interactive | "\(.achieved_rate|floor) | \(.latency_ms.p50*10|round/10) | \(.latency_ms.p99*10|round/10) | \(.lost)/\(.duplicates)/\(.order_violations)"' "$dir/suite.json")
      # CPU per request of each service, summed over its instances.
      cpu=$(jq -r '.reports[0].processes as $p | def sum(s): [$p | to_entries[] | select(.key|test(s)) | .value.cpu_per_request_ms] | add * 1000 | round / 1000;
        "\(sum("^ingress")) | \(sum("^router-worker")) | \(sum("^egress")) | \(sum("^(?!loadtest)"))"' "$dir/suite.json")
      echo "| $layout (run $run) | $rate | $row | $cpu | $load |"
      achieved+=("$(jq '.reports[0].classes.interactive.achieved_rate' "$dir/suite.json")")
      p99s+=("$(jq '.reports[0].classes.interactive.latency_ms.p99' "$dir/suite.json")")
    done
    median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR) printf "%.1f", a[int((NR+1)/2)]}'; }
    echo "| **$layout median of ${#achieved[@]}** | $rate | $(median "${achieved[@]}") | | $(median "${p99s[@]}") | | | | | | |"
  done
done
