#!/bin/bash
# Usage: benches/rollout.sh [path/to/meshprov]   (default target/release/meshprov)
# README "Rollout performance": the 100-device demo building at 10 % loss, default concurrency
# (16) and --concurrency 1, in one run; then 1,000 devices with /usr/bin/time -v.
set -e
M=${1:-target/release/meshprov}
for c in default 1; do
  d=$(mktemp -d); $M demo --devices 100 --seed 9 --dir $d --json >/dev/null 2>&1 || true
  rm -f $d/network.db*
  extra=""; [ $c != default ] && extra="--concurrency $c"
  $M rollout $d/plan.toml --json --loss 0.1 --seed 9 $extra | tail -1
  rm -rf $d
done
d=$(mktemp -d)
/usr/bin/time -v $M demo --devices 1000 --dir $d --json 2> $d/time.txt | tail -1
grep -E "Elapsed|User time|System time|Maximum resident" $d/time.txt
rm -rf $d
