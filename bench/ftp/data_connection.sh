#!/usr/bin/env bash
# What an FTP data connection's setup costs through portcullis, against the same gateway without enforcement:
#   none        the gateway only forwards; the kernel's FTP helper is assigned by an nftables table of the bench's
#               (`nft add ct helper ...`, `ct helper set "ftp"` at prerouting for tcp dport 21)
#   portcullis  `portcullis run --mode gateway` with test/e2e/policies/ftp.yaml: its own table assigns the helper,
#               and each expectation the helper makes is mirrored into the data plane; a data connection's SYN
#               that comes before the mirrored copy is held until the daemon has asked the kernel
# vsftpd serves a small file on 198.18.0.21 (passive ports 30000-30004); each transfer is one
#   curl -s -o /dev/null -w '%{time_pretransfer} %{time_starttransfer} %{time_total}' --ftp-pasv ftp://198.18.0.21/file
# from the client namespace, and tcpdump there times each data connection's SYN to its SYN-ACK (the data
# connection's setup, hold included). curl (7.88) connects the data connection before it sends RETR, so its
# time_pretransfer already holds that setup and time_starttransfer - time_pretransfer (RETR's 150 to the first
# byte) does not: the SYN-to-SYN-ACK is the figure for the setup. Rounds alternate the configurations so drift spreads over both. Prints
# median and p99 of time_total, of time_starttransfer - time_pretransfer, and of the data connection's
# SYN-to-SYN-ACK, per configuration and their difference, and the daemon's FTP counters.
#
# Then, with portcullis, expectations mirrored per second: one control connection (bash /dev/tcp) logs in and
# sends PASV PASV_COUNT times, each as soon as the previous 227 came back; each 227 makes the kernel's helper
# replace the connection's expectation, and the daemon mirror the new one. Reports 227 replies per second,
# expectations mirrored per second over the same interval (equal if the daemon keeps up), and the daemon's CPU
# time (utime + stime of /proc/PID/stat, clock ticks; and the threads' schedstat run time, in ns) per expectation.
#
# Usage: bench/ftp/data_connection.sh [--transfers N] [--rounds R] [--pasv N]
# Environment: TRANSFERS (100 per round and configuration), ROUNDS (3), PASV_COUNT (2000), PORTCULLIS_BIN
# (default build/userspace/portcullis). Needs root. Everything runs in namespaces of its own, removed on exit.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -- "$0" "$@"; fi
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TRANSFERS=${TRANSFERS:-100}
ROUNDS=${ROUNDS:-3}
PASV_COUNT=${PASV_COUNT:-2000}
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$src_dir/build/userspace/portcullis}
while [ $# -gt 0 ]; do
  case $1 in
    --transfers) TRANSFERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --pasv) PASV_COUNT=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for v in TRANSFERS ROUNDS PASV_COUNT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a number above 0, not '${!v}'" >&2; exit 2; }
done
[ -x "$PORTCULLIS_BIN" ] || { echo "build first: $PORTCULLIS_BIN is missing" >&2; exit 1; }

# shellcheck source=SCRIPTDIR/../../test/e2e/lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=SCRIPTDIR/../../test/e2e/lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_require vsftpd curl nft jq tcpdump awk || { echo "install them with scripts/setup" >&2; exit 1; }
set -E  # the ERR trap in functions and substitutions too: a failed step says where
trap 'echo "data_connection.sh: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR
PC_BIN=$PORTCULLIS_BIN
PC_PIN_DIR=/sys/fs/bpf/pc-e2e-bench-ftp-$$
pc_trap  # stops the daemon and removes its pins, then the topology, on every exit path
# shellcheck disable=SC2119  # no second client
topo_create >/dev/null
work=$TOPO_LOG_DIR
sock=$work/control.sock
policy=$src_dir/test/e2e/policies/ftp.yaml
url=ftp://$INET_FTP_V4/file

die() { echo "data_connection.sh: $*" >&2; exit 1; }

# vsftpd as the e2e tests run it: anonymous, passive ports 30000-30004, never from port 20.
mkdir -p "$work/ftp"
head -c 4096 /dev/urandom >"$work/ftp/file"
chmod 555 "$work/ftp"
chmod 644 "$work/ftp/file"
topo_serve_ftp "$INET_FTP_V4" "$work/ftp"

nft_helper_table() {  # the "none" configuration's helper assignment, as the nft CLI makes it
  in_ns gw nft add table inet bench
  in_ns gw nft add ct helper inet bench ftp '{ type "ftp" protocol tcp; l3proto inet; }'
  in_ns gw nft add chain inet bench pre '{ type filter hook prerouting priority 0; }'
  in_ns gw nft add rule inet bench pre tcp dport 21 ct helper set '"ftp"'
}

# capture_start NAME / capture_stop NAME: tcpdump in the client namespace, SYNs to and from the data ports.
capture_start() {
  topo_start client "$1" tcpdump -i "$CLIENT_IF" -n -U --immediate-mode --time-stamp-precision=nano -w "$work/$1.pcap" \
    'tcp[tcpflags] & tcp-syn != 0 and tcp portrange 30000-30004'
  local deadline=$((SECONDS + 5))
  until grep -q 'listening on' "$work/$1.log" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "tcpdump did not start: $(cat "$work/$1.log")"
    sleep 0.05
  done
}
capture_stop() {  # prints "CONFIG-syn 0 0 us" per data connection: its first SYN to the first SYN-ACK
  topo_stop "$1"
  # Keyed by both ends, and forgotten once answered: a client port may come again within one capture.
  tcpdump -r "$work/$1.pcap" -n -tt --time-stamp-precision=nano 2>/dev/null | awk -v c="$2" '
    { split($1, t, "."); if (!base) base = t[1]; us = (t[1] - base) * 1000000 + t[2] / 1000
      from = $3; to = $5; sub(/:$/, "", to) }
    $7 == "[S]," && !((from, to) in syn) { syn[from, to] = us }
    $7 == "[S.]," && ((to, from) in syn) { printf "%s-syn 0 0 %.1f\n", c, us - syn[to, from]; delete syn[to, from] }'
}

measure() {  # measure CONFIG: TRANSFERS lines of "CONFIG pretransfer-us starttransfer-us total-us"
  local i out rc
  for ((i = 0; i < TRANSFERS; i++)); do
    rc=0
    out=$(in_ns client curl -s --noproxy '*' --max-time 10 -o /dev/null --ftp-pasv \
      -w '%{time_pretransfer} %{time_starttransfer} %{time_total} %{size_download}' "$url") || rc=$?
    [ "$rc" -eq 0 ] || die "$1: transfer $((i + 1)) failed (curl exit $rc)"
    read -r pre start total size <<<"$out"
    [ "$size" = 4096 ] || die "$1: transfer $((i + 1)) brought $size bytes, not 4096"
    awk -v c="$1" -v p="$pre" -v s="$start" -v t="$total" 'BEGIN { printf "%s %.1f %.1f %.1f\n", c, p * 1e6, s * 1e6, t * 1e6 }'
  done
}

results=$work/results.txt
ftp_stats=$work/ftp_stats.jsonl
: >"$results"
: >"$ftp_stats"
expected_total=0
for ((round = 1; round <= ROUNDS; round++)); do
  nft_helper_table
  capture_start "none-$round"
  measure none >>"$results"
  capture_stop "none-$round" none >>"$results"
  in_ns gw nft delete table inet bench

  pc_start gw "pc-$round" --policy "$policy" --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" \
    --control "$sock"
  capture_start "portcullis-$round"
  measure portcullis >>"$results"
  capture_stop "portcullis-$round" portcullis >>"$results"
  "$PC_BIN" stats --control "$sock" | jq -c .ftp >>"$ftp_stats"
  expected=$(grep -c '"reason":"expected"' "$PC_LOG" || true)
  expected_total=$((expected_total + expected))
  if [ "$round" -lt "$ROUNDS" ]; then pc_stop TERM; fi
done
for config in none portcullis; do
  n=$(awk -v c="$config-syn" '$1 == c' "$results" | wc -l)
  [ "$n" -eq $((ROUNDS * TRANSFERS)) ] || die "$config: $n data connections seen by tcpdump, not $((ROUNDS * TRANSFERS))"
done

# Expectations mirrored per second: the daemon of the last round stays up for it.
pasv_session() {  # pasv_session N: log in, N PASV each after the previous reply; prints the number of 227 replies
  # shellcheck disable=SC2016  # expanded by the inner bash
  in_ns client timeout 120 bash -c '
    exec 3<>"/dev/tcp/$1/21" || exit 1
    reply() {  # the next reply line into $line (builtins only: no fork per reply)
      while IFS= read -r -t 5 line <&3; do [[ $line == [0-9][0-9][0-9]-* ]] || return 0; done
      return 1
    }
    line=""
    reply && [[ $line == 220* ]] || { echo "no 220 greeting: ${line:-nothing in 5 s}" >&2; exit 1; }
    printf "USER anonymous\r\n" >&3
    line=""
    reply && [[ $line == 230* ]] || { echo "no 230 to USER anonymous: ${line:-nothing in 5 s}" >&2; exit 1; }
    n=0
    for ((i = 0; i < $2; i++)); do
      printf "PASV\r\n" >&3
      line=""
      reply && [[ $line == 227* ]] || { echo "PASV $((n + 1)) answered: ${line:-nothing in 5 s}" >&2; break; }
      n=$((n + 1))
    done
    printf "QUIT\r\n" >&3
    echo "$n"' _ "$INET_FTP_V4" "$1"
}
mirrored() { "$PC_BIN" stats --control "$sock" | jq .ftp.expectations_mirrored; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run_ns() { cat "/proc/$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d", s }'; }
[ "$(cat "/proc/$PC_PID/comm")" = portcullis ] || die "PC_PID $PC_PID is not the daemon"
mirrored_before=$(mirrored)
ticks_before=$(cpu_ticks "$PC_PID")
ns_before=$(run_ns "$PC_PID")
t0=${EPOCHREALTIME/./}
replies=$(pasv_session "$PASV_COUNT") || die "the PASV session failed (above)"
t1=${EPOCHREALTIME/./}
ticks_after=$(cpu_ticks "$PC_PID")
ns_after=$(run_ns "$PC_PID")
mirrored_after=$(mirrored)
sleep 1
mirrored_settled=$(mirrored)
[ "$replies" -eq "$PASV_COUNT" ] || die "$replies of $PASV_COUNT PASV commands answered 227"
"$PC_BIN" stats --control "$sock" | jq -c .ftp >"$work/ftp_stats_pasv.json"

pct() {  # pct NAME COLUMN: median p99
  awk -v c="$1" -v k="$2" '$1 == c { print $k }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { printf "%d %d", v[int((NR + 1) / 2)], v[int(NR * 0.99 + 0.999)] }'
}
diff_pct() {  # diff_pct CONFIG: "median p99" of starttransfer - pretransfer
  awk -v c="$1" '$1 == c { printf "%.1f\n", $3 - $2 }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { printf "%d %d", v[int((NR + 1) / 2)], v[int(NR * 0.99 + 0.999)] }'
}
read -r n_tot_med n_tot_p99 <<<"$(pct none 4)"
read -r p_tot_med p_tot_p99 <<<"$(pct portcullis 4)"
read -r n_st_med n_st_p99 <<<"$(diff_pct none)"
read -r p_st_med p_st_p99 <<<"$(diff_pct portcullis)"
read -r n_syn_med n_syn_p99 <<<"$(pct none-syn 4)"
read -r p_syn_med p_syn_p99 <<<"$(pct portcullis-syn 4)"
echo "FTP passive transfers (4 KiB) through the gateway: $ROUNDS rounds x $TRANSFERS per configuration (microseconds)"
printf '%-11s %10s %10s %14s %14s %12s %12s\n' config total-med total-p99 start-pre-med start-pre-p99 data-syn-med \
  data-syn-p99
printf '%-11s %10d %10d %14d %14d %12d %12d\n' none "$n_tot_med" "$n_tot_p99" "$n_st_med" "$n_st_p99" "$n_syn_med" \
  "$n_syn_p99"
printf '%-11s %10d %10d %14d %14d %12d %12d\n' portcullis "$p_tot_med" "$p_tot_p99" "$p_st_med" "$p_st_p99" \
  "$p_syn_med" "$p_syn_p99"
printf '%-11s %10d %10d %14d %14d %12d %12d\n' added $((p_tot_med - n_tot_med)) $((p_tot_p99 - n_tot_p99)) \
  $((p_st_med - n_st_med)) $((p_st_p99 - n_st_p99)) $((p_syn_med - n_syn_med)) $((p_syn_p99 - n_syn_p99))
echo "  start-pre: curl's time_starttransfer - time_pretransfer (curl 7.88 connects the data connection before"
echo "  RETR, so pretransfer already includes it); data-syn: the data connection's SYN to SYN-ACK at the client."
echo "portcullis stats .ftp after each round (a fresh daemon per round):"
sed 's/^/  /' "$ftp_stats"
jq -rs --argjson expected "$expected_total" '
  (map(.held_resolved) | add) as $held |
  "  data connections allowed as expected: \($expected); the expectation was in the data plane before the SYN: " +
  "\($expected - $held); the SYN waited for the daemon (held_resolved): \($held)"' "$ftp_stats"

elapsed_us=$((t1 - t0))
hz=$(getconf CLK_TCK)
awk -v n="$replies" -v us="$elapsed_us" -v m=$((mirrored_after - mirrored_before)) \
  -v settled=$((mirrored_settled - mirrored_before)) -v ticks=$((ticks_after - ticks_before)) -v hz="$hz" \
  -v run=$((ns_after - ns_before)) 'BEGIN {
    printf "PASV on one control connection: %d replies in %.1f ms\n", n, us / 1000
    printf "  227 replies per second        %10.0f\n", n * 1e6 / us
    printf "  expectations mirrored per s   %10.0f   (%d in the interval, %d a second later)\n", m * 1e6 / us, m, settled
    printf "  daemon CPU (stat, 1/%d s)     %10.1f us per expectation (%d ticks)\n", hz, m ? ticks * 1e6 / hz / m : 0, ticks
    printf "  daemon CPU (schedstat)        %10.1f us per expectation\n", m ? run / 1000 / m : 0 }'
echo "  stats after: $(cat "$work/ftp_stats_pasv.json")"
echo "commands:"
echo "  none:       nft add table inet bench; nft add ct helper inet bench ftp '{ type \"ftp\" protocol tcp; l3proto inet; }';"
echo "              nft add chain inet bench pre '{ type filter hook prerouting priority 0; }';"
echo "              nft add rule inet bench pre tcp dport 21 ct helper set \"ftp\"   (in the gw namespace)"
echo "  portcullis: $PC_BIN run --pin-dir $PC_PIN_DIR --log LOG --policy $policy --mode gateway" \
  "--inside $GW_INSIDE --outside $GW_OUTSIDE --control SOCK   (in the gw namespace)"
echo "  transfer:   curl -s --noproxy '*' --max-time 10 -o /dev/null --ftp-pasv" \
  "-w '%{time_pretransfer} %{time_starttransfer} %{time_total} %{size_download}' $url   (client)"
echo "  capture:    tcpdump -i $CLIENT_IF -n -U --immediate-mode --time-stamp-precision=nano -w PCAP" \
  "'tcp[tcpflags] & tcp-syn != 0 and tcp portrange 30000-30004'   (client)"
echo "  stats:      $PC_BIN stats --control SOCK | jq .ftp"
echo "  PASV rate:  bash /dev/tcp/$INET_FTP_V4/21 in the client: USER anonymous, then PASV x $PASV_COUNT (see pasv_session)"
