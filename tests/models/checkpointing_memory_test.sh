#!/usr/bin/env bash
# Gradient checkpointing must lower peak memory: one forward+backward of the mid-size UNet
# (tests/reference/sdxl_full_size_keys.py writes its config) in two fresh processes, without
# and with recomputation; the second must grow the resident set by clearly less.
#   checkpointing_memory_test.sh BENCH_BINARY UNET_CONFIG
set -u
bench=$1 config=$2
plain=$("$bench" memory "$config" plain 2 64) || exit 1
recompute=$("$bench" memory "$config" recompute 2 64) || exit 1
p=$(sed -E 's/.*"growth_kib": ([0-9]+).*/\1/' <<<"$plain")
r=$(sed -E 's/.*"growth_kib": ([0-9]+).*/\1/' <<<"$recompute")
echo "fwd+bwd peak growth: plain ${p} KiB, with gradient checkpointing ${r} KiB (ratio $(awk "BEGIN{printf \"%.2f\", $r/$p}"))"
[ "$r" -lt $((p * 3 / 4)) ] || { echo "FAIL: checkpointing saved less than a quarter of the activation memory"; exit 1; }
