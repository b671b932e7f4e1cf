#!/usr/bin/env python3
"""bench/step_ops on the tiny model: every case prints its JSON line, the counter sees the ops
of each phase (a broken RecordFunction callback counts nothing), the pivot changes what runs
(text encoders before it, the cache after), and full fine-tuning's optimizer touches every
trained tensor. Counts are checked for structure, not values: they move with every change to
the step, which is what the bench is for.
  step_ops_test.py BENCH_BINARY MODEL_DIR"""
import json
import subprocess
import sys

binary, model = sys.argv[1], sys.argv[2]
out = subprocess.run([binary, model, "cpu", "64", "1", "all", "1"], capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(f"step_ops failed ({out.returncode}):\n{out.stderr[-2000:]}")
cases = {}
for line in out.stdout.splitlines():
    if line.startswith("{"):
        row = json.loads(line)
        cases[row["case"]] = row
want = {"lora_before_pivot", "lora_after_pivot", "full_before_pivot", "full_after_pivot"}
assert set(cases) == want, f"cases {sorted(cases)}"
for name, row in cases.items():
    phases = row["by_phase"]
    for phase in ("draws", "forward", "backward", "clip", "optimizer"):
        assert phases[phase]["ops"] > 0, f"{name}: no ops counted in {phase}"
    assert row["ops_total"] == sum(p["ops"] for p in phases.values()), f"{name}: phases do not add up"
    assert row["frozen_unet"]["ops"] > 0 and row["everything_else"]["ops"] > 0, name
    assert phases["backward"]["autograd_nodes"] > 0, f"{name}: no autograd nodes in backward"
for kind in ("lora", "full"):
    before, after = cases[f"{kind}_before_pivot"], cases[f"{kind}_after_pivot"]
    assert before["by_phase"]["text"]["ops"] > 10 * after["by_phase"]["text"]["ops"], \
        f"{kind}: the text encoders should run before the pivot and be cached after it"
# Note [The step's verdict on the device]: between the forward and the optimizer step the step's
# own code reads nothing back with the fused AdamW (a GPU's default); the foreach kernel reads
# the verdict once (its bias corrections are host numbers). Item() calls of CPU kernels reading
# 0-dim CPU tensors are not the step's reads (a GPU kernel reads them on the device).
for name, row in cases.items():
    assert row["host_reads_forward_to_optimizer"] <= 1, f"{name} (foreach): {row['host_reads_forward_to_optimizer']}"
fused = subprocess.run([binary, model, "cpu", "64", "1", "all", "1", "fused"], capture_output=True, text=True)
if fused.returncode != 0:
    sys.exit(f"step_ops fused failed ({fused.returncode}):\n{fused.stderr[-2000:]}")
fused_cases = [json.loads(line) for line in fused.stdout.splitlines() if line.startswith("{")]
assert {row["case"] for row in fused_cases} == want, f"fused cases {[r['case'] for r in fused_cases]}"
for row in fused_cases:
    assert row["adamw_kernel"] == "fused", row["adamw_kernel"]
    assert row["host_reads_forward_to_optimizer"] == 0, \
        f"{row['case']} (fused): {row['host_reads_forward_to_optimizer']} host reads between forward and optimizer"
    assert row["by_phase"]["optimizer"]["item"] > 0, \
        f"{row['case']}: the CPU fused kernel's own step-count reads should be seen (a blind counter sees none)"
# Note [LoRA's shared down-projection]: FUSE on groups attn1's q, k, v and attn2's k, v into one
# autograd node each, so a LoRA step evaluates fewer nodes and dispatches fewer ops; off is the CPU's
# default (the JSON says which ran).
grouped = subprocess.run([binary, model, "cpu", "64", "1", "lora_after_pivot", "1", "fused", "fp32", "on"],
                         capture_output=True, text=True)
if grouped.returncode != 0:
    sys.exit(f"step_ops FUSE on failed ({grouped.returncode}):\n{grouped.stderr[-2000:]}")
on = [json.loads(line) for line in grouped.stdout.splitlines() if line.startswith("{")][0]
off = next(row for row in fused_cases if row["case"] == "lora_after_pivot")
assert on["lora_fused_projections"] is True and off["lora_fused_projections"] is False, (on, off)
nodes_on, nodes_off = on["by_phase"]["backward"]["autograd_nodes"], off["by_phase"]["backward"]["autograd_nodes"]
assert nodes_on < nodes_off, f"FUSE on: {nodes_on} autograd nodes, off: {nodes_off}"
assert on["ops_top_level"] < off["ops_top_level"], f"FUSE on: {on['ops_top_level']} top-level ops, off: {off['ops_top_level']}"
print("ok:", ", ".join(f"{n} {cases[n]['ops_top_level']} top-level ops" for n in sorted(cases)))
