#!/usr/bin/env python3
"""Predicted data-parallel scaling of xltune on A40 nodes: step time and efficiency for LoRA and
full fine-tuning of SDXL at 512² and 1024², on 8 GPUs (PCIe, or NVLink pairs) and on 2-16 nodes of
8 GPUs at 100 and 200 Gb/s, from the bucket sizes of Note [Gradient buckets] and the compute
per step. An arithmetic model, not a measurement: every figure it assumes is printed with its
source, and the GPU benchmark (bench/gpu/run) is what will check the compute side.

  python3 bench/scaling_model.py [--mfu 0.35] [--measured bench_allreduce.json]

Model:
  compute   F = forward, B = backward: LoRA B = F (activation gradients only), full B = 2F plus one
            more F for gradient checkpointing's recompute (the A40 configs use it); F = flops / (peak * MFU)
  buckets   1 MB, then 25 MB, in backward order; bucket k is ready when backward has produced its
            share of the gradient bytes (gradients arrive at a uniform rate through backward, or at the
            measured rate with --measured); its all-reduce starts when it is ready and the previous one
            is done (NCCL runs one collective at a time per communicator)
  all-reduce ring: 2 (n-1)/n * bytes / bus bandwidth + 2 (n-1) * latency; across nodes, hierarchical:
            reduce-scatter inside the node, the node's 1/8 share over the network ring, all-gather inside
  step      F + max(B, last all-reduce end) + optimizer (neglected); efficiency = (F + B) / step
"""
import argparse
import json

SOURCES = {
    "a40_bf16_tflops": (149.7, "A40 dense BF16 peak, TFLOPS (NVIDIA A40 datasheet; hmc-tech comparison pages)"),
    "fwd_tflop_1024": (6.76, "SDXL UNet forward per 1024² sample, TFLOP (analytic count of the configs, 2 FLOP/MAC)"),
    "fwd_tflop_512": (1.59, "SDXL UNet forward per 512² sample, TFLOP (same count)"),
    "lora_params": (46.45e6, "LoRA rank 32 on to_q/to_k/to_v/to_out.0 + 4,096 token-row values (xltune_bench_train)"),
    "full_params": (2547.49e6, "UNet parameters trained by full fine-tuning (all but *.norm*.weight, *time*)"),
    "pcie_busbw": (20.0, "NCCL ring bus bandwidth on PCIe Gen4 x16, GB/s (assumed: ~2/3 of the 32 GB/s link)"),
    "nvlink_busbw": (100.0, "A40 NVLink bridge between a pair, GB/s (112.5 GB/s bidirectional per the datasheet)"),
    "net_efficiency": (0.9, "fraction of the NIC's line rate an all-reduce gets (assumed)"),
    "latency_pcie_s": (8e-6, "per ring hop inside a node, seconds (assumed)"),
    "latency_net_s": (15e-6, "per ring hop between nodes, seconds (assumed)"),
}


def v(k):
    return SOURCES[k][0]


def ring(n, nbytes, busbw_gbs, latency):
    if n <= 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / (busbw_gbs * 1e9) + 2 * (n - 1) * latency


def allreduce_time(nbytes, topology, nodes, net_gbits):
    gpus = 8
    if topology == "pcie":
        intra = ring(gpus, nbytes, v("pcie_busbw"), v("latency_pcie_s"))
    else:  # NVLink pairs: reduce inside the pair, a 4-member ring of half the bytes over PCIe, then back
        intra = ring(2, nbytes, v("nvlink_busbw"), 2e-6) + ring(4, nbytes / 2, v("pcie_busbw"), v("latency_pcie_s"))
    if nodes == 1:
        return intra
    net = net_gbits / 8 * v("net_efficiency")  # GB/s per node
    # Hierarchical: reduce-scatter and all-gather inside the node (together one ring's worth),
    # and between nodes each GPU's 1/8 share on a ring of `nodes` members; the 8 shares share the
    # node's NIC, so the network carries 2 (N-1)/N of the whole gradient per node.
    return intra + ring(nodes, nbytes, net, v("latency_net_s"))


def step(mode, res, batch, topology, nodes, net_gbits, mfu, ready_profile=None, grad_bytes=4):
    fwd = (v("fwd_tflop_1024") if res == 1024 else v("fwd_tflop_512")) * batch * 1e12
    rate = v("a40_bf16_tflops") * 1e12 * mfu
    F = fwd / rate
    B = F if mode == "lora" else 3 * F  # full: weight and activation gradients, plus checkpointing's recompute
    nbytes = grad_bytes * (v("lora_params") if mode == "lora" else v("full_params"))
    sizes = [min(2**20, nbytes)]
    while sum(sizes) < nbytes:
        sizes.append(min(25 * 2**20, nbytes - sum(sizes)))
    t, done, cum = 0.0, 0.0, 0.0
    for s in sizes:
        cum += s
        frac = cum / nbytes if ready_profile is None else ready_profile(cum / nbytes)
        ready = F + B * frac
        start = max(ready, done)
        done = start + allreduce_time(s, topology, nodes, net_gbits)
    total = F + max(B, done - F)
    return total, (F + B) / total, F + B


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mfu", type=float, default=0.35, help="achieved fraction of peak (assumed; default 0.35)")
    ap.add_argument("--measured", help="bench/allreduce.py's JSON line, for a measured gradient-ready profile")
    a = ap.parse_args()
    profile = None
    if a.measured:
        m = json.loads(open(a.measured).read())
        busy = m["bucket_busy_ms"]
        total = sum(busy) or 1.0
        cum = [sum(busy[: i + 1]) / total for i in range(len(busy))]
        profile = lambda f: next((c for c in cum if c >= f - 1e-9), 1.0)  # noqa: E731
    print("Assumed figures:")
    for k, (val, src) in SOURCES.items():
        print(f"  {k:18s} {val:<10g} {src}")
    print(f"  {'mfu':18s} {a.mfu:<10g} achieved fraction of the BF16 peak (assumed)")
    print()
    cases = [("lora", 512, 4, 4), ("lora", 1024, 1, 4), ("full", 512, 2, 4), ("full", 1024, 1, 4), ("full", 1024, 1, 2)]
    setups = [("8 A40, PCIe", "pcie", 1, 0), ("8 A40, NVLink pairs", "nvlink", 1, 0)]
    for nodes in (2, 4, 8, 16):
        for gb in (100, 200):
            setups.append((f"{nodes} nodes x 8, {gb} Gb/s", "pcie", nodes, gb))
    header = f"{'setup':26s}" + "".join(f"{m + ' ' + str(r) + '² b' + str(b) + (' bf16' if g == 2 else ''):>24s}"
                                        for m, r, b, g in cases)
    print("Predicted step time (s) and data-parallel efficiency:")
    print(header)
    for name, topo, nodes, gb in setups:
        row = f"{name:26s}"
        for mode, res, b, g in cases:
            t, eff, _ = step(mode, res, b, topo, nodes, gb, a.mfu, profile, g)
            row += f"{t:>15.3f} s {100 * eff:5.1f} %"
        print(row)
    print()
    print("Goals (issue 9): >= 95 % for LoRA, >= 90 % for full fine-tuning at 8 GPUs. Full fine-tuning moves")
    print("10.2 GB of fp32 gradients per step: on PCIe that takes longer than backward, and the model says")
    print("so. The last column is a what-if (not in xltune yet): the same gradients all-reduced in bf16.")


if __name__ == "__main__":
    main()
