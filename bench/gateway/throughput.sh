#!/usr/bin/env bash
# Bulk TCP throughput through the gateway namespace (iperf3, veth, default offloads), client -> inet:
#   none        forwarding only, no enforcement
#   nft_set     nftables in gw: ct established,related accept; allowed CIDRs in interval sets; policy drop
#   nft_rules   the same allow-list as one nftables rule per CIDR (linear), policy drop
#   portcullis  `portcullis run --mode gateway` in gw with the same CIDRs as allow rules (skipped, with a note,
#               until PORTCULLIS_BIN names a binary that has `run`)
# Runs are interleaved (round 1 of every configuration, then round 2, ...) so drift on a shared machine
# spreads over all of them. Prints the median Gbit/s of each configuration and its share of `none`.
#
# Usage: bench/gateway/throughput.sh [--runs N] [--duration S] [--omit S] [--rules N] [--parallel P]
#                                    [--configs "LIST"] [--affinity C,S]
# The same knobs as environment variables: RUNS (3), DURATION (5), OMIT (1, seconds iperf3 leaves out at the
# start), RULES (1000, allowed CIDRs including the server's two), PARALLEL (1 stream), CONFIGS
# ("none nft_set nft_rules portcullis"), AFFINITY ("0,1": iperf3 -A, client on CPU 0 and server on CPU 1;
# "" for none), PORTCULLIS_BIN, PORTCULLIS_RUN_ARGS (extra `run` arguments).
# Needs root. Everything runs in namespaces of its own (test/e2e/lib/topology.sh), removed on exit.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -- "$0" "$@"; fi
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
OMIT=${OMIT:-1}
RULES=${RULES:-1000}
PARALLEL=${PARALLEL:-1}
CONFIGS=${CONFIGS:-none nft_set nft_rules portcullis}
PORTCULLIS_BIN=${PORTCULLIS_BIN:-}
PORTCULLIS_RUN_ARGS=${PORTCULLIS_RUN_ARGS:-}
AFFINITY=${AFFINITY-0,1}   # iperf3 -A: client CPU,server CPU ("" leaves placement to the scheduler)
PORT=5201

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --omit) OMIT=$2; shift 2 ;;
    --rules) RULES=$2; shift 2 ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --affinity) AFFINITY=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in RUNS DURATION OMIT RULES PARALLEL; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a number, not '${!v}'" >&2; exit 2; }
done
if [ "$RUNS" -lt 1 ] || [ "$DURATION" -lt 1 ] || [ "$RULES" -lt 2 ] || [ "$PARALLEL" -lt 1 ]; then
  echo "need RUNS>=1, DURATION>=1, RULES>=2, PARALLEL>=1" >&2
  exit 2
fi

# shellcheck source=SCRIPTDIR/../../test/e2e/lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
topo_require iperf3 nft socat nc awk || { echo "install them with scripts/setup" >&2; exit 1; }
topo_trap
# shellcheck disable=SC2119  # no second client
topo_create >/dev/null
work=$TOPO_LOG_DIR   # removed with the topology
skip_reason=""
skip() { skip_reason=$*; }  # for config_*_setup: say why, then return 2

# ---- the allow-list: RULES-2 filler CIDRs (IPv4 /24 and IPv6 /64, alternating), then the server's two ------
cidrs=$work/cidrs.txt
awk -v n=$((RULES - 2)) 'BEGIN {
  for (i = 0; i < n; i++)
    if (i % 2 == 0) { j = i / 2; printf "100.%d.%d.0/24\n", 64 + int(j / 256), j % 256 }
    else printf "2001:db8:f:%x::/64\n", (i - 1) / 2
}' >"$cidrs"
printf '%s/32\n%s/128\n' "$INET_ALLOWED_V4" "$INET_ALLOWED_V6" >>"$cidrs"

write_nft() {  # write_nft set|rules FILE
  local v4 v6
  {
    echo "table inet pcbench {"
    if [ "$1" = set ]; then
      v4=$(grep -v : "$cidrs" | paste -sd, -)
      v6=$(grep : "$cidrs" | paste -sd, -)
      echo "  set allow4 { type ipv4_addr; flags interval; elements = { $v4 } }"
      echo "  set allow6 { type ipv6_addr; flags interval; elements = { $v6 } }"
    fi
    echo "  chain forward {"
    echo "    type filter hook forward priority filter; policy drop;"
    echo "    ct state established,related accept"
    if [ "$1" = set ]; then
      echo "    ip saddr 10.88.0.0/16 ip daddr @allow4 accept"
      echo "    ip6 saddr fd88::/16 ip6 daddr @allow6 accept"
    else
      awk '/:/ { print "    ip6 saddr fd88::/16 ip6 daddr " $0 " accept"; next }
                { print "    ip saddr 10.88.0.0/16 ip daddr " $0 " accept" }' "$cidrs"
    fi
    echo "  }"
    echo "}"
  } >"$2"
}

# ---- configurations: config_NAME_setup (return 2 = skip, with a note) and config_NAME_teardown ----------------
config_none_setup() { :; }
config_none_teardown() { :; }

config_nft_set_setup() { write_nft set "$work/nft-set.nft" && in_ns gw nft -f "$work/nft-set.nft"; }
config_nft_set_teardown() { in_ns gw nft delete table inet pcbench; }
config_nft_rules_setup() { write_nft rules "$work/nft-rules.nft" && in_ns gw nft -f "$work/nft-rules.nft"; }
config_nft_rules_teardown() { in_ns gw nft delete table inet pcbench; }

# The hook for the data plane: the same CIDRs as allow rules of one group, `portcullis run` in gw.
config_portcullis_setup() {
  local policy=$work/portcullis.yaml log=$work/portcullis.jsonl
  if [ -z "$PORTCULLIS_BIN" ]; then
    skip "set PORTCULLIS_BIN to the binary (e.g. build/userspace/portcullis)"
    return 2
  fi
  if ! "$PORTCULLIS_BIN" --help 2>/dev/null | grep -qE '^[[:space:]]+run([[:space:]]|$)'; then
    skip "$PORTCULLIS_BIN has no 'run' command yet"
    return 2
  fi
  if [ ! -e "$policy" ]; then
    {
      echo "version: 1"
      echo "defaults: {action: deny}"
      echo "groups:"
      echo "  - name: bench"
      echo "    sources: [10.88.0.0/16, \"fd88::/16\"]"
      echo "    rules:"
      awk '{ printf "      - {name: r%d, dst: \"%s\", proto: any, action: allow}\n", NR, $0 }' "$cidrs"
    } >"$policy"
    "$PORTCULLIS_BIN" check "$policy" >/dev/null || return 1
  fi
  : >"$log"
  # shellcheck disable=SC2086  # PORTCULLIS_RUN_ARGS is a list of words
  topo_start gw portcullis "$PORTCULLIS_BIN" run --policy "$policy" --mode gateway \
    --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" --log "$log" --pin-dir "/sys/fs/bpf/pc-bench-gw-$$" \
    $PORTCULLIS_RUN_ARGS || return 1
  for _ in $(seq 100); do
    grep -q '"event":"ready"' "$log" && return 0
    kill -0 "$TOPO_LAST_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "portcullis did not report ready; its output:" >&2
  tail -n 20 "$work/portcullis.log" >&2 || true
  return 1
}
config_portcullis_teardown() { topo_stop portcullis; }

label() {
  case $1 in
    none) echo "none (forwarding only)" ;;
    nft_set) echo "nftables, $RULES CIDRs in sets" ;;
    nft_rules) echo "nftables, $RULES CIDR rules" ;;
    portcullis) echo "portcullis, $RULES CIDR rules" ;;
    *) echo "$1" ;;
  esac
}

for c in $CONFIGS; do
  declare -F "config_${c}_setup" >/dev/null || { echo "unknown configuration '$c'" >&2; exit 2; }
done

# ---- servers and the enforcement check ----------------------------------------------------------------------
topo_serve_iperf3 inet "$INET_ALLOWED_V4" "$PORT"
topo_serve_tcp_echo inet "$INET_EVIL_V4" "$PORT"   # not in the allow-list: proves a ruleset enforces

# enforcement_ok CONFIG: under an enforcing configuration a new flow to a non-allowed address must not
# connect; with none it must.
enforcement_ok() {
  local connected=0
  in_ns client nc -z -w 1 "$INET_EVIL_V4" "$PORT" >/dev/null 2>&1 && connected=1
  if [ "$1" = none ]; then [ "$connected" -eq 1 ]; else [ "$connected" -eq 0 ]; fi
}

# one_run: Mbit/s received by the server in one iperf3 test.
one_run() {
  local out
  out=$(in_ns client timeout $((DURATION + OMIT + 20)) iperf3 -c "$INET_ALLOWED_V4" -p "$PORT" \
    -t "$DURATION" -O "$OMIT" -P "$PARALLEL" -f m --connect-timeout 3000 ${AFFINITY:+-A "$AFFINITY"} 2>&1) ||
    { echo "iperf3 failed: $out" >&2; return 1; }
  awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) } END { if (v == "") exit 1; print v }' \
    <<<"$out"
}

declare -A results skipped
iperf_cmd="iperf3 -c $INET_ALLOWED_V4 -p $PORT -t $DURATION -O $OMIT -P $PARALLEL -f m${AFFINITY:+ -A $AFFINITY}"
echo "gateway throughput: $iperf_cmd (client ns -> gw ns -> inet ns, veth), $RUNS round(s), kernel $(uname -r), $(nproc) CPUs"
for round in $(seq "$RUNS"); do
  for c in $CONFIGS; do
    [ -z "${skipped[$c]:-}" ] || continue
    rc=0
    "config_${c}_setup" || rc=$?
    if [ "$rc" -eq 2 ]; then skipped[$c]="skipped: ${skip_reason:-no reason given}"; continue; fi
    [ "$rc" -eq 0 ] || { echo "setup of $c failed" >&2; exit 1; }
    if ! enforcement_ok "$c"; then
      "config_${c}_teardown" || true
      echo "configuration $c: a flow to the non-allowed $INET_EVIL_V4 was not handled as expected" >&2
      exit 1
    fi
    mbit=$(one_run)
    "config_${c}_teardown"
    results[$c]="${results[$c]:-} $mbit"
    printf '  round %d  %-34s %8.2f Gbit/s\n' "$round" "$(label "$c")" "$(awk -v m="$mbit" 'BEGIN { print m / 1000 }')"
  done
done

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
base=""
if [ -n "${results[none]:-}" ]; then base=$(median <<<"${results[none]}"); fi
echo
printf '%-34s %14s %11s   %s\n' configuration "median Gbit/s" "% of none" "runs (Gbit/s)"
for c in $CONFIGS; do
  if [ -n "${skipped[$c]:-}" ]; then
    printf '%-34s %14s %11s   %s\n' "$(label "$c")" - - "${skipped[$c]}"
    continue
  fi
  med=$(median <<<"${results[$c]}")
  runs=$(tr ' ' '\n' <<<"${results[$c]}" | awk 'NF { printf "%s%.2f", sep, $1 / 1000; sep = " " }')
  pct=-
  [ -z "$base" ] || pct=$(awk -v m="$med" -v b="$base" 'BEGIN { printf "%.1f%%", 100 * m / b }')
  printf '%-34s %14.2f %11s   %s\n' "$(label "$c")" "$(awk -v m="$med" 'BEGIN { print m / 1000 }')" "$pct" "$runs"
done
