#!/usr/bin/env bash
# What a reload costs with many open flows. `portcullis run --mode gateway` allows tcp to 198.18.0.10 ports
# 9000-9999; N idle TCP connections from the client namespace to one server port stay open (connection_holder, one
# process at each end). Each round, with a fresh daemon, times:
#   list-0     `portcullis flows --json` before the connections open
#   reload-0   `portcullis reload` of the same policy before the connections open: the fixed cost
#   list       `portcullis flows --json` with the N flows open: every flow read back and printed
#   keep       `portcullis reload` to a policy that still allows every flow (its rule changed, a rule added)
#   revoke     `portcullis reload` to a policy that allows none of them: every flow cut (denied in the data plane,
#              its conntrack entry deleted, both ends reset)
# The wall time of the command is taken: a reload returns once the new policy is in force and every open flow has
# been judged. Prints ms per command and us per flow (above the same command with no flow open) per round and over
# all rounds, and the reload log line's flows_checked / flows_revoked.
#
# Usage: bench/service/reload.sh [--flows N] [--rounds R] [--repeat K]
# Environment: FLOWS (2000; at most ~28000, the client's ephemeral ports), ROUNDS (3), REPEAT (5: each command but
# the revoking reload is timed K times a round, and the median taken), PORTCULLIS_BIN (default
# build/userspace/portcullis), CONNECTION_HOLDER (default build/bench/connection_holder). Needs root. Everything
# runs in namespaces of its own, removed on exit.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -- "$0" "$@"; fi
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLOWS=${FLOWS:-2000}
ROUNDS=${ROUNDS:-3}
REPEAT=${REPEAT:-5}
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$src_dir/build/userspace/portcullis}
CONNECTION_HOLDER=${CONNECTION_HOLDER:-$(dirname "$(dirname "$PORTCULLIS_BIN")")/bench/connection_holder}
while [ $# -gt 0 ]; do
  case $1 in
    --flows) FLOWS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for v in FLOWS ROUNDS REPEAT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a number above 0, not '${!v}'" >&2; exit 2; }
done
[ -x "$PORTCULLIS_BIN" ] || { echo "build first: $PORTCULLIS_BIN is missing" >&2; exit 1; }
[ -x "$CONNECTION_HOLDER" ] || { echo "build first: $CONNECTION_HOLDER is missing (ninja connection_holder)" >&2; exit 1; }

# shellcheck source=SCRIPTDIR/../../test/e2e/lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=SCRIPTDIR/../../test/e2e/lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_require jq ss awk || { echo "install them with scripts/setup" >&2; exit 1; }
set -E  # the ERR trap in functions and substitutions too: a failed step says where
trap 'echo "reload.sh: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR
PC_BIN=$PORTCULLIS_BIN
PC_PIN_DIR=/sys/fs/bpf/pc-e2e-bench-reload-$$
pc_trap  # stops the daemon and removes its pins, then the topology, on every exit path
# shellcheck disable=SC2119  # no second client
topo_create >/dev/null
work=$TOPO_LOG_DIR
sock=$work/control.sock
policy=$work/policy.yaml
server_port=9000

write_policy() {  # write_policy allow|keep|revoke
  local rules
  case $1 in
    allow) rules='  - {name: ports, dst: 198.18.0.10, proto: tcp, ports: ["9000-9999"]}' ;;
    keep) rules='  - {name: web, dst: 198.18.0.20, proto: tcp, ports: [443]}
  - {name: ports-kept, dst: 198.18.0.0/24, proto: tcp, ports: ["9000-9099"]}' ;;
    revoke) rules='  - {name: other-ports, dst: 198.18.0.10, proto: tcp, ports: ["8000-8999"]}' ;;
  esac
  cat >"$policy" <<POLICY
version: 1
defaults: {action: deny, on_deny: reject}
rules:
$rules
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
POLICY
}

die() { echo "reload.sh: $*" >&2; exit 1; }
now_us() { echo "${EPOCHREALTIME/./}"; }
control() { "$PORTCULLIS_BIN" "$@" --control "$sock"; }
# The established connections to the server, as the client's kernel sees them.
established() { in_ns client ss -Htn state established "( dport = :$server_port )" | wc -l; }
# Flows of the daemon's table to the server's port that the data plane allows.
allowed_flows() {
  control flows --json | jq -c "select(.dport == $server_port and .verdict == \"allow\")" | wc -l
}

# timed_reload NAME POLICY: one `portcullis reload`, appended to $results as "ROUND NAME us checked revoked".
timed_reload() {
  local t0 t1 line
  write_policy "$2"
  t0=$(now_us)
  control reload >/dev/null || die "portcullis reload ($1) failed"
  t1=$(now_us)
  line=$(grep '"event":"reload"' "$PC_LOG" | tail -n 1)
  [ "$(jq -r .ok <<<"$line")" = true ] || die "the reload log line says it failed: $line"
  echo "$round $1 $((t1 - t0)) $(jq -r '"\(.flows_checked) \(.flows_revoked)"' <<<"$line")" >>"$results"
}

# timed_flows NAME: one `portcullis flows --json`, appended to $results as "ROUND NAME us lines -".
timed_flows() {
  local t0 t1 lines
  t0=$(now_us)
  lines=$(control flows --json | wc -l)
  t1=$(now_us)
  echo "$round $1 $((t1 - t0)) $lines -" >>"$results"
}

topo_start inet holder-server "$CONNECTION_HOLDER" listen "$INET_ALLOWED_V4" "$server_port"
topo_wait_port inet tcp "$INET_ALLOWED_V4" "$server_port"
results=$work/results.txt
: >"$results"

# A daemon per round, so that every round starts from an empty flow table (revoked flows stay in it a while).
for ((round = 1; round <= ROUNDS; round++)); do
  write_policy allow
  pc_start gw "reload-$round" --policy "$policy" --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" \
    --control "$sock"
  for ((i = 0; i < REPEAT; i++)); do timed_flows list-0; done
  for ((i = 0; i < REPEAT; i++)); do timed_reload reload-0 allow; done
  topo_start client "holder-$round" "$CONNECTION_HOLDER" connect "$INET_ALLOWED_V4" "$server_port" "$FLOWS"
  deadline=$((SECONDS + 60))
  until grep -q '^connected' "$work/holder-$round.log" 2>/dev/null; do
    ! grep -q '^connection_holder:' "$work/holder-$round.log" 2>/dev/null || die "$(cat "$work/holder-$round.log")"
    [ "$SECONDS" -lt "$deadline" ] || die "$FLOWS connections not open after 60 s"
    sleep 0.1
  done
  open=$(established)
  [ "$open" -eq "$FLOWS" ] || die "$open of $FLOWS connections established"
  tracked=$(allowed_flows)
  [ "$tracked" -eq "$FLOWS" ] || die "portcullis flows --json lists $tracked allowed flows to port $server_port, not $FLOWS"

  for ((i = 0; i < REPEAT; i++)); do timed_flows list; done
  # Each keeping reload is a new generation: every open flow is judged again.
  for ((i = 0; i < REPEAT; i++)); do timed_reload keep keep; done
  timed_reload revoke revoke
  deadline=$((SECONDS + 5))
  while [ "$(established)" -ne 0 ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  left=$(established)
  [ "$left" -eq 0 ] || echo "note: round $round: $left of $FLOWS connections still established 5 s after the revoking reload"
  topo_stop "holder-$round"
  pc_stop TERM
done

# Every reload with the flows open judged all of them; the revoking one cut all of them.
awk -v n="$FLOWS" '
  $2 == "keep" && ($4 != n || $5 != 0) { print "round " $1 ": keep: checked " $4 ", revoked " $5 " of " n; bad = 1 }
  $2 == "revoke" && ($4 != n || $5 != n) { print "round " $1 ": revoke: checked " $4 ", revoked " $5 " of " n; bad = 1 }
  END { exit bad }' "$results" >&2 || die "a reload did not judge the open flows as it should (above)"

echo "Reload and listing with $FLOWS open TCP flows through the gateway: $ROUNDS rounds, a fresh daemon each;"
echo "wall time of each command in ms, median of $REPEAT (revoke: once a round); -0: before the connections opened"
# us per flow: (list - list-0) / N, (keep - reload-0) / N, (revoke - reload-0) / N, from the medians.
awk -v n="$FLOWS" '
  function median(values, count,   i, j, t) {
    for (i = 2; i <= count; i++) { t = values[i]; for (j = i - 1; j >= 1 && values[j] > t; j--) values[j + 1] = values[j]; values[j + 1] = t }
    return values[int((count + 1) / 2)]
  }
  function med(round, name,   i, k, v) {  # round 0: every round
    k = 0
    for (i = 1; i <= samples; i++) if (sample_name[i] == name && (round == 0 || sample_round[i] == round)) v[++k] = sample_us[i]
    return median(v, k) / 1000
  }
  function row(label, r,   l0, l, r0, k, x) {
    l0 = med(r, "list-0"); l = med(r, "list"); r0 = med(r, "reload-0"); k = med(r, "keep"); x = med(r, "revoke")
    printf "%5s %8.2f %8.2f %9.2f %8.2f %8.2f %13.2f %13.2f %15.2f\n", label, l0, l, r0, k, x,
      (l - l0) * 1000 / n, (k - r0) * 1000 / n, (x - r0) * 1000 / n
  }
  { samples++; sample_round[samples] = $1; sample_name[samples] = $2; sample_us[samples] = $3
    checked[$2] = $4; revoked[$2] = $5; if ($1 > rounds) rounds = $1 }
  END {
    printf "%5s %8s %8s %9s %8s %8s %13s %13s %15s\n", "round", "list-0", "list", "reload-0", "keep", "revoke",
      "list us/flow", "keep us/flow", "revoke us/flow"
    for (r = 1; r <= rounds; r++) row(r, r)
    row("all", 0)
    printf "reload log line: keep: flows_checked %d, flows_revoked %d; revoke: flows_checked %d, flows_revoked %d\n",
      checked["keep"], revoked["keep"], checked["revoke"], revoked["revoke"]
    printf "flows --json: %d lines with the flows open, %d before\n", checked["list"], checked["list-0"]
  }' "$results"
echo "commands:"
echo "  $PORTCULLIS_BIN run --pin-dir $PC_PIN_DIR --log LOG --policy POLICY --mode gateway --inside $GW_INSIDE" \
  "--outside $GW_OUTSIDE --control SOCK   (in the gw namespace)"
echo "  $CONNECTION_HOLDER listen $INET_ALLOWED_V4 $server_port   (inet);" \
  "$CONNECTION_HOLDER connect $INET_ALLOWED_V4 $server_port $FLOWS   (client)"
echo "  $PORTCULLIS_BIN flows --json --control SOCK | wc -l"
echo "  $PORTCULLIS_BIN reload --control SOCK   (POLICY rewritten first: the allowing policy again, then keep, then"
echo "  revoke; see this script's write_policy)"
