#!/usr/bin/env bash
# What holding DNS answers costs: the time an answer from the resolver spends in the gateway, with and without
# portcullis, in one run:
#   none        the gateway only forwards
#   portcullis  `portcullis run --mode gateway` with dns.resolvers = the topology's dnsmasq and a few name rules:
#               the data plane takes every answer from the resolver into the punt ring and holds it until the
#               daemon has installed the bindings it carries; the daemon then sends it on (into the outside
#               interface's ingress, to be forwarded). Under dns.filter_queries (the default) the daemon reads
#               every query on its way out as well.
# Each query is one UDP datagram from a fresh socket (a fresh source port and flow, as a stub resolver sends them),
# from one bash process in the client namespace (no fork per query), one at a time, GAP_MS apart; the names cycle
# through allowed.test A, alias.test A (a CNAME to cdn.test) and allowed.test AAAA. WARMUP queries go first,
# uncaptured (see measure). tcpdump on the gateway's outside and inside interfaces and on the client's (one kernel
# clock, nanosecond timestamps) times each exchange, matched by DNS ID and client port:
#   answer-gw   the answer's first sighting on the outside interface to it leaving the inside one: the hold
#   query-gw    the query arriving on the inside interface to it leaving the outside one
#   client-rtt  the query leaving the client to its answer arriving there
# dig reports ms, and a process per query would be timed with it: the captures time the packets alone. With
# portcullis the outside capture sees each answer twice, as it arrives and as the daemon's copy is turned into the
# same ingress; the time between the two (taken-to-resent) is the daemon's part of the hold.
# Rounds alternate the configurations so drift spreads over both. Prints median and p99 per configuration and their
# difference; the daemon's own answer_hold histogram per round and summed (its clock stops once its send returns,
# and may include time it waited for a CPU after the answer was on its way, to a client woken on the same CPU, say:
# the captures are the figure); and its CPU time per exchange (utime + stime of /proc/PID/stat, clock ticks; and the
# threads' schedstat run time, in ns).
#
# Then answers per second under load: dnsperf from the client (LOAD_CLIENTS sockets, LOAD_OUTSTANDING queries in
# flight) for LOAD_SECONDS, a fresh daemon each: without enforcement; portcullis as it ships (--punt-rate 2000:
# answers held per second for one client address); with the punt bucket out of the way (--punt-rate and
# --punt-burst 1000000), where what limits is the daemon, dnsmasq, dnsperf and the machine's cores, which they
# share; and the same with dns.filter_queries: false (the daemon reads the answers alone). Reports queries per
# second answered and lost, answers the daemon read per second, and its CPU per answer (what one core sustains).
# Skipped, saying so, when dnsperf is missing (scripts/setup installs it); build/bench/dns_bench times the parse
# and bind alone.
#
# Usage: bench/dns/answer_hold.sh [--queries N] [--rounds R] [--load-seconds S]
# Environment: QUERIES (200 per round and configuration), ROUNDS (3), GAP_MS (2), WARMUP (20), LOAD_SECONDS (5; 0
# skips the load), LOAD_CLIENTS (8), LOAD_OUTSTANDING (200), PORTCULLIS_BIN (default build/userspace/portcullis).
# Needs root.
# Everything runs in namespaces of its own, removed on exit.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -- "$0" "$@"; fi
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QUERIES=${QUERIES:-200}
ROUNDS=${ROUNDS:-3}
GAP_MS=${GAP_MS:-2}
WARMUP=${WARMUP:-20}
LOAD_SECONDS=${LOAD_SECONDS:-5}
LOAD_CLIENTS=${LOAD_CLIENTS:-8}
LOAD_OUTSTANDING=${LOAD_OUTSTANDING:-200}
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$src_dir/build/userspace/portcullis}
while [ $# -gt 0 ]; do
  case $1 in
    --queries) QUERIES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --load-seconds) LOAD_SECONDS=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for v in QUERIES ROUNDS LOAD_CLIENTS LOAD_OUTSTANDING; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a number above 0, not '${!v}'" >&2; exit 2; }
done
for v in GAP_MS WARMUP LOAD_SECONDS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a number, not '${!v}'" >&2; exit 2; }
done
# One DNS ID per query of the run (query_loop), so at most 240 x 245 queries.
[ $((2 * ROUNDS * (WARMUP + QUERIES))) -le 58800 ] ||
  { echo "2 x ROUNDS x (WARMUP + QUERIES) must stay under 58800 (DNS IDs)" >&2; exit 2; }
[ -x "$PORTCULLIS_BIN" ] || { echo "build first: $PORTCULLIS_BIN is missing" >&2; exit 1; }

# shellcheck source=SCRIPTDIR/../../test/e2e/lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=SCRIPTDIR/../../test/e2e/lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_require dnsmasq tcpdump jq awk nsenter timeout || { echo "install them with scripts/setup" >&2; exit 1; }
set -E  # the ERR trap in functions and substitutions too: a failed step says where
trap 'echo "answer_hold.sh: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR
PC_BIN=$PORTCULLIS_BIN
PC_PIN_DIR=/sys/fs/bpf/pc-e2e-bench-dns-$$
pc_trap  # stops the daemon and removes its pins, then the topology, on every exit path
# shellcheck disable=SC2119  # no second client
topo_create >/dev/null
work=$TOPO_LOG_DIR
sock=$work/control.sock
policy=$work/policy.yaml

die() { echo "answer_hold.sh: $*" >&2; exit 1; }

# The resolver as test/e2e/dns_binding_test.sh runs it, without its query log (a write per query), and with a
# TTL on its own answers (dnsmasq's default is 0).
topo_start inet dnsmasq dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
  --listen-address="$INET_DNS_V4" --local-ttl=300 \
  --address="/allowed.test/$INET_ALLOWED_V4" --address="/allowed.test/$INET_ALLOWED_V6" \
  --host-record="cdn.test,$INET_ALLOWED_V4" --cname=alias.test,cdn.test
topo_wait_port inet udp "$INET_DNS_V4" 53
cat >"$policy" <<POLICY
version: 1
defaults: {action: deny, on_deny: reject}
dns:
  resolvers: [$INET_DNS_V4]
rules:
  - {name: allowed, dst: allowed.test, proto: https}
  - {name: alias, dst: alias.test, proto: https}
  - {name: ntp, dst: time.test, proto: udp, ports: [123]}
  - {name: git, dst: git.test, proto: ssh}
groups:
  - {name: sandbox, sources: [10.88.1.0/24, "fd88:1::/64"]}
POLICY

# capture_start NAME / capture_stop NAME: tcpdump of DNS on the client's interface and on both of the gateway's.
capture_start() {
  local where deadline
  for where in client:"$CLIENT_IF" gw:"$GW_INSIDE" gw:"$GW_OUTSIDE"; do
    topo_start "${where%%:*}" "$1-${where#*:}" tcpdump -i "${where#*:}" -n -U --immediate-mode \
      --time-stamp-precision=nano -w "$work/$1-${where#*:}.pcap" udp port 53
  done
  deadline=$((SECONDS + 5))
  for where in "$CLIENT_IF" "$GW_INSIDE" "$GW_OUTSIDE"; do
    until grep -q 'listening on' "$work/$1-$where.log" 2>/dev/null; do
      [ "$SECONDS" -lt "$deadline" ] || die "tcpdump did not start: $(cat "$work/$1-$where.log")"
      sleep 0.05
    done
  done
}
capture_stop() {  # capture_stop NAME CONFIG: prints "CONFIG-METRIC MICROSECONDS" per exchange (see the header)
  local where
  sleep 0.2  # the last answer is in every capture
  for where in "$CLIENT_IF" "$GW_INSIDE" "$GW_OUTSIDE"; do
    topo_stop "$1-$where"
    tcpdump -r "$work/$1-$where.pcap" -n -tt --time-stamp-precision=nano 2>/dev/null >"$work/$1-$where.txt"
  done
  # Lines: "SECONDS.NANOS IP SRC.PORT > DST.PORT: ID[flags] ...". The timestamps are taken apart so that
  # microseconds keep their fraction in a double.
  awk -v c="$2" -v dns="$INET_DNS_V4.53" -v client="$work/$1-$CLIENT_IF.txt" -v inside="$work/$1-$GW_INSIDE.txt" '
    { split($1, t, "."); if (!base) base = t[1]; us = (t[1] - base) * 1000000 + t[2] / 1000
      src = $3; dst = $5; sub(/:$/, "", dst); if (!match($6, /^[0-9]+/)) next; id = substr($6, 1, RLENGTH)
      where = FILENAME == client ? "c" : FILENAME == inside ? "i" : "o" }
    dst == dns { n = split(src, p, "."); k = id ":" p[n]; if (!((where, "q", k) in at)) at[where, "q", k] = us; next }
    src == dns { n = split(dst, p, "."); k = id ":" p[n]; keys[k] = 1
                 seen[where, k]++
                 if (seen[where, k] == 1) at[where, "a", k] = us
                 else if (seen[where, k] == 2) at[where, "a2", k] = us }
    END { for (k in keys) {
            if (!(("c", "a", k) in at) || !(("i", "a", k) in at) || !(("o", "a", k) in at)) continue
            printf "%s-answer-gw %.1f\n", c, at["i", "a", k] - at["o", "a", k]
            printf "%s-query-gw %.1f\n", c, at["o", "q", k] - at["i", "q", k]
            printf "%s-client-rtt %.1f\n", c, at["c", "a", k] - at["c", "q", k]
            printf "%s-resolver %.1f\n", c, at["o", "a", k] - at["o", "q", k]
            if (("o", "a2", k) in at) printf "%s-taken-to-resent %.1f\n", c, at["o", "a2", k] - at["o", "a", k] } }
  ' "$work/$1-$CLIENT_IF.txt" "$work/$1-$GW_INSIDE.txt" "$work/$1-$GW_OUTSIDE.txt"
}

# query_loop FIRST COUNT: COUNT queries, one at a time, each from a fresh socket; prints how many were answered.
# The Nth query of the run has the DNS ID (16 + N / 245) * 256 + 11 + N % 245: neither byte is NUL, which bash's
# read drops, or a newline, after which bash's printf writes what it has (the datagram would be cut in two).
query_loop() {
  # shellcheck disable=SC2016  # expanded by the inner bash
  in_ns client timeout $((30 + $2 / 20)) env LC_ALL=C bash -c '
    # The header (ID, RD, one question) and the three questions, as printf escapes.
    questions=("\x07allowed\x04test\x00\x00\x01\x00\x01" "\x05alias\x04test\x00\x00\x01\x00\x01"
               "\x07allowed\x04test\x00\x00\x1c\x00\x01")
    answered=0
    for ((i = 0; i < $3; i++)); do
      n=$(($2 + i))
      printf -v head "\\\\x%02x\\\\x%02x\\\\x01\\\\x00\\\\x00\\\\x01\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00" \
        $((16 + n / 245)) $((11 + n % 245))
      exec 3<>"/dev/udp/$1/53" || exit 1
      # shellcheck disable=SC2059  # the format is the datagram: escapes only
      printf "$head${questions[i % 3]}" >&3
      # One byte read takes the whole datagram: the answer came.
      if IFS= read -r -N 1 -t 2 _ <&3; then answered=$((answered + 1)); fi
      exec 3<&-
      [ "$4" = 0 ] || sleep "$4"
    done
    echo "$answered"' _ "$INET_DNS_V4" "$1" "$2" "$(awk -v g="$GAP_MS" 'BEGIN { print g / 1000 }')"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run_ns() { cat "/proc/$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d", s }'; }
daemon_stats() { "$PC_BIN" stats --control "$sock"; }

results=$work/results.txt
punt_stats=$work/punt_stats.jsonl
# measure CONFIG ROUND: WARMUP queries, then QUERIES with the captures running; the exchanges into results.txt.
# The warm-up stays out of the figures: in the first ~100 ms after its ready line the daemon holds an answer for
# a few ms now and then (first use of its paths), and tcpdump's start-up competes for the CPUs.
measure() {
  local answered
  answered=$(query_loop "$next_id" "$WARMUP")
  [ "$answered" -eq "$WARMUP" ] || die "$1: $answered of $WARMUP warm-up queries answered"
  next_id=$((next_id + WARMUP))
  capture_start "$1-$2"
  sleep 0.2
  if [ -n "$PC_PID" ]; then ticks_before=$(cpu_ticks "$PC_PID") ns_before=$(run_ns "$PC_PID"); fi
  answered=$(query_loop "$next_id" "$QUERIES")
  if [ -n "$PC_PID" ]; then
    ticks_total=$((ticks_total + $(cpu_ticks "$PC_PID") - ticks_before))
    ns_total=$((ns_total + $(run_ns "$PC_PID") - ns_before))
  fi
  capture_stop "$1-$2" "$1" >>"$results"
  [ "$answered" -eq "$QUERIES" ] || die "$1: $answered of $QUERIES queries answered"
  next_id=$((next_id + QUERIES))
}

: >"$results"
: >"$punt_stats"
ticks_total=0 ns_total=0 next_id=0
for ((round = 1; round <= ROUNDS; round++)); do
  PC_PID=""
  measure none "$round"

  pc_start gw "pc-$round" --policy "$policy" --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" \
    --control "$sock"
  measure portcullis "$round"
  daemon_stats | jq -c '.punts | {dns_answers, dns_queries, dns_filtered, answer_hold}' >>"$punt_stats"
  jq -e --argjson n $((WARMUP + QUERIES)) '.dns_answers == $n and .dns_queries == $n and .dns_filtered == 0' \
    <(tail -n 1 "$punt_stats") >/dev/null ||
    die "portcullis: not $((WARMUP + QUERIES)) queries and answers read: $(tail -n 1 "$punt_stats")"
  pc_stop TERM
done
for config in none portcullis; do
  n=$(awk -v c="$config-answer-gw" '$1 == c' "$results" | wc -l)
  [ "$n" -eq $((ROUNDS * QUERIES)) ] || die "$config: $n exchanges in all three captures, not $((ROUNDS * QUERIES))"
done

pct() {  # pct NAME: "median p99" of its values, one decimal
  awk -v c="$1" '$1 == c { print $2 }' "$results" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR) printf "%.1f %.1f", v[int((NR + 1) / 2)], v[int(NR * 0.99 + 0.999)]; else printf "- -" }'
}
echo "DNS over UDP through the gateway: $ROUNDS rounds x $QUERIES queries per configuration (microseconds, from" \
  "the captures)"
printf '%-18s %12s %12s %12s %12s %12s %12s\n' config answer-gw-med answer-gw-p99 query-gw-med query-gw-p99 \
  client-rtt-med client-rtt-p99
declare -A med p99
for config in none portcullis; do
  for metric in answer-gw query-gw client-rtt resolver taken-to-resent; do
    read -r "med[$config-$metric]" "p99[$config-$metric]" <<<"$(pct "$config-$metric")"
  done
  printf '%-18s %12s %12s %12s %12s %12s %12s\n' "$config" "${med[$config-answer-gw]}" "${p99[$config-answer-gw]}" \
    "${med[$config-query-gw]}" "${p99[$config-query-gw]}" "${med[$config-client-rtt]}" "${p99[$config-client-rtt]}"
done
added() { awk -v a="${med[portcullis-$1]}" -v b="${med[none-$1]}" 'BEGIN { printf "%.1f", a - b }'; }
added_p99() { awk -v a="${p99[portcullis-$1]}" -v b="${p99[none-$1]}" 'BEGIN { printf "%.1f", a - b }'; }
printf '%-18s %12s %12s %12s %12s %12s %12s\n' added "$(added answer-gw)" "$(added_p99 answer-gw)" \
  "$(added query-gw)" "$(added_p99 query-gw)" "$(added client-rtt)" "$(added_p99 client-rtt)"
echo "  answer-gw: the answer's first sighting on $GW_OUTSIDE to it leaving $GW_INSIDE (the hold; target: median" \
  "<= 200 us)"
echo "  query-gw: the query on $GW_INSIDE to $GW_OUTSIDE; client-rtt: query out of the client to its answer in"
echo "  resolver (query out of $GW_OUTSIDE to the answer in): none ${med[none-resolver]} / portcullis" \
  "${med[portcullis-resolver]} median"
n_resent=$(awk '$1 == "portcullis-taken-to-resent"' "$results" | wc -l)
echo "  portcullis taken-to-resent (the answer on $GW_OUTSIDE, then the daemon's copy there): median" \
  "${med[portcullis-taken-to-resent]}, p99 ${p99[portcullis-taken-to-resent]} ($n_resent of $((ROUNDS * QUERIES))" \
  "answers seen twice)"
echo "portcullis stats .punts after each round (a fresh daemon per round):"
sed 's/^/  /' "$punt_stats"
# The daemon's own clock: from the data plane taking the answer to the daemon sending it on, over the rounds.
jq -rs 'map(.answer_hold) as $h | ($h[0] | keys_unsorted) as $k |
  ([$k[] as $b | {key: $b, value: ($h | map(.[$b]) | add)}] | from_entries) as $sum |
  ([$k[] | select(. != "sum_us") | $sum[.]] | add) as $n |
  "answer hold (daemon clock): mean \(if $n > 0 then ($sum.sum_us / $n | floor) else 0 end) us over \($n) answers;" +
  ([$k[] | select(. != "sum_us") | " \(.)=\($sum[.])"] | join(""))' "$punt_stats"
hz=$(getconf CLK_TCK)
exchanges=$((ROUNDS * QUERIES))
awk -v n="$exchanges" -v ticks="$ticks_total" -v hz="$hz" -v run="$ns_total" 'BEGIN {
  printf "daemon CPU per exchange (its query read and released, its answer read, bound and sent on): %.1f us by" \
    " schedstat, %.1f us by stat (%d ticks of 1/%d s)\n", run / 1000 / n, ticks * 1e6 / hz / n, ticks, hz }'

printf '%s\n' "allowed.test A" "alias.test A" "allowed.test AAAA" >"$work/queries.txt"
# The same policy without query filtering: the daemon reads the answers alone.
sed 's/^  resolvers: .*/&\n  filter_queries: false/' "$policy" >"$work/policy-no-filter.yaml"
load() {  # load CONFIG: dnsperf for LOAD_SECONDS; prints "CONFIG answered lost qps avg-rtt-us run-time-us"
  in_ns client timeout $((LOAD_SECONDS + 30)) dnsperf -s "$INET_DNS_V4" -d "$work/queries.txt" -l "$LOAD_SECONDS" \
    -c "$LOAD_CLIENTS" -q "$LOAD_OUTSTANDING" -t 1 >"$work/dnsperf-$1.txt" 2>&1 ||
    die "dnsperf ($1) failed: $(tail -n 5 "$work/dnsperf-$1.txt")"
  awk -v c="$1" '
    /Queries completed:/ { done = $3 } /Queries lost:/ { lost = $3 } /Queries per second:/ { qps = $4 }
    /Average Latency/ { rtt = $4 * 1e6 } /Run time/ { run = $4 * 1e6 }
    END { printf "%s %d %d %.0f %.0f %.0f\n", c, done, lost, qps, rtt, run }' "$work/dnsperf-$1.txt"
}
answers() { daemon_stats | jq .punts.dns_answers; }
# load_with_daemon CONFIG POLICY RUN-ARGS...: a fresh daemon, the load, and the answers it read and its CPU time
# over the load: "LOAD-LINE answers ticks run-ns" into loads.txt (not through $(...): pc_start sets PC_PID here).
load_with_daemon() {
  local config=$1 policy_file=$2 a0 k0 r0 line
  shift 2
  pc_start gw "pc-$config" --policy "$policy_file" --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" \
    --control "$sock" "$@"
  a0=$(answers) k0=$(cpu_ticks "$PC_PID") r0=$(run_ns "$PC_PID")
  line=$(load "$config")
  echo "$line $(($(answers) - a0)) $(($(cpu_ticks "$PC_PID") - k0)) $(($(run_ns "$PC_PID") - r0))" \
    >>"$work/loads.txt"
  echo "  $config after the load: $(daemon_stats | jq -c '{dns_answers: .punts.dns_answers,
    dns_queries: .punts.dns_queries, answer_hold: .punts.answer_hold, drops: .counters.drops}')" \
    >>"$work/load-notes.txt"
  pc_stop TERM
}
load_phase() {  # the four configurations under dnsperf, and the table
  : >"$work/load-notes.txt"
  load none >"$work/loads.txt"
  load_with_daemon portcullis "$policy"
  load_with_daemon portcullis-unlimited "$policy" --punt-rate 1000000 --punt-burst 1000000
  load_with_daemon unlimited-no-filter "$work/policy-no-filter.yaml" --punt-rate 1000000 --punt-burst 1000000
  echo "load: dnsperf -c $LOAD_CLIENTS -q $LOAD_OUTSTANDING -t 1 for $LOAD_SECONDS s from the client, the three" \
    "names in turn"
  printf '%-21s %9s %7s %9s %10s %10s %9s %10s %10s\n' config answered lost queries/s avg-rtt-us daemon-rd/s \
    daemon-cpu us-cpu/ans us-stat/ans
  awk -v hz="$hz" '
    NF == 6 { printf "%-21s %9d %7d %9d %10d %10s %9s %10s %10s\n", $1, $2, $3, $4, $5, "-", "-", "-", "-" }
    NF == 9 { printf "%-21s %9d %7d %9d %10d %10.0f %8.1f%% %10.2f %10.2f\n", $1, $2, $3, $4, $5, $7 * 1e6 / $6,
                $9 / 10 / $6, $7 ? $9 / 1000 / $7 : 0, $7 ? $8 * 1e6 / hz / $7 : 0
              cpu_s = $9 / 1e9 > $8 / hz ? $9 / 1e9 : $8 / hz  # the larger of the two clocks
              if ($7 && cpu_s) core[$1] = $7 / cpu_s }
    END { if (("portcullis-unlimited" in core) && ("unlimited-no-filter" in core))
            printf "  one core, by the daemon'"'"'s CPU per answer (the larger figure): ~%.0f answers per second with" \
              " their queries read (filter_queries), ~%.0f answers alone\n", core["portcullis-unlimited"],
              core["unlimited-no-filter"] }' \
    "$work/loads.txt"
  echo "  portcullis: as it ships, --punt-rate 2000 --punt-burst 4000: answers the data plane holds for one client"
  echo "  address per second, sustained and in a burst (the queries it reads under filter_queries take no token);"
  echo "  an answer past the bucket is dropped, and dnsperf waits out its timeout (-t 1) for each. unlimited:"
  echo "  --punt-rate and --punt-burst 1000000; no-filter: dns.filter_queries: false as well."
  echo "  daemon-rd/s: answers the daemon read per second of dnsperf's run time; daemon-cpu: its threads' schedstat"
  echo "  run time over the same; us-cpu/ans: that per answer; us-stat/ans: utime + stime (1/$hz s ticks) per answer."
  cat "$work/load-notes.txt"
}
if [ "$LOAD_SECONDS" -eq 0 ]; then
  echo "load: skipped (LOAD_SECONDS=0)"
elif ! command -v dnsperf >/dev/null 2>&1; then
  echo "load: skipped: dnsperf is missing (scripts/setup installs it); build/bench/dns_bench times the answers" \
    "parsed and bound per second on one core"
else
  load_phase
fi
echo "commands:"
echo "  portcullis: $PC_BIN run --pin-dir $PC_PIN_DIR --log LOG --policy POLICY --mode gateway" \
  "--inside $GW_INSIDE --outside $GW_OUTSIDE --control SOCK   (in the gw namespace; under load also" \
  "--punt-rate 1000000 --punt-burst 1000000, and filter_queries: false in the policy; the policy:)"
sed 's/^/    /' "$policy"
echo "  resolver:   dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address=$INET_DNS_V4" \
  "--local-ttl=300 --address=/allowed.test/$INET_ALLOWED_V4 --address=/allowed.test/$INET_ALLOWED_V6" \
  "--host-record=cdn.test,$INET_ALLOWED_V4 --cname=alias.test,cdn.test   (inet)"
echo "  queries:    bash: exec 3<>/dev/udp/$INET_DNS_V4/53; printf QUERY >&3; read -N 1 -t 2 <&3; sleep $GAP_MS ms" \
  "(client; see query_loop)"
echo "  capture:    tcpdump -i IF -n -U --immediate-mode --time-stamp-precision=nano -w PCAP udp port 53" \
  "(client $CLIENT_IF, gw $GW_INSIDE and $GW_OUTSIDE)"
echo "  load:       dnsperf -s $INET_DNS_V4 -d QUERIES -l $LOAD_SECONDS -c $LOAD_CLIENTS -q $LOAD_OUTSTANDING -t 1" \
  "(client; QUERIES: allowed.test A, alias.test A, allowed.test AAAA)"
echo "  stats:      $PC_BIN stats --control SOCK | jq .punts"
