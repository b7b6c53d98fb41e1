#!/usr/bin/env bash
# End-to-end: name rules through punt and hold, in gateway or host mode. Real clients (curl, openssl s_client,
# a client that splits its ClientHello into 1-byte records and 7-byte segments, TCP Fast Open) and servers
# (openssl s_server, an HTTP server, a TCP echo) over IPv4 and IPv6: the name each flow shows (TLS SNI on 443
# and another port, HTTP Host, an SSH banner) decides it; denied flows are reset at once; non-TLS bytes on a
# tls rule, a ClientHello without SNI to a name rule, and a client that shows nothing in time are denied; the
# log has one line per decision with l7 and name; and no allowed connection needs a retransmission.
# Usage: names_test.sh SOURCE_DIR BUILD_DIR gateway|host   (root; exit 77 = skipped)
set -euo pipefail
src_dir=${1:?usage: $0 SOURCE_DIR BUILD_DIR gateway|host}
build_dir=${2:?usage: $0 SOURCE_DIR BUILD_DIR gateway|host}
mode=${3:?usage: $0 SOURCE_DIR BUILD_DIR gateway|host}

# shellcheck source=lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_skip_unless_ready ip socat openssl curl setsid timeout nsenter gtlsserver gtlsclient
PC_BIN=$build_dir/userspace/portcullis
split_client=$build_dir/test/portcullis_tls_split_client
[ -x "$split_client" ] || { echo "FAIL: $split_client is not built"; exit 1; }
pc_trap

if [ "$mode" = gateway ]; then
  topo_create
  fw_ns=gw
  run_args=(--mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE")
else
  topo_create_host_mode
  fw_ns=client
  run_args=(--mode host --iface "$CLIENT_IF")
fi

# TCP Fast Open: the client puts data in its SYN without waiting for a cookie; inet's listeners take it.
in_ns client sysctl -qw net.ipv4.tcp_fastopen=5
in_ns inet sysctl -qw net.ipv4.tcp_fastopen=0x602

cert=$TOPO_LOG_DIR/cert.pem key=$TOPO_LOG_DIR/key.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$key" -out "$cert" -days 1 -subj /CN=allowed.test \
  -addext "subjectAltName=DNS:allowed.test,DNS:evil.test" 2>/dev/null
serve_tls() {  # serve_tls ADDR PORT
  local listen=$1:$2
  case $1 in *:*) listen="[$1]:$2" ;; esac
  topo_start inet "tls-$1-$2" openssl s_server -accept "$listen" -cert "$cert" -key "$key" -www -quiet
  topo_wait_port inet tcp "$1" "$2"
}
serve_tls "$INET_ALLOWED_V4" 443
serve_tls "$INET_ALLOWED_V6" 443
serve_tls "$INET_ALLOWED_V4" 8443
serve_tls "$INET_ALLOWED_V4" 9443
serve_tls "$INET_EVIL_V4" 9443
serve_tls "$INET_EVIL_V6" 9443
topo_serve_http inet "$INET_ALLOWED_V4" 80
topo_serve_tcp_echo inet "$INET_ALLOWED_V4" 22
# A sink on the IPv6 address's SSH port: what one connection sends, into a file.
sink=$TOPO_LOG_DIR/sink.bin
topo_start inet ssh-sink socat -u "TCP6-LISTEN:22,bind=[$INET_ALLOWED_V6],reuseaddr" "OPEN:$sink,creat,trunc"
topo_wait_port inet tcp "$INET_ALLOWED_V6" 22
# QUIC: ngtcp2's example server, HTTP/3 over v1 and v2 (draft version 0x709a50c4, all Debian 12's ngtcp2 has).
htdocs=$TOPO_LOG_DIR/htdocs
mkdir -p "$htdocs" && echo "hello over quic" >"$htdocs/index.html"
topo_start inet quic-server gtlsserver -q -d "$htdocs" "$INET_ALLOWED_V4" 443 "$key" "$cert"
topo_wait_port inet udp "$INET_ALLOWED_V4" 443
# gtlsclient sends as SNI the name it was given to connect to, so the client resolves these names locally.
topo_set_hosts client "$INET_ALLOWED_V4 allowed.test" "$INET_ALLOWED_V4 evil.test" "$INET_ALLOWED_V4 other.test"

https_get() {  # https_get NAME ADDR [PORT]: the status code curl got
  local port=${3:-443} a=$2
  case $a in *:*) a="[$a]" ;; esac
  in_ns client curl -sk --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' \
    --resolve "$1:$port:$a" "https://$1:$port/"
}
http_get() {  # http_get HOST ADDR
  in_ns client curl -s --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' --resolve "$1:80:$2" "http://$1/"
}
refused_fast() {  # refused_fast CMD...: fails, and within a second (a reset, not a timeout)
  local t0 t1 out
  t0=$(pc_now_ms)
  if out=$("$@" 2>&1); then echo "succeeded: $out"; return 1; fi
  t1=$(pc_now_ms)
  [ $((t1 - t0)) -lt 1000 ] || { echo "refused only after $((t1 - t0)) ms"; return 1; }
}
retransmissions() {  # TCP segments the client namespace has retransmitted so far
  in_ns client awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) col[$i] = i; h = 1 } else print $col["RetransSegs"] }' \
    /proc/net/snmp
}
split() { in_ns client "$split_client" "$@"; }
quic_get() {  # quic_get NAME [gtlsclient options]: index.html over HTTP/3 arrives whole (the client exits 0 anyway)
  local name=$1 dl
  shift
  dl=$(mktemp -d "$TOPO_LOG_DIR/dl.XXXXXX")
  in_ns client timeout 20 gtlsclient -q --exit-on-all-streams-close --handshake-timeout=3s --download="$dl" "$@" \
    "$name" 443 "https://$name/index.html" >/dev/null 2>&1 || true
  cmp -s "$dl/index.html" "$htdocs/index.html"
}

# Gateway mode: what the client sent and got, recorded on its side, for replay to decide again below. (In host
# mode a capture on the uplink misses the frames portcullis holds there.)
client_pcap=$TOPO_LOG_DIR/client.pcap
if [ "$mode" = gateway ]; then
  topo_start client capture tcpdump -U --immediate-mode -B 65536 -i "$CLIENT_IF" -w "$client_pcap" 'ip or ip6'
  sleep 0.5
fi
pc_start "$fw_ns" names --policy "$src_dir/test/e2e/policies/names.yaml" "${run_args[@]}"

echo "== allowed names pass, and need no retransmission ($mode mode)"
retrans_before=$(retransmissions)
expect_eq "https to allowed.test (TLS 1.3, curl)" "$(https_get allowed.test "$INET_ALLOWED_V4")" 200
expect_eq "https to allowed.test over IPv6" "$(https_get allowed.test "$INET_ALLOWED_V6")" 200
expect_eq "TLS to allowed.test on another port, 8443" "$(https_get allowed.test "$INET_ALLOWED_V4" 8443)" 200
expect_ok "TLS 1.2 (openssl s_client)" bash -c "echo | ip netns exec '$NS_CLIENT' timeout 5 openssl s_client \
  -connect $INET_ALLOWED_V4:443 -servername allowed.test -tls1_2 -brief 2>&1 | grep -q 'Protocol version: TLSv1.2'"
expect_ok "TLS 1.3 (openssl s_client)" bash -c "echo | ip netns exec '$NS_CLIENT' timeout 5 openssl s_client \
  -connect $INET_ALLOWED_V4:443 -servername allowed.test -tls1_3 -brief 2>&1 | grep -q 'Protocol version: TLSv1.3'"
# Held segments are not acknowledged, so a ClientHello must fit the client's initial congestion window (10
# segments on Linux): 313 one-byte records (1878 bytes) in 8 segments do.
expect_ok "a ClientHello in 1-byte records, 256-byte segments" \
  split --connect "$INET_ALLOWED_V4" --port 443 --sni allowed.test --record-size 1 --segment-size 256 --delay-ms 1
expect_ok "a ClientHello in 100-byte records, one per segment" \
  split --connect "$INET_ALLOWED_V4" --port 443 --sni allowed.test --record-size 100 --segment-size 105
expect_ok "the ClientHello in the SYN (TCP Fast Open)" \
  split --connect "$INET_ALLOWED_V4" --port 443 --sni allowed.test --tfo
expect_ok "TCP Fast Open was used" bash -c "ip netns exec '$NS_CLIENT' nstat -az TcpExtTCPFastOpenActive \
  | awk '/TCPFastOpenActive/ { exit !(\$2 > 0) }'"
expect_eq "http to allowed.test (Host)" "$(http_get allowed.test "$INET_ALLOWED_V4")" 200
expect_match "an SSH banner to the ssh rule" \
  "$(printf 'SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n' | in_ns client timeout 5 socat -t 1 - "TCP:$INET_ALLOWED_V4:22")" \
  "^SSH-2.0-OpenSSH_9.2p1"
expect_ok "no SNI to an address rule" split --connect "$INET_EVIL_V4" --port 9443 --no-sni
expect_ok "no SNI to an address rule, IPv6" split --connect "$INET_EVIL_V6" --port 9443 --no-sni
expect_eq "no allowed connection needed a retransmission" "$(($(retransmissions) - retrans_before))" 0
# The banner and 4 MiB behind it in one write: the first data the client sends are GSO super-packets, held
# with whatever follows them while the banner is read, then released in order; the server gets every byte.
upload=$TOPO_LOG_DIR/upload.bin
retrans_before=$(retransmissions)
{ printf 'SSH-2.0-OpenSSH_9.2p1\r\n'; head -c 4194304 /dev/urandom; } >"$upload"
in_ns client timeout 10 socat -u -b 262144 "OPEN:$upload" "TCP:[$INET_ALLOWED_V6]:22" || true
for _ in $(seq 50); do [ "$(stat -c %s "$sink")" -ge "$(stat -c %s "$upload")" ] && break; sleep 0.1; done
expect_eq "4 MiB right behind an SSH banner arrive whole (GSO, held frames in order)" \
  "$(sha256sum <"$sink" | cut -d' ' -f1)" "$(sha256sum <"$upload" | cut -d' ' -f1)"
echo "   (the upload took $(($(retransmissions) - retrans_before)) retransmissions: bulk data may meet a straggler)"

echo "== QUIC: the SNI of the Initials decides"
expect_ok "HTTP/3 to allowed.test over QUIC v1" quic_get allowed.test
expect_ok "HTTP/3 to allowed.test over QUIC v2" quic_get allowed.test -v v2draft
expect_fail "HTTP/3 to evil.test" quic_get evil.test
expect_fail "HTTP/3 to a name no rule allows" quic_get other.test
expect_log "QUIC v1 allowed by its SNI" '"proto":"udp"' '"l7":"quic"' '"name":"allowed.test"' '"verdict":"allow"' \
  '"rule":"allowed-https"'
expect_log "QUIC evil denied by rule" '"proto":"udp"' '"l7":"quic"' '"name":"evil.test"' '"reason":"denied-by-rule"'
expect_log "QUIC other denied by default" '"l7":"quic"' '"name":"other.test"' '"reason":"denied-by-default"'

echo "== denied names are reset at once"
expect_ok "https to evil.test (denied by rule)" refused_fast https_get evil.test "$INET_ALLOWED_V4"
expect_ok "https to a name no rule allows" refused_fast https_get other.test "$INET_ALLOWED_V4"
expect_ok "evil.test in 1-byte records" refused_fast \
  split --connect "$INET_ALLOWED_V4" --port 443 --sni evil.test --record-size 1 --segment-size 256 --delay-ms 1
expect_ok "http with Host evil.test" refused_fast http_get evil.test "$INET_ALLOWED_V4"
expect_ok "allowed.test on a port its rules do not name" refused_fast https_get allowed.test "$INET_ALLOWED_V4" 9443
expect_ok "HTTP bytes on a tls rule" refused_fast \
  split --connect "$INET_EVIL_V4" --port 9443 --send-raw "$(printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' | od -An -tx1 | tr -d ' \n')"
expect_ok "bytes that are no SSH banner on the ssh rule" refused_fast \
  split --connect "$INET_ALLOWED_V4" --port 22 --send-raw 48454c4c4f0d0a
expect_ok "no SNI to a name rule" refused_fast split --connect "$INET_ALLOWED_V4" --port 443 --no-sni

echo "== a client that shows nothing in time is denied"
# A ClientHello in 7-byte segments needs more than the initial window: the client stalls, nothing is read.
t0=$(pc_now_ms)
expect_ok "a ClientHello cut finer than the initial window is denied" \
  split --connect "$INET_ALLOWED_V4" --port 443 --sni allowed.test --record-size 1 --segment-size 7 --expect-close
t1=$(pc_now_ms)
expect_ok "... at l7_timeout_ms" test $((t1 - t0)) -ge 900 -a $((t1 - t0)) -lt 3000
t0=$(pc_now_ms)
out=$(split --connect "$INET_ALLOWED_V4" --port 443 --send-raw 16 --timeout-ms 4000 || true)
t1=$(pc_now_ms)
expect_match "the connection is reset" "$out" "reset|closed"
expect_ok "after l7_timeout_ms (1000), not before" test $((t1 - t0)) -ge 900 -a $((t1 - t0)) -lt 3000

echo "== one log line per decision, with what the flow showed"
expect_log "allowed https" '"l7":"tls"' '"name":"allowed.test"' '"verdict":"allow"' '"rule":"allowed-https"'
expect_log "TLS on 8443" '"dport":8443' '"l7":"tls"' '"verdict":"allow"' '"rule":"allowed-tls-8443"'
expect_log "IPv6" '"dst":"2001:db8::10"' '"l7":"tls"' '"verdict":"allow"'
expect_log "http" '"l7":"http"' '"name":"allowed.test"' '"rule":"allowed-http"'
expect_log "ssh" '"l7":"ssh"' '"rule":"git-ssh"' '"verdict":"allow"'
expect_log "no SNI, by address" '"l7":"tls"' '"name":null' '"rule":"tls-by-address"'
expect_log "evil by rule" '"name":"evil.test"' '"verdict":"deny"' '"rule":"no-evil"' '"reason":"denied-by-rule"'
expect_log "other by default" '"name":"other.test"' '"verdict":"deny"' '"reason":"denied-by-default"'
expect_log "HTTP bytes on a tls rule" '"dport":9443' '"l7":"http"' '"verdict":"deny"' '"reason":"denied-by-default"'
expect_log "no banner" '"dport":22' '"l7":"none"' '"verdict":"deny"' '"reason":"l7-mismatch"'
expect_log "timeout" '"verdict":"deny"' '"reason":"l7-timeout"'

if [ "$mode" = gateway ]; then
  echo "== replay of the client's capture decides every flow as the live run did"
  sleep 0.5
  topo_stop capture
  # proto src sport dst dport l7 name verdict rule, from the live log and from replay's JSON lines.
  flow_fields='s/.*"proto":"\([^"]*\)","src":"\([^"]*\)","sport":\([^,]*\),"dst":"\([^"]*\)","dport":\([^,]*\),.*"l7":"\([^"]*\)","name":\([^,]*\),"verdict":"\([^"]*\)","rule":\([^,]*\),.*/\1 \2 \3 \4 \5 \6 \7 \8 \9/p'
  live=$(grep '"event":"verdict"' "$PC_LOG" | grep -v '"reason":"no-daemon"' | sed -n "$flow_fields" | sort -u)
  replayed=$("$PC_BIN" replay --policy "$src_dir/test/e2e/policies/names.yaml" --mode gateway --format json \
    "$client_pcap" 2>/dev/null | sed -n "$flow_fields" | sort -u)
  expect_ok "the capture holds the run's flows" test "$(wc -l <<<"$live")" -ge 20
  missing=$(comm -23 <(echo "$live") <(echo "$replayed"))
  expect_eq "every live verdict, replayed (flows whose verdict differs or that replay lacks)" "$missing" ""
fi

echo "== no daemon: pending flows are denied (fail closed)"
pc_stop KILL
sleep 2.5  # the data plane takes a daemon for gone after 2 s without a heartbeat
expect_ok "https to allowed.test is reset at once" refused_fast https_get allowed.test "$INET_ALLOWED_V4"
pc_start "$fw_ns" names-again --policy "$src_dir/test/e2e/policies/names.yaml" "${run_args[@]}"
expect_log "the refusal is logged (by the next daemon) as no-daemon" '"verdict":"deny"' '"reason":"no-daemon"'
expect_eq "run again adopts the data plane, and names pass again" "$(https_get allowed.test "$INET_ALLOWED_V4")" 200
pc_stop
expect_log "the restarted daemon stopped cleanly" '"event":"stopped"' '"send_errors":0'
report
