"""Renders bench/RESULTS.md from the figures bench/compare.sh collected, and prints the ratios
against Envoy. Arguments: results commands profile controller apiserver out configs-dir."""

import os
import sys

results, commands, profile, controller, apiserver, out, configs = sys.argv[1:8]

meta = {}
rss_idle = {}
lat = {}  # (target, proto, rate) -> (p50, p99, p999, rps, success)
runs = {}  # (target, proto) -> [(rps, requests, ticks, rss_kib)], one per round
split = []  # (target, proto, v1, v2, own1, own2)
start = None
for line in open(results):
    f = line.split()
    if not f:
        continue
    kind = f[0]
    if kind == "rss_idle":
        rss_idle[f[1]] = int(f[2])
    elif kind == "lat":
        lat[(f[1], f[2], int(f[3]))] = tuple(float(x) for x in f[4:9])
    elif kind == "max":
        runs.setdefault((f[1], f[2]), []).append((float(f[3]), int(f[4]), int(f[5]), int(f[6])))
    elif kind == "split":
        split.append((f[1], f[2], int(f[3]), int(f[4]), f[5], f[6]))
    elif kind == "start":
        start = (float(f[2]), float(f[3]))
    else:
        meta[kind] = line[len(kind) :].strip()

proxies = meta["proxies"].split()
rates = [int(r) for r in meta["rates"].split()]
protos = [("h1", "HTTP/1.1 keep-alive"), ("h2", "h2c (prior knowledge)")]
clk = os.sysconf("SC_CLK_TCK")


def best_rps(target, proto):
    return max(r[0] for r in runs[(target, proto)])


def cpu_us(target, proto):
    """The least CPU per request over the rounds: the round least disturbed by other work."""
    return min((r[2] / clk * 1e6 / r[1] for r in runs[(target, proto)] if r[1]), default=float("nan"))


def rss_load(target):
    return max(r[3] for p, _ in protos for r in runs[(target, p)])


def times(a, b):
    """a relative to b, as a ratio; blank when b is not a positive figure, "~0" when a is not (an
    added latency below run-to-run noise)."""
    if not b or b <= 0:
        return "–"
    return f"{a / b:.2f}×" if a > 0 else "~0"


def added(target, proto, rate, i):
    return lat[(target, proto, rate)][i] - lat[("direct", proto, rate)][i]


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


md = []
w = md.append
w("# shifter against Envoy, nginx and HAProxy, and the control plane")
w("")
w(f"Produced by `{meta['command']}` on {meta['date']}, commit `{meta['commit']}`, in one run: every")
w("figure below comes from that run, proxies taking turns so that drifting background load touches all.")
w("")
w("## Machine and programs")
w("")
w(f"- {meta['cpus']} cores ({meta['cpu']}), {meta['mem']} memory, Linux {meta['kernel']}; loopback only.")
busy = float(meta["load_start"].split()[0]) > 0.5 or int(meta["rustc_start"] or 0) + int(meta["rustc_end"] or 0) > 0
w(
    f"- Load average (1/5/15 min) at the start: {meta['load_start']}; at the end of the data-plane runs: "
    f"{meta['load_end']}; rustc processes running then: {meta['rustc_start']} and {meta['rustc_end']}. "
    + (
        "**Other work shared the machine during this run**, so absolute figures are pessimistic; the ratios "
        "compare proxies measured under the same conditions."
        if busy
        else "The machine was otherwise quiet."
    )
)
w(
    f"- Every measured process ran at `nice -n {meta['nice']}`"
    + (
        f"; during the fixed-rate runs the upstreams, oha and the proxy under test ran under SCHED_FIFO "
        f"(`{meta['rt']}`, `chrt -a -f -p 50 PID`), so neighbours could not preempt them."
        if meta.get("rt")
        else "; no real-time scheduling was available, so tails include preemption by other work."
    )
)
w("")
w("| program | version |")
w("| --- | --- |")
for key, name in [
    ("v_shifter", "shifter"),
    ("v_envoy", "Envoy"),
    ("v_nginx", "nginx"),
    ("v_haproxy", "HAProxy"),
    ("v_oha", "oha"),
    ("v_wrk", "wrk"),
    ("v_h2load", "h2load"),
]:
    w(f"| {name} | {meta[key]} |")
w("")
w("Setup: one nginx worker serves the two upstream versions, `web-v1` and `web-v2`, each answering with its")
w("name, on core 0 together with the load generators. The proxies run on core 1 (`taskset -c 1`, one")
w("worker: shifter `--threads 1`, Envoy `--concurrency 1`, nginx `worker_processes 1`, HAProxy `nbthread 1`);")
w("all stay started for the whole run, and only the one being measured gets traffic. Each")
w("splits 90/10 between the two versions; h2c clients are proxied over HTTP/2 by shifter, Envoy and")
w("HAProxy and over HTTP/1.1 by nginx (which has no HTTP/2 upstreams). *direct* is oha or wrk talking to")
w("`web-v1` itself: the physical limit. Configurations: `bench/compare/`.")
w("")

if "envoy" in proxies:
    w("## Against Envoy")
    w("")
    top = rates[-1]
    w(
        f"Ratios to Envoy from this run (throughput: higher is better; added p99 at {top:,} req/s and memory: "
        "lower is better)."
    )
    w("")
    w(
        "| proxy | max req/s HTTP/1.1 | max req/s h2c | CPU per request HTTP/1.1 | "
        f"added p99 HTTP/1.1 @ {top:,} | added p99 h2c @ {top:,} | RSS idle | RSS under load |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = []
    for t in proxies:
        row = [
            times(best_rps(t, "h1"), best_rps("envoy", "h1")),
            times(best_rps(t, "h2"), best_rps("envoy", "h2")),
            times(cpu_us(t, "h1"), cpu_us("envoy", "h1")),
            times(added(t, "h1", top, 1), added("envoy", "h1", top, 1)),
            times(added(t, "h2", top, 1), added("envoy", "h2", top, 1)),
            times(rss_idle[t], rss_idle["envoy"]),
            times(rss_load(t), rss_load("envoy")),
        ]
        w(f"| {t} | " + " | ".join(row) + " |")
        summary.append((t, row))
    w("")
    if "shifter" in proxies:
        cells = [(p, r) for p, _ in protos for r in rates]
        lower_p99 = [c for c in cells if added("shifter", *c, 1) <= added("envoy", *c, 1)]
        cpu = [p for p, _ in protos if cpu_us("shifter", p) <= cpu_us("envoy", p)]
        rps = [p for p, _ in protos if best_rps("shifter", p) >= best_rps("envoy", p)]
        third = rss_idle["shifter"] * 3 <= rss_idle["envoy"] and rss_load("shifter") * 3 <= rss_load("envoy")
        names = dict(protos)
        w("shifter against its targets (at least Envoy's throughput per core and p99 added latency, at most a")
        w("third of its memory), in this run:")
        w("")
        w(f"- CPU per request at most Envoy's: {len(cpu)} of 2 protocols ({', '.join(names[p] for p in cpu) or 'none'}).")
        w(f"- Maximum req/s at least Envoy's: {len(rps)} of 2 protocols ({', '.join(names[p] for p in rps) or 'none'}).")
        w(f"- Added p99 at most Envoy's: {len(lower_p99)} of {len(cells)} rate and protocol pairs.")
        w(f"- Memory at most a third of Envoy's, idle and under load: {'yes' if third else 'no'}.")
        w("")

w("## Maximum throughput, proxy on one core")
w("")
w(
    f"wrk `-t1 -c64` (HTTP/1.1) and h2load `-t1 -c4 -m32` (h2c), {meta['duration']} s per run, "
    f"{meta['max_rounds']} round(s) with the targets taking turns; each figure is the target's best round. "
    "CPU per request is the proxy's user+system time over the requests it served in a run: it does not "
    "depend on whether core 0 (load generator and upstreams) or core 1 (the proxy) was the bottleneck, so "
    "it is the fairer cost figure; 1 s divided by it is what one fully available core would serve."
)
w("")
w("| target | HTTP/1.1 req/s | CPU µs/request | h2c req/s | CPU µs/request |")
w("| --- | --- | --- | --- | --- |")
for t in ["direct"] + proxies:
    cells = []
    for p, _ in protos:
        cells.append(f"{best_rps(t, p):,.0f}")
        cells.append("–" if t == "direct" else f"{cpu_us(t, p):.1f}")
    w(f"| {t} | " + " | ".join(cells) + " |")
w("")

w("## Added latency over direct at fixed rates")
w("")
w(
    f"oha `--latency-correction` (coordinated omission corrected), {meta['duration']} s per run, HTTP/1.1 over "
    "32 connections, h2c over 4 connections × 8 streams. Milliseconds; *added* is the proxy's figure minus "
    "direct's from the same rate and protocol (it can come out slightly negative where the proxy's extra "
    "hop is smaller than run-to-run noise)."
)
for p, label in protos:
    for rate in rates:
        w("")
        w(f"### {label}, {rate:,} req/s")
        w("")
        w("| target | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | achieved req/s | success |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for t in ["direct"] + proxies:
            p50, p99, p999, rps, ok = lat[(t, p, rate)]
            if t == "direct":
                add = ["–"] * 3
            else:
                add = [f"**{added(t, p, rate, i):+.3f}**" for i in range(3)]
            w(f"| {t} | {p50:.3f} | {p99:.3f} | {p999:.3f} | " + " | ".join(add) + f" | {rps:,.0f} | {ok * 100:.2f}% |")
w("")

w("## Memory")
w("")
w(
    "VmRSS from `/proc/PID/status`, summed over the proxy's processes (nginx: master and worker, so pages "
    "they share count twice; shifter, Envoy and HAProxy run as one process). Idle: after start, before any "
    "traffic; under load: sampled "
    "half-way through each maximum-throughput run, the largest sample."
)
w("")
w("| proxy | idle | under load |")
w("| --- | --- | --- |")
for t in proxies:
    w(f"| {t} | {mib(rss_idle[t])} | {mib(rss_load(t))} |")
w("")

w("## Split accuracy")
w("")
probe = int(meta["probe"])
w(
    f"{probe:,} requests per proxy and protocol, tagged with `x-split-probe`; the upstreams log only tagged "
    "requests, so each version's count is what it really served. Configured: 90/10. shifter's own "
    "`request_total` per backend (its Linkerd-compatible metrics) is read before and after each probe."
)
w("")
w("| proxy | protocol | web-v1 served | web-v2 served | web-v2 share | all served | shifter's request_total (v1 / v2) |")
w("| --- | --- | --- | --- | --- | --- | --- |")
for t, p, v1, v2, o1, o2 in split:
    total = v1 + v2
    share = f"{v2 / total * 100:.2f}%" if total else "–"
    own = f"{o1} / {o2}" if o1 != "-" else "–"
    w(f"| {t} | {dict(protos)[p]} | {v1:,} | {v2:,} | {share} | {total:,} of {probe:,} | {own} |")
w("")
w(
    "nginx and HAProxy use smooth weighted round robin (exactly 9 in 10 over any 10 consecutive picks); "
    "shifter and Envoy draw each request at random by weight, so their share varies by about ±0.2 points "
    f"(one standard deviation at 10% over {probe:,} requests)."
)
w("")

if start or open(profile).read().strip():
    w("## shifter: start to ready, and where its CPU goes")
    w("")
    if start:
        w(
            f"hyperfine, 20 runs: start `shifter proxy` with the static config and poll `/ready` every 2 ms: "
            f"**{start[0]:.1f} ± {start[1]:.1f} ms**."
        )
        w("")
    prof = open(profile).read().strip()
    if prof:
        w("perf, 999 Hz for 5 s while wrk (`-t1 -c64`) loads shifter's HTTP/1.1 gateway; self time by symbol:")
        w("")
        w("| share of samples | object | symbol |")
        w("| --- | --- | --- |")
        w(prof)
        w("")

cp = open(controller).read().strip()
api = open(apiserver).read().strip()
if cp or api:
    w("## Control plane")
    w("")
    if cp:
        w(
            f"`bench/controller.sh` with ROUNDS={meta['cp_rounds']}, SPLITS={meta['cp_splits']} (method: "
            "`bench/CONTROLLER.md`): the time from a TrafficSplit write through the API to every one of N "
            "connected proxy streams holding the new weights, and the controller's RSS with "
            f"{int(meta['cp_splits']):,} TrafficSplits."
        )
        w("")
        w(cp)
        w("")
    if api:
        w(
            "`cargo bench -p shifter-apiserver --bench apiserver` (method: `bench/APISERVER.md`): durable "
            "(fsynced) writes per second through kube-rs over HTTPS, and watch fan-out."
        )
        w("")
        w(api)
        w("")

notes = os.path.join(configs, "NOTES.md")
if os.path.exists(notes):
    w(open(notes).read().strip())
    w("")

w("## Commands")
w("")
w("Configurations are the templates in `bench/compare/` with ports filled in; PORT is each target's listener.")
w("")
w("```sh")
w(open(commands).read().rstrip())
w("```")

text = "\n".join(md) + "\n"
with open(out, "w") as f:
    f.write(text)

if "envoy" in proxies:
    print("\nRatios against Envoy (throughput: higher is better; latency, CPU and memory: lower is better)")
    print(f"{'proxy':<9} {'max h1':>8} {'max h2':>8} {'cpu/req':>8} {'p99 h1':>8} {'p99 h2':>8} {'rss':>8} {'rss load':>9}")
    for t, row in summary:
        print(f"{t:<9} " + " ".join(f"{c:>8}" for c in row))
print(f"\nwrote {out}")
