#!/usr/bin/env bash
# Time a TLS connection through the gateway takes to its first byte, with and without portcullis, in one run:
#   none        forwarding only, no enforcement
#   portcullis  `portcullis run --mode gateway` with an https rule for the name: every connection is pending
#               until its ClientHello is punted, read and decided, then released
# Each connection is one `curl https://allowed.test/` against openssl s_server; curl's time_appconnect (TCP and
# TLS handshakes done) and time_starttransfer (first byte) are taken. Then QUIC_CONNECTIONS HTTP/3 fetches with
# ngtcp2's gtlsclient against gtlsserver, timed from outside the client (its start-up included, so only the
# difference means anything). Rounds alternate the configurations so drift spreads over both. Prints median
# and p99 of each, the differences, the daemon's own punt-to-verdict histogram, and its CPU time per decided
# connection (what one core sustains).
#
# Usage: bench/gateway/tls_first_byte.sh [--connections N] [--rounds R]
# Environment: CONNECTIONS (200 per round and configuration), QUIC_CONNECTIONS (50), ROUNDS (3), PORTCULLIS_BIN (default
# build/userspace/portcullis). Needs root. Everything runs in namespaces of its own, removed on exit.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -- "$0" "$@"; fi
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONNECTIONS=${CONNECTIONS:-200}
QUIC_CONNECTIONS=${QUIC_CONNECTIONS:-50}
ROUNDS=${ROUNDS:-3}
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$src_dir/build/userspace/portcullis}
while [ $# -gt 0 ]; do
  case $1 in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x "$PORTCULLIS_BIN" ] || { echo "build first: $PORTCULLIS_BIN is missing" >&2; exit 1; }

# shellcheck source=SCRIPTDIR/../../test/e2e/lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
topo_require curl openssl awk gtlsserver gtlsclient || { echo "install them with scripts/setup" >&2; exit 1; }
topo_trap
# shellcheck disable=SC2119  # no second client
topo_create >/dev/null
work=$TOPO_LOG_DIR
pin_dir=/sys/fs/bpf/pc-bench-tls-$$
pc_pid=""
stop_portcullis() {
  if [ -n "$pc_pid" ]; then kill -TERM "$pc_pid" 2>/dev/null || true; wait "$pc_pid" 2>/dev/null || true; fi
  pc_pid=""
}
# Before the topology's own cleanup (topo_trap), which this trap takes over and then runs.
trap 'rc=$?; stop_portcullis; rm -rf "$pin_dir"; _topo_on_exit "$rc"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
  -days 1 -subj /CN=allowed.test 2>/dev/null
topo_start inet tls openssl s_server -accept 443 -cert "$work/cert.pem" -key "$work/key.pem" -www -quiet
topo_wait_port inet tcp "$INET_ALLOWED_V4" 443
mkdir -p "$work/htdocs" && echo hello >"$work/htdocs/index.html"
topo_start inet quic gtlsserver -q -d "$work/htdocs" "$INET_ALLOWED_V4" 443 "$work/key.pem" "$work/cert.pem"
topo_wait_port inet udp "$INET_ALLOWED_V4" 443
topo_set_hosts client "$INET_ALLOWED_V4 allowed.test"
cat >"$work/policy.yaml" <<POLICY
version: 1
defaults: {action: deny, sni_ip_binding: off}
rules:
  - {name: allowed, dst: allowed.test, proto: https}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
POLICY

measure() {  # measure CONFIG: CONNECTIONS lines of "appconnect starttransfer" in microseconds
  local i
  for ((i = 0; i < CONNECTIONS; i++)); do
    in_ns client curl -sk --noproxy '*' --max-time 5 -o /dev/null -w '%{time_appconnect} %{time_starttransfer}\n' \
      --resolve "allowed.test:443:$INET_ALLOWED_V4" https://allowed.test/ |
      awk -v c="$1" '{ printf "%s %d %d\n", c, $1 * 1e6, $2 * 1e6 }'
  done
}

measure_quic() {  # measure_quic CONFIG: QUIC_CONNECTIONS lines of "CONFIG-quic 0 wall-us"
  local i t0 t1
  for ((i = 0; i < QUIC_CONNECTIONS; i++)); do
    t0=${EPOCHREALTIME/./}
    in_ns client timeout 10 gtlsclient -q --exit-on-all-streams-close --handshake-timeout=3s allowed.test 443 \
      https://allowed.test/index.html >/dev/null 2>&1 || true
    t1=${EPOCHREALTIME/./}
    echo "$1-quic 0 $((t1 - t0))"
  done
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
results=$work/results.txt
: >"$results"
decided_total=0 ticks_total=0
for ((round = 1; round <= ROUNDS; round++)); do
  measure none >>"$results"
  measure_quic none >>"$results"
  setsid nsenter --net="/run/netns/$NS_GW" -- "$PORTCULLIS_BIN" run --pin-dir "$pin_dir" --log "$work/pc.jsonl" \
    --policy "$work/policy.yaml" --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" 2>"$work/pc.err" &
  pc_pid=$!
  for _ in $(seq 50); do grep -q '"event":"ready"' "$work/pc.jsonl" 2>/dev/null && break; sleep 0.1; done
  before=$(cpu_ticks "$pc_pid")
  measure portcullis >>"$results"
  measure_quic portcullis >>"$results"
  after=$(cpu_ticks "$pc_pid")
  ticks_total=$((ticks_total + after - before))
  decided_total=$((decided_total + CONNECTIONS + QUIC_CONNECTIONS))
  stop_portcullis
  grep '"event":"stopped"' "$work/pc.jsonl" >>"$work/stopped.jsonl" || true
  : >"$work/pc.jsonl"
done

stats() {  # stats CONFIG COLUMN: median p99
  awk -v c="$1" -v k="$2" '$1 == c { print $k }' "$results" | sort -n |
    awk '{ v[NR] = $1 } END { printf "%d %d", v[int((NR + 1) / 2)], v[int(NR * 0.99 + 0.999)] }'
}
read -r none_hs_med none_hs_p99 <<<"$(stats none 2)"
read -r pc_hs_med pc_hs_p99 <<<"$(stats portcullis 2)"
read -r none_fb_med none_fb_p99 <<<"$(stats none 3)"
read -r pc_fb_med pc_fb_p99 <<<"$(stats portcullis 3)"
read -r none_q_med none_q_p99 <<<"$(stats none-quic 3)"
read -r pc_q_med pc_q_p99 <<<"$(stats portcullis-quic 3)"
hz=$(getconf CLK_TCK)
echo "TLS connections through the gateway: $ROUNDS rounds x $CONNECTIONS per configuration (microseconds)"
printf '%-12s %14s %14s %14s %14s\n' config handshake-med handshake-p99 first-byte-med first-byte-p99
printf '%-12s %14d %14d %14d %14d\n' none "$none_hs_med" "$none_hs_p99" "$none_fb_med" "$none_fb_p99"
printf '%-12s %14d %14d %14d %14d\n' portcullis "$pc_hs_med" "$pc_hs_p99" "$pc_fb_med" "$pc_fb_p99"
printf '%-12s %14d %14d %14d %14d\n' added $((pc_hs_med - none_hs_med)) $((pc_hs_p99 - none_hs_p99)) \
  $((pc_fb_med - none_fb_med)) $((pc_fb_p99 - none_fb_p99))
echo "HTTP/3 fetches (gtlsclient, wall time with its start-up): $ROUNDS rounds x $QUIC_CONNECTIONS (microseconds)"
printf '%-12s %14s %14s\n' config fetch-med fetch-p99
printf '%-12s %14d %14d\n' none "$none_q_med" "$none_q_p99"
printf '%-12s %14d %14d\n' portcullis "$pc_q_med" "$pc_q_p99"
printf '%-12s %14d %14d\n' added $((pc_q_med - none_q_med)) $((pc_q_p99 - none_q_p99))
# The daemon's own clock: from the data plane punting the ClientHello (TLS or QUIC) to the verdict installed and
# the frames released, summed over the rounds.
grep -o '"punt_to_verdict":{[^}]*}' "$work/stopped.jsonl" | tr -d '{}"' | tr ',' '\n' | sed 's/^punt_to_verdict://' |
  awk -F: '{ n[$1] += $2; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
    END { for (i = 1; i <= k; i++) if (order[i] != "sum_us") { total += n[order[i]]; line = line " " order[i] "=" n[order[i]] }
          printf "punt to verdict (daemon clock): mean %d us over %d decisions;%s\n", total ? n["sum_us"] / total : 0, total, line }'
if [ "$ticks_total" -gt 0 ]; then
  echo "daemon CPU: $((ticks_total * 1000000 / hz / decided_total)) us per decided connection" \
    "(~$((decided_total * hz / ticks_total)) connections per second on one core)"
else
  echo "daemon CPU: below the clock's resolution ($((1000000 / hz)) us) over $decided_total connections"
fi
