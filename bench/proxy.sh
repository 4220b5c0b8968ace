#!/usr/bin/env bash
# Benchmarks `shifter proxy` on loopback and writes the figures, with the exact commands, to
# bench/PROXY.md:
#   - added latency (p50/p99) against a direct connection at fixed 1,000 and 5,000 req/s
#     (oha with --latency-correction, so coordinated omission is corrected);
#   - maximum throughput with the proxy on one core (wrk, proxy pinned with taskset -c 1);
#   - resident memory idle and under load; time from start to /ready (hyperfine).
# Installs what it needs (wrk, hyperfine, nginx-light via apt-get; oha via cargo install) and builds
# release. Bounded: 12 runs of $DURATION seconds (default 20) plus the build.
# Usage: bench/proxy.sh            DURATION=10 bench/proxy.sh      SHIFTER_BIN=path bench/proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
OUT=${OUT:-bench/PROXY.md}
BACKEND1=127.0.0.1:18181
BACKEND2=127.0.0.1:18182
H2_BACKEND1=127.0.0.1:18183
H2_BACKEND2=127.0.0.1:18184
GATEWAY=127.0.0.1:18180
H2_GATEWAY=127.0.0.1:18185
ADMIN=127.0.0.1:18191
# Two cores: nginx and the load generator share core 0, the proxy has core 1 to itself.
LOADGEN_CPU=0
PROXY_CPU=1
# Everything measured runs at a higher priority than other work on a shared machine (builds), the
# same for the direct and the proxied runs; NICE=0 turns this off.
NICE=${NICE:--10}
PIN() { local cpu=$1; shift; nice -n "$NICE" taskset -c "$cpu" "$@"; }
# Latency runs are short of CPU (1,000-5,000 req/s), so nginx, oha and the proxy run them under
# SCHED_FIFO: on a shared machine, builds would otherwise preempt them and the tails would measure
# the neighbours. The throughput runs (a full core each) stay at nice only, so they cannot starve
# the rest of the machine. RT=0 turns this off.
RT=${RT:-1}
LAT_PREFIX=""
[[ "$RT" == 1 ]] && chrt -f 50 true 2>/dev/null && LAT_PREFIX="chrt -f 50"
realtime() { # on|off pid...: switch every thread of these processes to SCHED_FIFO 50 or back
  local mode=$1; shift
  [[ -n "$LAT_PREFIX" ]] || return 0
  for p in "$@"; do
    if [[ $mode == on ]]; then chrt -a -f -p 50 "$p"; else chrt -a -o -p 0 "$p"; fi
  done
}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null || cargo install oha --locked
# SHIFTER_BIN=path uses an already built binary instead of building release here.
if [[ -n "${SHIFTER_BIN:-}" ]]; then
  BIN=$SHIFTER_BIN
else
  cargo build --release -p shifter
  BIN=$PWD/target/release/shifter
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  [[ -f "$WORK/nginx.pid" ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  server { listen $BACKEND1; location / { return 200 "web-v1\n"; } }
  server { listen $BACKEND2; location / { return 200 "web-v2\n"; } }
  server { listen $H2_BACKEND1 http2; location / { return 200 "api-v1\n"; } }
  server { listen $H2_BACKEND2 http2; location / { return 200 "api-v2\n"; } }
}
NGINX
nice -n "$NICE" taskset -c $LOADGEN_CPU nginx -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)

cat >"$WORK/proxy.yaml" <<YAML
authorities:
  - authority: web.shop.svc.cluster.local:80
    routes:
      - name: default
        backends:
          - { service: web-v1, weight: 90, endpoints: ["$BACKEND1"] }
          - { service: web-v2, weight: 10, endpoints: ["$BACKEND2"] }
  - authority: api.shop.svc.cluster.local:80
    routes:
      - name: default
        backends:
          - { service: api-v1, weight: 90, endpoints: ["$H2_BACKEND1"] }
          - { service: api-v2, weight: 10, endpoints: ["$H2_BACKEND2"] }
YAML
PROXY_CMD="nice -n $NICE taskset -c $PROXY_CPU $BIN proxy --config $WORK/proxy.yaml --gateway $GATEWAY=web.shop.svc.cluster.local:80 --gateway $H2_GATEWAY=api.shop.svc.cluster.local:80 --admin $ADMIN --threads 1"
RUST_LOG=warn $PROXY_CMD &
PROXY_PID=$!
PIDS+=($PROXY_PID)
until curl -sf "http://$ADMIN/ready" >/dev/null; do sleep 0.05; done
until curl -sf "http://$BACKEND1/" >/dev/null; do sleep 0.05; done

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
RSS_IDLE=$(rss_kib $PROXY_PID VmRSS)

# oha JSON → "p50_ms p99_ms rps success"; extra arguments go to oha.
oha_run() {
  local target=$1 rate=$2
  shift 2
  $LAT_PREFIX nice -n "$NICE" taskset -c $LOADGEN_CPU oha --no-tui --output-format json --worker-threads 1 -z "${DURATION}s" -q "$rate" \
    --latency-correction "$@" "http://$target/" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); p=d["latencyPercentiles"]; s=d["summary"]
print("%.3f %.3f %.0f %.4f" % (p["p50"]*1e3, p["p99"]*1e3, s["requestsPerSec"], s["successRate"]))'
}
ORDER_CMD="$LAT_PREFIX nice -n $NICE taskset -c $LOADGEN_CPU oha --no-tui --output-format json --worker-threads 1 -z ${DURATION}s -q RATE --latency-correction -c 32 URL"

NGINX_WORKER=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)
realtime on $PROXY_PID "$NGINX_WORKER"
declare -A R
for rate in 1000 5000; do
  R[direct_$rate]=$(oha_run "$BACKEND1" "$rate" -c 32)
  R[proxy_$rate]=$(oha_run "$GATEWAY" "$rate" -c 32)
  R[direct_h2_$rate]=$(oha_run "$H2_BACKEND1" "$rate" --http2 -c 4 -p 8)
  R[proxy_h2_$rate]=$(oha_run "$H2_GATEWAY" "$rate" --http2 -c 4 -p 8)
done
realtime off $PROXY_PID "$NGINX_WORKER"
H2_CMD="$LAT_PREFIX nice -n $NICE taskset -c $LOADGEN_CPU oha --no-tui --output-format json --worker-threads 1 -z ${DURATION}s -q RATE --latency-correction --http2 -c 4 -p 8 URL"

# wrk → "req/s total_requests"
wrk_run() {
  PIN $LOADGEN_CPU wrk -t1 -c64 -d"${DURATION}s" "http://$1/" |
    awk '/requests in/ { n = $1 } /Requests\/sec/ { r = $2 } END { printf "%.0f %d\n", r, n }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
WRK_CMD="nice -n $NICE taskset -c $LOADGEN_CPU wrk -t1 -c64 -d${DURATION}s URL"
read -r MAX_DIRECT _ <<<"$(wrk_run "$BACKEND1")"
TICKS_BEFORE=$(cpu_ticks $PROXY_PID)
wrk_run "$GATEWAY" >"$WORK/max_proxy" &
WRK_PID=$!
sleep $((DURATION / 3))
RSS_LOAD=$(rss_kib $PROXY_PID VmRSS)
# Where the proxy's CPU goes under that load (perf from linux-perf, when it works here).
PERF_DSO=""
if command -v perf >/dev/null && perf record -q -F 999 -p $PROXY_PID -o "$WORK/perf.data" -- sleep $((DURATION / 3)) >/dev/null 2>&1; then
  PERF_DSO=$(perf report -i "$WORK/perf.data" --stdio --no-children --sort dso 2>/dev/null |
    awk '/^ +[0-9.]+%/ { printf "| %s | %s |\n", $2, $1 }' | head -6)
fi
wait $WRK_PID
read -r MAX_PROXY MAX_PROXY_N <"$WORK/max_proxy"
TICKS_AFTER=$(cpu_ticks $PROXY_PID)
# Proxy CPU per request: robust to other work on the machine, unlike req/s.
CPU_US_PER_REQ=$(python3 -c "import os,sys; t=(int(sys.argv[2])-int(sys.argv[1]))/os.sysconf('SC_CLK_TCK'); print('%.1f' % (t*1e6/int(sys.argv[3])))" "$TICKS_BEFORE" "$TICKS_AFTER" "$MAX_PROXY_N")
RSS_PEAK=$(rss_kib $PROXY_PID VmHWM)
CPU_PROXY=$(awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$PROXY_PID/stat")

# Start to ready, on other ports so the running proxy is undisturbed.
START_CMD="$BIN proxy --config $WORK/proxy.yaml --gateway 127.0.0.1:18280=web.shop.svc.cluster.local:80 --admin 127.0.0.1:18291 & p=\$!; until curl -sf http://127.0.0.1:18291/ready >/dev/null 2>&1; do sleep 0.002; done; kill \$p; wait \$p || true"
hyperfine --warmup 2 --runs 20 --export-json "$WORK/start.json" "$START_CMD" >/dev/null 2>&1
START_MS=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.1f ± %.1f" % (r["mean"]*1e3, r["stddev"]*1e3))' "$WORK/start.json")

row() { # label key
  read -r dp50 dp99 drps dok <<<"${R[direct_$2]}"
  read -r pp50 pp99 prps pok <<<"${R[proxy_$2]}"
  python3 - "$1" "$dp50" "$dp99" "$pp50" "$pp99" "$prps" "$pok" <<'PY'
import sys
label, dp50, dp99, pp50, pp99, prps, pok = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {label} | {dp50:.3f} | {pp50:.3f} | **{pp50 - dp50:+.3f}** | {dp99:.3f} | {pp99:.3f} | **{pp99 - dp99:+.3f}** | {prps:.0f} | {pok * 100:.2f}% |")
PY
}

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
{
  echo "# shifter proxy benchmark"
  echo
  echo "Produced by \`bench/proxy.sh\` (DURATION=${DURATION}s per run) on $(date -u +%Y-%m-%d), commit \`$(git rev-parse --short HEAD)\`,"
  echo "$(nproc) cores ($CPU_MODEL), loopback only. Release build of \`shifter\`."
  echo
  echo "Setup: nginx (1 worker) serves two backends, \`web-v1\` on $BACKEND1 and \`web-v2\` on $BACKEND2."
  echo "The proxy fronts them as a gateway for \`web.shop.svc.cluster.local:80\` split 90/10, with a static"
  echo "config (no controller), one worker thread, pinned to core $PROXY_CPU. nginx and the load generator share core $LOADGEN_CPU,"
  echo "so \"direct\" and \"through the proxy\" runs compete for the same CPU on the client side."
  echo "Load average (1/5/15 min) when the runs started: $LOAD_START; when they ended: $LOAD_END. On a shared"
  echo "machine anything above ~0.5 at the start means other work competed for the two cores: tails (p99) are the"
  echo "figures it disturbs most. Every measured process runs at \`nice -n $NICE\`, direct and proxied alike;"
  if [[ -n "$LAT_PREFIX" ]]; then
    echo "during the fixed-rate latency runs nginx, oha and the proxy also run under SCHED_FIFO (\`$LAT_PREFIX\`,"
    echo "\`chrt -a -f -p 50 PID\`) so that other work cannot preempt them. The throughput runs do not (they would"
    echo "starve the machine)."
  else
    echo "no real-time scheduling was available, so latency tails include preemption by other work."
  fi
  echo
  echo "## Added latency at a fixed rate"
  echo
  echo "oha with \`--latency-correction\` (coordinated omission corrected), keep-alive, ${DURATION}s per run."
  echo "Milliseconds."
  echo
  echo "| rate | direct p50 | proxy p50 | added p50 | direct p99 | proxy p99 | added p99 | proxy achieved req/s | proxy success |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  row "HTTP/1.1, 1,000 req/s" 1000
  row "HTTP/1.1, 5,000 req/s" 5000
  row "h2c, 1,000 req/s" h2_1000
  row "h2c, 5,000 req/s" h2_5000
  echo
  echo "HTTP/1.1: 32 connections. h2c (prior knowledge, as gRPC uses): 4 connections × 8 streams; the proxy"
  echo "multiplexes all of them on one upstream HTTP/2 connection per endpoint."
  echo
  echo "## Maximum throughput, proxy on one core"
  echo
  echo "wrk, 1 thread, 64 connections, ${DURATION}s. The direct figure is nginx alone on the load generator's core, for scale."
  echo
  echo "| target | req/s |"
  echo "| --- | --- |"
  echo "| direct (nginx) | $MAX_DIRECT |"
  echo "| through the proxy (1 core) | $MAX_PROXY |"
  echo
  echo "Proxy CPU per request in that run (utime+stime / requests; less disturbed by other work on the machine than req/s, though contention still raises it):"
  echo "**$CPU_US_PER_REQ µs**, i.e. about $(python3 -c "print(int(1e6/float('$CPU_US_PER_REQ')))") req/s per fully available core."
  echo
  echo "Proxy CPU time over the whole benchmark: ${CPU_PROXY}s."
  echo
  if [[ -n "$PERF_DSO" ]]; then
    echo "Where the proxy's CPU went during that run (\`perf record -F 999 -p PID\`, by shared object):"
    echo
    echo "| where | share of samples |"
    echo "| --- | --- |"
    echo "$PERF_DSO"
    echo
  fi
  echo "## Memory (proxy process)"
  echo
  echo "| state | RSS |"
  echo "| --- | --- |"
  echo "| idle, after /ready | $((RSS_IDLE / 1024)) MiB ($RSS_IDLE KiB) |"
  echo "| under maximum load (mid-run) | $((RSS_LOAD / 1024)) MiB ($RSS_LOAD KiB) |"
  echo "| peak (VmHWM) | $((RSS_PEAK / 1024)) MiB ($RSS_PEAK KiB) |"
  echo
  echo "## Start to ready"
  echo
  echo "hyperfine, 20 runs: start the proxy with the static config and poll \`/ready\` every 2 ms: **$START_MS ms**."
  echo
  echo "## Commands"
  echo
  echo '```sh'
  echo "nice -n $NICE taskset -c $LOADGEN_CPU nginx -c nginx.conf        # two servers returning 200, see bench/proxy.sh"
  echo "$PROXY_CMD"
  echo "${ORDER_CMD//URL/http://$BACKEND1/}   # direct, RATE = 1000 and 5000"
  echo "${ORDER_CMD//URL/http://$GATEWAY/}   # through the proxy"
  echo "${H2_CMD//URL/http://$H2_BACKEND1/}   # h2c direct"
  echo "${H2_CMD//URL/http://$H2_GATEWAY/}   # h2c through the proxy"
  echo "${WRK_CMD//URL/http://$BACKEND1/}"
  echo "${WRK_CMD//URL/http://$GATEWAY/}"
  echo "hyperfine --warmup 2 --runs 20 '$BIN proxy --config proxy.yaml --gateway ... & poll /ready; kill'"
  echo "grep -E 'VmRSS|VmHWM' /proc/\$PROXY_PID/status"
  echo '```'
} | sed "s#$WORK/##g" >"$OUT"
cat "$OUT"
