#!/usr/bin/env bash
# End-to-end: `portcullis run` as a service, in gateway mode. The control socket (root only) lists the open
# flows with their names, rules, states and counters; metrics scrape with curl and parse; a denied ClientHello
# is in the --pcap-denied capture, as tshark reads it; a reload that removes rules cuts a live TCP stream, a
# live UDP exchange and a QUIC connection within a second and logs why, while a flow the new policy still allows
# goes on; a broken policy is refused with its location and the running one stays; kill -9 leaves the
# enforcement in place and `run` again adopts the open flows without cutting them; SIGTERM removes the socket,
# the pins and the programs.
# Usage: service_test.sh SOURCE_DIR BUILD_DIR   (root; exit 77 = skipped)
set -euo pipefail
src_dir=${1:?usage: $0 SOURCE_DIR BUILD_DIR}
build_dir=${2:?usage: $0 SOURCE_DIR BUILD_DIR}

# shellcheck source=lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_skip_unless_ready ip socat openssl curl setsid timeout nsenter gtlsserver gtlsclient tshark jq
PC_BIN=$build_dir/userspace/portcullis
PC_TCX_PROGRAMS=$build_dir/test/portcullis_tcx_programs
policies=$src_dir/test/e2e/policies
pc_trap

topo_create
policy=$TOPO_LOG_DIR/policy.yaml
cp "$policies/service.yaml" "$policy"
sock=$TOPO_LOG_DIR/control.sock
denied_pcap=$TOPO_LOG_DIR/denied.pcap
metrics=127.0.0.1:9464
run_args=(--policy "$policy" --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" --control "$sock"
  --metrics "$metrics" --pcap-denied "$denied_pcap")

cert=$TOPO_LOG_DIR/cert.pem key=$TOPO_LOG_DIR/key.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$key" -out "$cert" -days 1 -subj /CN=allowed.test \
  -addext "subjectAltName=DNS:allowed.test,DNS:evil.test" 2>/dev/null
for addr in "$INET_ALLOWED_V4" "$INET_EVIL_V4"; do
  topo_start inet "tls-$addr" openssl s_server -accept "$addr:443" -cert "$cert" -key "$key" -www -quiet
  topo_wait_port inet tcp "$addr" 443
done
htdocs=$TOPO_LOG_DIR/htdocs
mkdir -p "$htdocs" && echo "hello over quic" >"$htdocs/index.html"
topo_start inet quic-server gtlsserver -q -d "$htdocs" "$INET_ALLOWED_V4" 443 "$key" "$cert"
topo_wait_port inet udp "$INET_ALLOWED_V4" 443
for port in 9000 9001; do topo_serve_tcp_echo inet "$INET_ALLOWED_V4" "$port"; done
topo_serve_udp_echo inet "$INET_ALLOWED_V4" 7000
topo_set_hosts client "$INET_ALLOWED_V4 allowed.test"

control() { "$PC_BIN" "$@" --control "$sock"; }
lines_of() { wc -l <"$1" 2>/dev/null || echo 0; }
# A conversation that goes on until something cuts it: a line every 100 ms through socat, every answer into
# OUT; when socat ends, the time (ms) goes into OUT.end.
converse() {  # converse NAME tcp|udp PORT OUT
  # shellcheck disable=SC2016  # expanded by the inner bash
  topo_start client "$1" bash -c 'i=0; while :; do echo "line $i"; i=$((i + 1)); sleep 0.1; done |
    socat -t 1 - "$1:$2:$3" >"$4"; t=${EPOCHREALTIME/./}; echo $((t / 1000)) >"$4.end"' _ \
    "${2^^}" "$INET_ALLOWED_V4" "$3" "$4"
}
growing() {  # growing FILE: more lines arrive in it within a second
  local before
  before=$(lines_of "$1")
  sleep 1
  [ "$(lines_of "$1")" -gt "$before" ] || { echo "$1 stays at $before lines"; return 1; }
}
ended_within() {  # ended_within FILE T0 MS: the conversation writing FILE ended less than MS after T0
  local deadline=$((SECONDS + 5))
  while [ ! -s "$1.end" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "still going 5 s later"; return 1; }
    sleep 0.05
  done
  local took=$(($(cat "$1.end") - $2))
  [ "$took" -lt "$3" ] || { echo "ended $took ms after the reload"; return 1; }
}

pc_start gw service "${run_args[@]}"

echo "== the control socket"
expect_eq "it is root's alone" "$(stat -c '%a %U %F' "$sock")" "600 root socket"
out=$(control stats)
expect_eq "stats answers one JSON object" "$(jq -r '.event + " " + .mode' <<<"$out")" "stats gateway"

echo "== open flows, listed with their names"
stream=$TOPO_LOG_DIR/stream.out kept=$TOPO_LOG_DIR/kept.out udp=$TOPO_LOG_DIR/udp.out
converse stream tcp 9000 "$stream"
converse kept tcp 9001 "$kept"
converse udp udp 7000 "$udp"
dl=$TOPO_LOG_DIR/quic-dl
mkdir -p "$dl"
# No exit when the download is done: the connection stays open (idle) until the reload cuts it.
topo_start client quic-client gtlsclient -q --timeout=60s --download="$dl" allowed.test 443 \
  "https://allowed.test/index.html"
expect_ok "the QUIC connection is decided" pc_log_line '"l7":"quic"' '"name":"allowed.test"' '"verdict":"allow"'
expect_ok "the TCP stream flows" growing "$stream"
expect_ok "the UDP exchange flows" growing "$udp"
flows=$(control flows)
expect_match "flows: the TCP stream, its rule and state" "$flows" \
  "^tcp 10\.88\.1\.2:[0-9]+ -> 198\.18\.0\.10:9000 none allow rule=stream reason=rule established out=[0-9]+/"
expect_match "flows: the UDP exchange" "$flows" \
  "^udp 10\.88\.1\.2:[0-9]+ -> 198\.18\.0\.10:7000 none allow rule=udp-echo reason=rule replied .* group=sandbox"
expect_match "flows: the QUIC connection with its name" "$flows" \
  "^udp 10\.88\.1\.2:[0-9]+ -> 198\.18\.0\.10:443 quic allowed.test allow rule=web reason=rule replied"
json=$(control flows --json --group sandbox)
expect_eq "flows --json: objects with counters" \
  "$(jq -r 'select(.dport == 9000) | [.verdict, .rule, .state, (.bytes_in > 0)] | join(" ")' <<<"$json")" \
  "allow stream established true"
expect_eq "flows --group of another group lists nothing, and succeeds" "$(control flows --group nobody; echo "exit $?")" \
  "exit 0"

echo "== metrics"
scrape=$(in_ns gw curl -s --max-time 5 "http://$metrics/metrics")
expect_match "verdicts by rule, reason and proto" "$scrape" \
  '^portcullis_verdicts_total\{verdict="allow",rule="stream",reason="rule",proto="tcp"\} 1$'
expect_match "the flow table by state" "$scrape" '^portcullis_flows\{state="established"\} [1-9]'
expect_match "the punt-to-verdict histogram" "$scrape" '^portcullis_punt_to_verdict_seconds_bucket\{le="\+Inf"\} [1-9]'
expect_match "the parsers' outcomes" "$scrape" '^portcullis_parser_outcomes_total\{parser="quic",outcome="found",reason=""\} [1-9]'
bad=$(grep -vE '^(# (HELP|TYPE) .*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? ([0-9.e+-]+|\+Inf|NaN))$' \
  <<<"$scrape" || true)
expect_eq "every line is Prometheus text" "$bad" ""
expect_eq "another path is 404" "$(in_ns gw curl -s -o /dev/null -w '%{http_code}' "http://$metrics/")" 404

echo "== the denied ClientHello, captured"
code=$(in_ns client curl -sk --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' \
  --resolve "evil.test:443:$INET_EVIL_V4" https://evil.test/) || true
expect_eq "https to evil.test is refused" "$code" 000
expect_log "and logged" '"name":"evil.test"' '"verdict":"deny"'
sni=$(tshark -r "$denied_pcap" -Y tls.handshake.type==1 -T fields -e tls.handshake.extensions_server_name 2>/dev/null)
expect_eq "tshark reads its SNI from --pcap-denied" "$sni" evil.test

echo "== a broken policy is refused; the running one stays"
printf 'version: 1\nrules:\n  - {dst: allowed.test, proto: nonsense}\n' >"$policy"
rc=0
out=$(control reload 2>&1) || rc=$?
expect_eq "reload exits 1" "$rc" 1
expect_match "with the error's location" "$out" "policy.yaml:3:[0-9]+: error: "
expect_ok "the stream goes on" growing "$stream"

echo "== a reload that removes rules cuts their open flows within a second"
cp "$policies/service_reloaded.yaml" "$policy"
t0=$(pc_now_ms)
rc=0
out=$(control reload 2>&1) || rc=$?
expect_eq "reload exits 0" "$rc" 0
expect_match "it says what it revoked" "$out" "in force; [3-9] of [4-9] open flows revoked"
expect_ok "the TCP stream is cut" ended_within "$stream" "$t0" 1000
expect_ok "the UDP exchange is cut" ended_within "$udp" "$t0" 1000
expect_log "the TCP stream's revocation is logged" '"dport":9000' '"verdict":"deny"' '"reason":"revoked"' \
  '"revoked_by":"denied-by-default"'
expect_log "so is the UDP exchange's" '"dport":7000' '"reason":"revoked"'
expect_log "and the QUIC connection's, with its name" '"l7":"quic"' '"name":"allowed.test"' '"reason":"revoked"'
expect_ok "the stream the new policy allows goes on" growing "$kept"
flows=$(control flows)
expect_match "under the new policy's rule" "$flows" "198\.18\.0\.10:9001 none allow rule=kept-stream-renamed"
expect_match "the QUIC flow is listed as revoked" "$flows" "198\.18\.0\.10:443 quic allowed.test deny reason=revoked"
expect_fail "a new connection to 9000 is refused" topo_tcp_roundtrip client "$INET_ALLOWED_V4" 9000 again

echo "== kill -9, and run again: the open flow is adopted, not cut"
pc_stop KILL
expect_ok "with no daemon the stream goes on" growing "$kept"
pc_start gw service-again "${run_args[@]}"
expect_log "the ready line counts the adopted flows" '"event":"ready"' '"adopted":true' '"flows_adopted":'
expect_eq "the control socket is back" "$(stat -c '%a %F' "$sock")" "600 socket"
expect_eq "flows lists the open stream as adopted" \
  "$(control flows --json | jq -r 'select(.dport == 9001) | [.verdict, .rule, .adopted] | join(" ")')" \
  "allow kept-stream-renamed true"
expect_ok "and it goes on" growing "$kept"

code=$(in_ns client curl -sk --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' \
  --resolve "evil.test:443:$INET_EVIL_V4" https://evil.test/) || true
expect_eq "another denial after the restart" "$code" 000
# Without an https rule the data plane denies it at its SYN: the SYN is what the capture gets.
expect_eq "the capture keeps the denials of before the restart and adds this one" \
  "$(tshark -r "$denied_pcap" -T fields -e ip.dst -e tcp.dstport -e tcp.flags.syn \
    -e tls.handshake.extensions_server_name 2>/dev/null | tr '\t' ' ')" \
  "$(printf '%s\n' "$INET_EVIL_V4 443 0 evil.test" "$INET_ALLOWED_V4 9000 1 " "$INET_EVIL_V4 443 1 ")"

echo "== SIGTERM removes everything"
pc_stop TERM
expect_eq "the daemon exits 0" "$PC_EXIT" 0
expect_fail "the control socket is gone" test -e "$sock"
expect_fail "the pins are gone" test -e "$PC_PIN_DIR"
expect_ok "the programs are gone" pc_no_programs gw "$GW_INSIDE" "$GW_OUTSIDE"

report
