#!/usr/bin/env python3
"""bench/scaling_model.py's structure, not its figures (those are assumptions and move): every case
on every topology has an efficiency in (0, 1] and non-negative exposed communication; more network
bandwidth never exposes more, more nodes never less; bf16 never exposes more than fp32, the
overlapped all-gather never more than the one after the step; gradient accumulation leaves the
exposed communication as it is (only the last backward communicates) and raises the efficiency;
a replicated stem of 0 is plain ZeRO-1 and of 1 the all-reduce; one comm-bound case equals its
closed form; the fit recovers a synthetic curve's latency and bandwidth; a measured PCIe curve replaces the assumed PCIe figures and a CPU one changes nothing.
  scaling_model_test.py BENCH_DIR"""
import contextlib
import io
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, sys.argv[1])
import scaling_model as sm  # noqa: E402


def run_json(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        sm.main(["--json", *args])
    return json.loads(out.getvalue())


def by_key(doc):
    return {(r["case"], r["topology"]): r for r in doc["rows"]}


def synthetic_curve(collective, dtype, ranks, latency_hop, busbw_gbs, noise=0.0, rng=None):
    pts = []
    for k in range(10, 27):
        s = 2**k
        t = sm.hops(collective, ranks) * latency_hop + sm.bus_factor(collective, ranks) * s / (busbw_gbs * 1e9)
        if noise:
            t *= 1 + rng.uniform(-noise, noise)
        pts.append({"bytes": s, "seconds": t})
    return {"collective": collective, "dtype": dtype, "transport": "synthetic", "ranks": ranks, "points": pts}


failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


# 1. Every row: efficiency in (0, 1], exposed >= 0, step >= compute.
doc = run_json()
rows = by_key(doc)
check(len(rows) == len(sm.CASES) * len(sm.topologies()), f"{len(rows)} rows")
for (c, t), r in rows.items():
    check(0 < r["efficiency"] <= 1, f"{c} on {t}: efficiency {r['efficiency']}")
    check(r["exposed_ms"] >= 0 and r["reduce_exposed_ms"] >= 0 and r["gather_exposed_ms"] >= 0, f"{c} on {t}: exposed < 0")
    check(r["step_s"] >= r["compute_s"], f"{c} on {t}: step shorter than its compute")
    check(abs(r["exposed_ms"] - r["reduce_exposed_ms"] - r["gather_exposed_ms"]) < 1e-9, f"{c} on {t}: parts")

# 2. Monotone in bandwidth and in nodes.
eps = 1e-9
for c in sm.CASES:
    name = sm.label(c)
    for nodes in (2, 4, 8):
        slow, fast = rows[(name, f"{nodes} nodes x 8, 100 Gb/s")], rows[(name, f"{nodes} nodes x 8, 400 Gb/s")]
        check(fast["exposed_ms"] <= slow["exposed_ms"] + eps, f"{name}, {nodes} nodes: 400 Gb/s exposes more than 100")
        check(fast["efficiency"] >= slow["efficiency"] - eps, f"{name}, {nodes} nodes: 400 Gb/s less efficient")
    for gb in (100, 400):
        e = [rows[(name, f"{n} nodes x 8, {gb} Gb/s")]["exposed_ms"] for n in (2, 4, 8)]
        check(e[0] <= e[1] + eps and e[1] <= e[2] + eps, f"{name} at {gb} Gb/s: exposed not growing with nodes {e}")

# 3. bf16 vs fp32, overlapped vs after, accumulation.
topos = sm.topologies()
links = sm.assumed_links()
for t in topos:
    fp32 = sm.step(sm.case("full", 1024, 1), t, links)
    bf16 = sm.step(sm.case("full", 1024, 1, grad_dtype="bf16"), t, links)
    check(bf16["exposed_ms"] <= fp32["exposed_ms"] + eps, f"{t['name']}: bf16 exposes more than fp32")
    after = sm.step(sm.case("full", 1024, 1, grad_dtype="bf16", reduce="zero_after", gather_dtype="bf16"), t, links)
    over = sm.step(sm.case("full", 1024, 1, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16"), t, links)
    check(over["exposed_ms"] <= after["exposed_ms"] + eps, f"{t['name']}: overlapped gather exposes more")
    check(abs(after["gather_exposed_ms"] - after["gather_ms"]) < eps, f"{t['name']}: gather after the step not all exposed")
    k4 = sm.step(sm.case("full", 1024, 1, accum=4, grad_dtype="bf16"), t, links)
    check(abs(k4["exposed_ms"] - bf16["exposed_ms"]) < 1e-6, f"{t['name']}: accumulation changed the exposed communication")
    check(abs(k4["compute_s"] - 4 * bf16["compute_s"]) < 1e-12, f"{t['name']}: K = 4 does not compute 4 micro-batches")
    check(k4["efficiency"] >= bf16["efficiency"] - eps, f"{t['name']}: accumulation lowered the efficiency")

# 3b. The replicated stem (Note [Replicated stem under ZeRO-1]): a fraction of 0 is plain ZeRO-1,
# bit for bit; a fraction of 1 reduces exactly as the all-reduce does (every bucket all-reduced,
# nothing gathered) and updates everything on every rank; the moments grow with the fraction.
for t in topos:
    zc = sm.case("full", 1024, 1, grad_dtype="bf16", reduce="zero_overlap", gather_dtype="bf16")
    plain = sm.step(zc, t, links)
    none = sm.step(dict(zc, replicate=0.0), t, links)
    check(plain == none, f"{t['name']}: a stem of 0 is not plain ZeRO-1")
    ar = sm.step(sm.case("full", 1024, 1, grad_dtype="bf16"), t, links)
    everything = sm.step(dict(zc, replicate=1.0), t, links)
    check(abs(everything["reduce_exposed_ms"] - ar["reduce_exposed_ms"]) < 1e-9 and everything["gather_ms"] == 0,
          f"{t['name']}: a stem of 1 does not reduce as the all-reduce does")
    check(abs(everything["optimizer_ms"] - ar["optimizer_ms"]) < 1e-9, f"{t['name']}: a stem of 1 shards an update")
    sweep = [r["optimizer_state_gb"] for _, r in sm.stem_sweep(zc, t, links, 0.35, False)]
    check(sweep == sorted(sweep), f"{t['name']}: moments per GPU not growing with the fraction {sweep}")

# 4. A comm-bound case against its closed form: full 512² b1, bf16 all-reduce, 8 A40 PCIe, 25 MB
# buckets. From the second bucket on the ring is slower than backward's gradients, so the
# reduction ends at (the 2nd bucket ready) + the remaining buckets' ring times.
pcie = topos[0]
c = sm.case("full", 512, 1, grad_dtype="bf16")
F = 1.59e12 / (149.7e12 * 0.35)
B = 3 * F
params = int(2547.49e6)
first, rest = 2**20 // 4, 25 * 2**20 // 4
sizes = [first] + [rest] * ((params - first) // rest) + ([(params - first) % rest] if (params - first) % rest else [])
ring = [2 * 7 * 8e-6 + 2 * 7 / 8 * 2 * p / 20e9 for p in sizes]
expect = B * (first + rest) / params + sum(ring[1:]) - B
got = sm.step(c, pcie, links)["reduce_exposed_ms"] / 1e3
check(abs(got - expect) < 1e-9, f"closed form: exposed {got} s, expected {expect} s")

# One bucket's collectives against the ring formulas written out: 8 A40 PCIe, and 4 nodes at
# 100 Gb/s (pipelined levels: every level's latency, the slower level's transfer; or both added).
S = 50e6
node4 = next(t for t in topos if t["name"] == "4 nodes x 8, 100 Gb/s")
net = 100 / 8 * 0.9 * 1e9
expect_times = [
    (pcie, "all_reduce", False, 14 * 8e-6 + 1.75 * S / 20e9),
    (pcie, "reduce_scatter", False, 7 * 8e-6 + 0.875 * S / 20e9),
    (pcie, "all_gather", False, 7 * 8e-6 + 0.875 * S / 20e9),
    (node4, "all_reduce", False, 14 * 8e-6 + 6 * 15e-6 + max(1.75 * S / 20e9, 1.5 * S / net)),
    (node4, "reduce_scatter", False, 7 * 8e-6 + 3 * 15e-6 + max(0.875 * S / 20e9, 0.75 * S / net)),
    (node4, "all_reduce", True, 14 * 8e-6 + 6 * 15e-6 + 1.75 * S / 20e9 + 1.5 * S / net),
]
for t, coll, serial, want in expect_times:
    got = sm.collective_time(links, t, coll, "bf16", S, serial)
    check(abs(got - want) < 1e-12, f"{t['name']} {coll} serial={serial}: {got} s, expected {want} s")

# 5. The fit: exact and noisy synthetic curves.
rng = random.Random(1)
for coll in sm.COLLECTIVES:
    exact = sm.fit_curve(synthetic_curve(coll, "fp32", 2, 5e-6, 12.5)["points"], coll, 2)
    check(abs(exact["busbw_gbs"] - 12.5) < 1e-6 and abs(exact["latency_s"] - 5e-6) < 1e-10, f"{coll}: exact fit {exact}")
    noisy = sm.fit_curve(synthetic_curve(coll, "fp32", 2, 5e-6, 12.5, 0.02, rng)["points"], coll, 2)
    check(abs(noisy["busbw_gbs"] / 12.5 - 1) < 0.05 and abs(noisy["latency_s"] / 5e-6 - 1) < 0.1, f"{coll}: noisy fit {noisy}")

# 6. Measured curves: a PCIe sweep at twice the assumed bandwidth lowers PCIe's exposed
# communication and uses the fitted figures; a CPU sweep changes nothing.
with tempfile.TemporaryDirectory() as d:
    curves = [synthetic_curve(coll, dt, 8, 4e-6, 40.0) for coll in sm.COLLECTIVES for dt in ("fp32", "bf16")]
    for link in ("pcie", "cpu"):
        path = os.path.join(d, f"{link}.json")
        with open(path, "w") as f:
            json.dump({"link": link, "curves": curves}, f)
        m = by_key(run_json("--measured", path))
        name = sm.label(sm.case("full", 1024, 1, grad_dtype="bf16"))
        if link == "cpu":
            check(all(m[k] == rows[k] for k in rows), "a CPU sweep changed the model's figures")
        else:
            check(m[(name, "8 A40 PCIe")]["exposed_ms"] < rows[(name, "8 A40 PCIe")]["exposed_ms"],
                  "a faster measured PCIe did not lower the exposed communication")
            fit = sm.apply_measured(links, sm.load_measured(path))["pcie"][("all_reduce", "bf16")]
            check(abs(fit[0] - 40.0) < 1e-6 and abs(fit[1] - 4e-6) < 1e-10 and fit[2].startswith("measured"),
                  f"measured PCIe figures not in use: {fit}")

# 7. The bucket choice is the candidate with the least exposed communication.
for t in topos:
    mb, e, all_e = sm.best_bucket(sm.case("full", 1024, 1, grad_dtype="bf16"), t, links, 0.35, False)
    check(mb in sm.BUCKET_CANDIDATES_MB and abs(e - min(all_e.values())) < 1e-9, f"{t['name']}: best bucket {mb}")

if failures:
    sys.exit("scaling model test failed:\n  " + "\n  ".join(failures[:40]))
print(f"scaling model: {len(rows)} cases x topologies checked")
