#!/usr/bin/env python3
"""Predicted data-parallel scaling of xltune on A40 nodes (issue 20): step time, efficiency and the
exposed (non-overlapped) communication per step, for LoRA and full fine-tuning of SDXL at 512² and
1024², batch x gradient accumulation, fp32 or bf16 gradients, all-reduce or ZeRO-1 (reduce-scatter
in backward, all-gather after the optimizer step or overlapped with the next forward), on 8 A40s
over PCIe, 8 in NVLink pairs, and 2-8 nodes of 8 over 100 and 400 Gb/s; and the gradient bucket size
that minimises the exposed communication per topology. An arithmetic model: every figure is printed
with its source, and says whether it was measured (--measured) or assumed.

  python3 bench/scaling_model.py [--mfu 0.35] [--measured SWEEP.json [--measured-as pcie|nvlink]]
                                 [--serial-hierarchy] [--json]

Model:
  compute   per micro-batch F (forward) and B (backward); LoRA B = F (activation gradients only),
            full B = 2F + F (weight and activation gradients, and gradient checkpointing's
            recompute, which the A40 configs use); F = flop / (peak * MFU). A step of K
            micro-batches computes K (F + B) (Note [Gradient accumulation]).
  buckets   1 MB, then BUCKET MB of fp32 gradients, in backward order (Note [Gradient buckets]);
            the wire carries them in the reduce dtype (bf16: half the bytes). Gradients arrive at a
            uniform rate through the LAST micro-batch's backward: only it communicates, so with K > 1
            the first K - 1 micro-batches hide nothing. A bucket's collective starts when it is
            ready and the previous one is done (one collective at a time per communicator).
  all-reduce  exposed = the reduction's end past backward's end (finish() waits for it)
  ZeRO-1    the same with reduce-scatters; then the optimizer on 1/W of the parameters; then the
            all-gather of the parameters (fp32 or bf16):
              after     all of it exposed (today's code);
              overlap   issued in forward order as the next step starts, the forward of each part of
                        the UNet waiting for its parameters (parameters used uniformly through forward)
  links     ring on n members: all-reduce 2 (n-1)/n S / busbw + 2 (n-1) latency, reduce-scatter and
            all-gather (n-1)/n S / busbw + (n-1) latency (nccl-tests' bus bandwidth). NVLink pairs:
            NCCL's flat 8-GPU ring alternates NVLink and PCIe hops, so a ring uses each GPU's PCIe
            link in one direction only, and two rings (one each way) fill both: bus bandwidth twice
            the PCIe figure, capped by NVLink's (an assumption, replaced by an NCCL sweep on such a
            node: --measured-as nvlink). Nodes: two levels, inside the node over PCIe (8) and
            between nodes each GPU's 1/8 share, the 8 shares sharing the node's NIC. Levels
            pipelined (NCCL moves chunks through every link at once: the slowest level's bandwidth
            term, every level's latency), or added up with --serial-hierarchy (a pessimistic bound).
  optimizer AdamW is memory-bound: bytes per parameter / (A40 memory bandwidth x achieved fraction);
            ZeRO-1 runs it on 1/W of the parameters.
  step      K (F + B) + optimizer + exposed communication; efficiency = (step - exposed) / step, the
            fraction of the step not spent waiting for communication (the targets also print issue
            9's K (F + B) / (K (F + B) + exposed), which leaves the optimizer out).
"""
import argparse
import json
import math
import sys

SOURCES = {
    "a40_bf16_tflops": (149.7, "A40 dense BF16 peak, TFLOPS (NVIDIA A40 datasheet)"),
    "a40_mem_gbs": (696.0, "A40 memory bandwidth, GB/s (NVIDIA A40 datasheet)"),
    "mem_efficiency": (0.7, "fraction of the memory bandwidth AdamW's elementwise pass gets (assumed)"),
    "adamw_bytes_per_param": (28, "fp32 AdamW: reads weight, gradient, 2 moments; writes weight, 2 moments"),
    "fwd_tflop_1024": (6.76, "SDXL UNet forward per 1024² sample, TFLOP (analytic count of the configs, 2 FLOP/MAC)"),
    "fwd_tflop_512": (1.59, "SDXL UNet forward per 512² sample, TFLOP (same count)"),
    "lora_params": (46.45e6, "LoRA rank 32 on to_q/to_k/to_v/to_out.0 + 4,096 token-row values (xltune_bench_train)"),
    "full_params": (2547.49e6, "UNet parameters trained by full fine-tuning (all but *.norm*.weight, *time*)"),
    "pcie_busbw": (20.0, "NCCL ring bus bandwidth, 8 A40 on PCIe Gen4 x16, GB/s (assumed: ~2/3 of the 32 GB/s "
                         "link; hosts differ, P2P through the CPU can be slower: NVIDIA/nccl-tests#74)"),
    "nvlink_busbw": (100.0, "A40 NVLink bridge between a pair, GB/s (112.5 GB/s bidirectional per the datasheet)"),
    "net_efficiency": (0.9, "fraction of the NIC's line rate a collective gets (assumed)"),
    "latency_pcie_s": (8e-6, "per ring hop inside a node, seconds (assumed)"),
    "latency_nvlink_s": (2e-6, "per hop over the NVLink bridge, seconds (assumed)"),
    "latency_net_s": (15e-6, "per ring hop between nodes, seconds (assumed)"),
}
GPUS_PER_NODE = 8
BUCKET_CANDIDATES_MB = (1, 4, 10, 25, 50, 100)
DEFAULT_BUCKET_MB = 25  # Note [Gradient buckets]
STEM = 0.3  # --zero_replicated_fraction's default (Note [Replicated stem under ZeRO-1])
STEM_CANDIDATES = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather")


def v(k):
    return SOURCES[k][0]


def hops(collective, n):
    return 2 * (n - 1) if collective == "all_reduce" else n - 1


def bus_factor(collective, n):
    return 2 * (n - 1) / n if collective == "all_reduce" else (n - 1) / n


# ---- measured curves --------------------------------------------------------------------------

def fit_curve(points, collective, ranks, large_from=2**22, small_to=2**14):
    """Latency per hop and bus bandwidth (GB/s) from a sweep's (bytes, seconds) points: least
    squares t = a + b S on the sizes >= large_from (the two largest if fewer), busbw = factor / b;
    the latency from the sizes <= small_to (the two smallest if fewer): median of t - b S, per hop."""
    pts = sorted((int(p["bytes"]), float(p["seconds"])) for p in points)
    if len(pts) < 2:
        raise ValueError(f"{collective}: a curve needs at least 2 points, got {len(pts)}")
    large = [p for p in pts if p[0] >= large_from] or pts[-2:]
    if len(large) < 2:
        large = pts[-2:]
    n = len(large)
    mx = sum(s for s, _ in large) / n
    my = sum(t for _, t in large) / n
    sxx = sum((s - mx) ** 2 for s, _ in large)
    slope = sum((s - mx) * (t - my) for s, t in large) / sxx if sxx > 0 else my / mx
    if slope <= 0:
        raise ValueError(f"{collective}: time does not grow with size on the large sizes; cannot fit a bandwidth")
    small = [p for p in pts if p[0] <= small_to] or pts[:2]
    rest = sorted(t - slope * s for s, t in small)
    alpha = max(0.0, rest[len(rest) // 2])
    return {"busbw_gbs": bus_factor(collective, ranks) / slope / 1e9,
            "latency_s": alpha / max(1, hops(collective, ranks))}


def load_measured(path, link_override=None):
    """The sweep file of bench/allreduce.py --sweep: its fits per collective and dtype, and the link
    they describe ("cpu": CPU ranks, which describe no GPU link; "pcie" / "nvlink": an NCCL run on
    such a node, which replaces the assumed figures of that link)."""
    with open(path) as f:
        doc = json.load(f)
    curves = doc["curves"] if isinstance(doc, dict) else doc
    link = link_override or (doc.get("link") if isinstance(doc, dict) else None) or "cpu"
    if link not in ("cpu", "pcie", "nvlink"):
        raise ValueError(f"{path}: link {link!r}: cpu, pcie or nvlink")
    fits = {}
    for c in curves:
        fit = fit_curve(c["points"], c["collective"], int(c["ranks"]))
        fit.update(transport=c.get("transport", "?"), ranks=int(c["ranks"]))
        fits[(c["collective"], c["dtype"])] = fit
    return {"path": path, "link": link, "fits": fits}


# ---- links and topologies ---------------------------------------------------------------------

def assumed_links():
    """Per link: {(collective, dtype): (busbw GB/s, latency per hop s, source)}; the assumptions
    are the same for every collective and dtype."""
    def same(bw, lat, src):
        return {(c, d): (bw, lat, src) for c in COLLECTIVES for d in ("fp32", "bf16")}
    return {
        "pcie": same(v("pcie_busbw"), v("latency_pcie_s"), "assumed"),
        # NCCL's flat ring on an NVLink-pair node: both directions of every PCIe link (see above).
        "nvlink": same(min(v("nvlink_busbw"), 2 * v("pcie_busbw")), (v("latency_pcie_s") + v("latency_nvlink_s")) / 2,
                       "assumed: 2 x pcie_busbw, capped by nvlink_busbw; hops alternate NVLink and PCIe"),
    }


def apply_measured(links, measured):
    if measured is None or measured["link"] == "cpu":
        return links
    link = dict(links[measured["link"]])
    for (c, d), fit in measured["fits"].items():
        link[(c, d)] = (fit["busbw_gbs"], fit["latency_s"], f"measured ({measured['path']})")
    for c in COLLECTIVES:  # a curve measured in one dtype only: its bytes move at the same rate
        for d, other in (("fp32", "bf16"), ("bf16", "fp32")):
            if (c, d) not in measured["fits"] and (c, other) in measured["fits"]:
                link[(c, d)] = link[(c, other)]
    links = dict(links)
    links[measured["link"]] = link
    return links


def level(links, link, collective, dtype, nbytes, n):
    """(latency, bandwidth time) of one ring level."""
    if n <= 1:
        return (0.0, 0.0)
    bw, lat, _ = links[link][(collective, dtype)]
    return (hops(collective, n) * lat, bus_factor(collective, n) * nbytes / (bw * 1e9))


def net_level(collective, nbytes, nodes, net_gbits):
    """Between nodes: each GPU's 1/8 share on a ring of `nodes`, the 8 shares over one NIC."""
    if nodes <= 1:
        return (0.0, 0.0)
    bw = net_gbits / 8 * v("net_efficiency")  # GB/s per node
    return (hops(collective, nodes) * v("latency_net_s"), bus_factor(collective, nodes) * nbytes / (bw * 1e9))


def collective_time(links, topo, collective, dtype, nbytes, serial=False):
    if topo["kind"] == "nvlink":
        levels = [level(links, "nvlink", collective, dtype, nbytes, GPUS_PER_NODE)]
    else:
        levels = [level(links, "pcie", collective, dtype, nbytes, GPUS_PER_NODE),
                  net_level(collective, nbytes, topo["nodes"], topo["net_gbits"])]
    latency = sum(lat for lat, _ in levels)
    transfer = sum(t for _, t in levels) if serial else max(t for _, t in levels)
    return latency + transfer


def topologies():
    out = [{"name": "8 A40 PCIe", "short": "PCIe", "kind": "pcie", "nodes": 1, "net_gbits": 0},
           {"name": "8 A40 NVLink pairs", "short": "NVL pairs", "kind": "nvlink", "nodes": 1, "net_gbits": 0}]
    for nodes in (2, 4, 8):
        for gb in (100, 400):
            out.append({"name": f"{nodes} nodes x 8, {gb} Gb/s", "short": f"{nodes}n {gb}G", "kind": "pcie",
                        "nodes": nodes, "net_gbits": gb})
    return out


def world(topo):
    return GPUS_PER_NODE * topo["nodes"]


# ---- one step ---------------------------------------------------------------------------------

def compute_times(case, mfu):
    flop = (v("fwd_tflop_1024") if case["res"] == 1024 else v("fwd_tflop_512")) * case["batch"] * 1e12
    F = flop / (v("a40_bf16_tflops") * 1e12 * mfu)
    B = F if case["mode"] == "lora" else 3 * F
    return F, B


def bucket_params(total_params, bucket_mb):
    """Parameters per bucket: 1 MB of fp32 first, then bucket_mb MB (Note [Gradient buckets])."""
    first, rest = 2**20 // 4, int(bucket_mb * 2**20) // 4
    sizes = [min(first, total_params)]
    left = total_params - sizes[0]
    while left > 0:
        sizes.append(min(rest, left))
        left -= sizes[-1]
    return sizes


def dsize(dtype):
    return 2 if dtype == "bf16" else 4


def step(case, topo, links, mfu=0.35, bucket_mb=DEFAULT_BUCKET_MB, serial=False):
    """One step's times (seconds) for `case` on `topo`."""
    F, B = compute_times(case, mfu)
    K = case["accum"]
    W = world(topo)
    params = v("lora_params") if case["mode"] == "lora" else v("full_params")
    sizes = bucket_params(int(params), bucket_mb)
    zero = case["reduce"] != "all_reduce"
    # ZeRO-1 with a replicated stem (Note [Replicated stem under ZeRO-1]): the first `replicate` of
    # the parameters in forward order (the last buckets in backward's) are all-reduced, not
    # reduce-scattered, and need no all-gather.
    rep = case["replicate"] if zero else 1.0
    g = case["grad_dtype"]
    # The last micro-batch's backward, from its start.
    done, cum, replicated = 0.0, 0, []
    for p in sizes:
        replicated.append(cum + p / 2 > params * (1 - rep))
        cum += p
        ready = B * cum / params
        coll = "all_reduce" if replicated[-1] else "reduce_scatter"
        done = max(ready, done) + collective_time(links, topo, coll, g, p * dsize(g), serial)
    reduce_exposed = max(0.0, done - B)
    per_param = v("adamw_bytes_per_param") / (v("a40_mem_gbs") * 1e9 * v("mem_efficiency"))
    opt_params = params * rep + params * (1 - rep) / W
    # The sharded update first (its all-gathers start as it ends), then the replicated one, which
    # runs while the gathers are in flight (the Trainer steps ZeroOptimizer, then AdamW).
    replicated_update = params * rep * per_param if zero else 0.0
    optimizer = opt_params * per_param
    gather_exposed, gather_total = 0.0, 0.0
    if zero:
        gd = case["gather_dtype"]
        gathers = [0.0 if r else collective_time(links, topo, "all_gather", gd, p * dsize(gd), serial)
                   for p, r in zip(sizes, replicated)]
        gather_total = sum(gathers)
        if case["reduce"] == "zero_after":
            gather_exposed = max(0.0, gather_total - replicated_update)
        else:  # overlapped with the next forward: forward order is backward's reversed
            issued, fwd = 0.0, replicated_update
            for p, t in zip(reversed(sizes), reversed(gathers)):
                issued += t
                fwd = max(fwd, issued) + F * p / params
            gather_exposed = max(0.0, fwd - F - replicated_update)
    exposed = reduce_exposed + gather_exposed
    compute = K * (F + B)
    total = compute + optimizer + exposed
    return {"step_s": total, "efficiency": (total - exposed) / total, "exposed_ms": 1e3 * exposed,
            "compute_efficiency": compute / (compute + exposed),  # issue 9's definition: no optimizer
            "reduce_exposed_ms": 1e3 * reduce_exposed, "gather_exposed_ms": 1e3 * gather_exposed,
            "gather_ms": 1e3 * gather_total, "compute_s": compute, "optimizer_ms": 1e3 * optimizer,
            "backward_ms": 1e3 * B, "buckets": len(sizes),
            "optimizer_state_gb": opt_params * 8 / 1e9,  # fp32 moments per GPU
            # against a step that communicates nothing and updates 1/W of a ZeRO-1 optimizer's share
            "ideal_ratio": (compute + params * per_param / (W if zero else 1)) / total}


def best_bucket(case, topo, links, mfu, serial, candidates=BUCKET_CANDIDATES_MB):
    """The candidate bucket size with the least exposed communication (the smaller on a tie)."""
    scored = [(step(case, topo, links, mfu, mb, serial)["exposed_ms"], mb) for mb in candidates]
    best = min(scored, key=lambda x: (round(x[0], 6), x[1]))
    return best[1], best[0], dict((mb, e) for e, mb in scored)


# ---- cases ------------------------------------------------------------------------------------

def case(mode, res, batch, accum=1, grad_dtype="fp32", reduce="all_reduce", gather_dtype="fp32", replicate=0.0):
    return {"mode": mode, "res": res, "batch": batch, "accum": accum, "grad_dtype": grad_dtype, "reduce": reduce,
            "gather_dtype": gather_dtype, "replicate": replicate}


def label(c):
    r = {"all_reduce": "AR", "zero_after": "ZeRO gather after", "zero_overlap": "ZeRO gather overlap"}[c["reduce"]]
    grads = f"{c['grad_dtype']}" + (f"/{c['gather_dtype']}" if c["reduce"] != "all_reduce" else "")
    stem = f" stem {c['replicate']:g}" if c["reduce"] != "all_reduce" and c["replicate"] > 0 else ""
    return f"{c['mode']} {c['res']}² b{c['batch']}x{c['accum']} {grads} {r}{stem}"


CASES = [
    case("lora", 512, 4),
    case("lora", 1024, 1),
    case("full", 512, 1, grad_dtype="bf16"),
    case("full", 512, 4, grad_dtype="bf16"),
    case("full", 512, 4, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16"),
    case("full", 1024, 1),  # issue 20's "today": fp32 all-reduce
    case("full", 1024, 1, grad_dtype="bf16"),
    case("full", 1024, 1, grad_dtype="fp32", reduce="zero_after", gather_dtype="fp32"),
    case("full", 1024, 1, grad_dtype="bf16", reduce="zero_after", gather_dtype="bf16"),
    case("full", 1024, 1, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16"),
    case("full", 1024, 1, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16", replicate=STEM),
    case("full", 1024, 1, accum=4, grad_dtype="bf16"),
    case("full", 1024, 1, accum=4, grad_dtype="bf16", reduce="zero_after", gather_dtype="bf16"),
    case("full", 1024, 1, accum=4, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16"),
    case("full", 1024, 1, accum=4, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16", replicate=STEM),
    case("full", 1024, 2, accum=2, grad_dtype="bf16"),
    case("full", 1024, 4, accum=1, grad_dtype="bf16"),
    case("full", 1024, 4, accum=1, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16"),
]

# The cases whose bucket size is chosen by sweeping the candidates (accumulation leaves the choice
# as it is: only the last backward communicates).
BUCKET_CASES = [case("lora", 1024, 1), case("full", 1024, 1, grad_dtype="bf16"),
                case("full", 1024, 1, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16"),
                case("full", 1024, 1, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16", replicate=STEM)]

# Issue 20's targets: (label, topology name, the cases that may meet it, minimum efficiency).
TARGETS = [
    ("full FT 1024² batch 1, 8 A40 PCIe", "8 A40 PCIe",
     [c for c in CASES if c["mode"] == "full" and c["res"] == 1024 and c["batch"] == 1 and c["accum"] == 1], 0.90),
    ("full FT 1024², 4 samples per GPU, 4 nodes x 8 at 100 Gb/s", "4 nodes x 8, 100 Gb/s",
     [c for c in CASES if c["mode"] == "full" and c["res"] == 1024 and c["batch"] * c["accum"] == 4], 0.85),
    ("LoRA (every topology)", None, [c for c in CASES if c["mode"] == "lora"], 0.97),
]


def results(links, mfu, serial, bucket_mb=DEFAULT_BUCKET_MB):
    rows = []
    for c in CASES:
        for t in topologies():
            r = step(c, t, links, mfu, bucket_mb, serial)
            rows.append({"case": label(c), "topology": t["name"], **c, **r})
    return rows


# ---- printing ---------------------------------------------------------------------------------

def print_figures(links, measured, mfu):
    print("Figures (assumed unless marked measured):")
    for k, (val, src) in SOURCES.items():
        print(f"  {k:22s} {val:<10g} {src}")
    print(f"  {'mfu':22s} {mfu:<10g} achieved fraction of the BF16 peak (assumed)")
    if measured:
        used = measured["link"] != "cpu"
        print(f"Measured ({measured['path']}, link {measured['link']}: "
              + ("replaces the assumed figures of that link" if used else
                 "CPU ranks; describes no GPU link, so not used in the model below; an NCCL sweep on a GPU node "
                 "would be, with --measured-as pcie|nvlink") + "):")
        for (c, d), fit in sorted(measured["fits"].items()):
            print(f"  {c:15s} {d:5s} {fit['transport']:5s} {fit['ranks']} ranks: bus bandwidth {fit['busbw_gbs']:8.2f} GB/s, "
                  f"latency {1e6 * fit['latency_s']:7.1f} us per hop")
    for name in ("pcie", "nvlink"):
        bw, lat, src = links[name][("all_reduce", "bf16")]
        print(f"  in use: {name:6s} all-reduce bf16 {bw:8.2f} GB/s, {1e6 * lat:6.1f} us per hop ({src})")
    print()


def print_table(links, mfu, serial):
    topos = topologies()
    print(f"Efficiency and exposed communication per step (ms) at the code's buckets (1 MB, then "
          f"{DEFAULT_BUCKET_MB} MB); levels {'added' if serial else 'pipelined'}; step time in s for PCIe:")
    print(f"{'case':46s}{'step s':>8s}" + "".join(f"{t['short']:>16s}" for t in topos))
    for c in CASES:
        rs = [step(c, t, links, mfu, DEFAULT_BUCKET_MB, serial) for t in topos]
        print(f"{label(c):46s}{rs[0]['step_s']:8.3f}"
              + "".join(f"{100 * r['efficiency']:7.1f}%{r['exposed_ms']:7.0f}ms" for r in rs))
    print()


def print_buckets(links, mfu, serial):
    print("Bucket size (MB of fp32 gradients after the first 1 MB) with the least exposed communication; "
          "exposed ms per candidate " + "/".join(str(m) for m in BUCKET_CANDIDATES_MB) + ":")
    for c in BUCKET_CASES:
        print(f"  {label(c)}")
        for t in topologies():
            mb, e, all_e = best_bucket(c, t, links, mfu, serial)
            print(f"    {t['name']:24s} best {mb:3d} MB: {e:8.1f} ms   ("
                  + " ".join(f"{all_e[m]:.0f}" for m in BUCKET_CANDIDATES_MB) + ")")
    print()


def stem_sweep(c, t, links, mfu, serial):
    """Efficiency and optimizer state per GPU for each replicated fraction of `c` on `t`."""
    return [(f, step(dict(c, replicate=f), t, links, mfu, DEFAULT_BUCKET_MB, serial)) for f in STEM_CANDIDATES]


def print_stems(links, mfu, serial):
    print(f"ZeRO-1's replicated stem (--zero_replicated_fraction; Note [Replicated stem under ZeRO-1]) at "
          f"{DEFAULT_BUCKET_MB} MB buckets: the fraction with the shortest step (the replicated part's update is "
          "done on every rank: it trades the all-gather's wait for redundant work); step ms per fraction "
          + "/".join(f"{f:g}" for f in STEM_CANDIDATES) + "; at the best: efficiency, the step against one that "
          "communicates nothing with ZeRO-1's update (ideal), and the fp32 moments per GPU:")
    for accum in (1, 4):
        c = case("full", 1024, 1, accum=accum, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16")
        print(f"  {label(c)}")
        for t in topologies():
            rows = stem_sweep(c, t, links, mfu, serial)
            best_f, best = min(rows, key=lambda x: (round(x[1]["step_s"], 4), x[0]))
            print(f"    {t['name']:24s} best {best_f:3g}: {100 * best['efficiency']:5.1f} %, ideal "
                  f"{100 * best['ideal_ratio']:5.1f} %, {best['optimizer_state_gb']:5.1f} GB   ("
                  + " ".join(f"{1e3 * r['step_s']:.0f}" for _, r in rows) + ")")
    print()


def target_rows(links, mfu, serial):
    """Per target and candidate case: the worst topology's figures at the code's buckets and at the
    best candidate bucket size."""
    out = []
    for name, topo_name, cs, goal in TARGETS:
        topos = [t for t in topologies() if topo_name is None or t["name"] == topo_name]
        for c in cs:
            r, t = min(((step(c, t, links, mfu, DEFAULT_BUCKET_MB, serial), t) for t in topos),
                       key=lambda x: x[0]["efficiency"])
            mb = best_bucket(c, t, links, mfu, serial)[0]
            rb = step(c, t, links, mfu, mb, serial)
            out.append({"target": name, "goal": goal, "case": label(c), "topology": t["name"], "at_25": r,
                        "best_mb": mb, "at_best": rb})
    return out


def print_targets(links, mfu, serial):
    print("Issue 20's targets (worst topology where several; exposed = reduction tail + all-gather):")
    last = None
    for row in target_rows(links, mfu, serial):
        if row["target"] != last:
            print(f"  {row['target']} (>= {100 * row['goal']:.0f} %):")
            last = row["target"]
        pairs = [("25 MB", row["at_25"])] + ([(f"{row['best_mb']} MB", row["at_best"])] if row["best_mb"] != 25 else [])
        for tag, r in pairs:
            ok = "meets" if r["efficiency"] >= row["goal"] else "misses"
            print(f"    {row['case']:46s} {tag:>6s} {100 * r['efficiency']:6.2f} % {ok:6s} step {r['step_s']:.3f} s, "
                  f"exposed {r['exposed_ms']:4.0f} ms ({r['reduce_exposed_ms']:.0f} + {r['gather_exposed_ms']:.0f}), "
                  f"without the optimizer {100 * r['compute_efficiency']:5.1f} %" + (f" [{row['topology']}]" if row["target"].startswith("LoRA") else ""))
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mfu", type=float, default=0.35, help="achieved fraction of peak (assumed; default 0.35)")
    ap.add_argument("--measured", help="bench/allreduce.py --sweep's JSON file: fitted latency and bandwidth per collective")
    ap.add_argument("--measured-as", choices=("cpu", "pcie", "nvlink"),
                    help="the link the sweep describes (default: the file's 'link', else cpu: not used)")
    ap.add_argument("--serial-hierarchy", action="store_true", help="add the levels' transfer times (pessimistic)")
    ap.add_argument("--json", action="store_true", help="print one JSON document (every case on every topology)")
    a = ap.parse_args(argv)
    if not 0 < a.mfu <= 1:
        sys.exit(f"--mfu {a.mfu}: must be in (0, 1]")
    measured = load_measured(a.measured, a.measured_as) if a.measured else None
    links = apply_measured(assumed_links(), measured)
    if a.json:
        doc = {"rows": results(links, a.mfu, a.serial_hierarchy),
               "buckets": [{"case": label(c), "topology": t["name"],
                            "best_mb": best_bucket(c, t, links, a.mfu, a.serial_hierarchy)[0]}
                           for c in BUCKET_CASES for t in topologies()]}
        if measured:
            doc["measured"] = {"link": measured["link"], "fits": {f"{c}/{d}": f for (c, d), f in measured["fits"].items()}}
        print(json.dumps(doc))
        return
    print_figures(links, measured, a.mfu)
    print_table(links, a.mfu, a.serial_hierarchy)
    print_buckets(links, a.mfu, a.serial_hierarchy)
    print_stems(links, a.mfu, a.serial_hierarchy)
    print_targets(links, a.mfu, a.serial_hierarchy)


if __name__ == "__main__":
    main()
