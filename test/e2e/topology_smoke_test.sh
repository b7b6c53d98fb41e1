#!/usr/bin/env bash
# End-to-end smoke test of test/e2e/lib/topology.sh, with no firewall: the gateway and host-mode topologies
# carry ping, TCP, UDP and HTTP over IPv4 and IPv6 with real tools, nothing in them has a route off the box,
# and every exit path (normal, error, INT, TERM) leaves no namespace and no process behind.
# Usage: topology_smoke_test.sh SOURCE_DIR [BUILD_DIR]   (root; exit 77 = skipped)
set -euo pipefail
src_dir=${1:?usage: $0 SOURCE_DIR [BUILD_DIR]}
# BUILD_DIR ($2) is not needed yet: no portcullis binary takes part in this test.

# shellcheck source=SCRIPTDIR/lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
topo_skip_unless_ready ip ss socat nc ping curl setsid timeout dd
topo_trap

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# links_are_private ROLE: every link in the namespace is lo or a veth whose peer is in a namespace of this run.
links_are_private() {
  local ns line bad=0
  ns=$(topo_ns "$1")
  while IFS= read -r line; do
    case $line in
      *" lo: "*) ;;
      *" veth "*"link-netns $TOPO_PREFIX"* | *"link-netns $TOPO_PREFIX"*" veth "*) ;;
      *) echo "unexpected link in $ns: ${line:0:120}"; bad=1 ;;
    esac
  done < <(ip -n "$ns" -o -d link show)
  return "$bad"
}

# no_route ROLE ADDR: the namespace has no route to ADDR (asked of the routing table; nothing is sent).
no_route() { ! in_ns "$1" ip route get "$2" >/dev/null 2>&1; }

# refused_fast ROLE ADDR PORT: a TCP connect gets ECONNREFUSED, in under a second.
refused_fast() {
  local out t0 t1
  t0=$(now_ms)
  if out=$(in_ns "$1" nc -vz -w 3 "$2" "$3" 2>&1); then
    echo "connected: $out"
    return 1
  fi
  t1=$(now_ms)
  grep -q "Connection refused" <<<"$out" || { echo "not refused: $out"; return 1; }
  [ $((t1 - t0)) -lt 1000 ] || { echo "refused only after $((t1 - t0)) ms"; return 1; }
}

sysctl_in() { in_ns "$1" sysctl -n "$2"; }

# ---- gateway topology ------------------------------------------------------------------------------------
echo "== gateway mode"
topo_create --client2
expect_eq "four namespaces of this run" "$(topo_own_namespaces | wc -l)" 4

for ns in client client2 gw inet; do
  expect_ok "$ns: only lo and veths to namespaces of this run" links_are_private "$ns"
done
expect_eq "gw forwards IPv4" "$(sysctl_in gw net.ipv4.ip_forward)" 1
expect_eq "gw forwards IPv6" "$(sysctl_in gw net.ipv6.conf.all.forwarding)" 1
for ns in client client2 inet; do
  expect_eq "$ns does not forward" \
    "$(sysctl_in "$ns" net.ipv4.ip_forward)$(sysctl_in "$ns" net.ipv6.conf.all.forwarding)" 00
done

# No way off the box: gw and inet have no default route; the client's only way out is gw.
for ns in gw inet; do
  expect_eq "$ns has no default route" \
    "$(in_ns "$ns" ip route show default)$(in_ns "$ns" ip -6 route show default)" ""
  expect_ok "$ns has no route to 1.1.1.1" no_route "$ns" 1.1.1.1
  expect_ok "$ns has no route to 2606:4700:4700::1111" no_route "$ns" 2606:4700:4700::1111
done
expect_match "client reaches 1.1.1.1 only through gw" "$(in_ns client ip route get 1.1.1.1)" \
  "via $GW_INSIDE_V4 dev $CLIENT_IF"
expect_match "client reaches 2606:4700:4700::1111 only through gw" \
  "$(in_ns client ip -6 route get 2606:4700:4700::1111)" "via $GW_INSIDE_V6 dev $CLIENT_IF"
expect_eq "client has no other routes" "$(in_ns client ip route show | grep -vc -e '^default via 10.88.1.1 ' \
  -e '^10.88.1.0/24 ')" 0

# Servers in inet.
topo_serve_tcp_echo inet "$INET_ALLOWED_V4" 7
topo_serve_tcp_echo inet "$INET_ALLOWED_V6" 7
topo_serve_udp_echo inet "$INET_ALLOWED_V4" 7
topo_serve_udp_echo inet "$INET_ALLOWED_V6" 7
topo_serve_http inet "$INET_EVIL_V4" 80 "hello from evil.test"
topo_serve_http inet "$INET_EVIL_V6" 80 "hello from evil.test over IPv6"
topo_serve_tcp_banner inet "$INET_FTP_V4" 2121 "220 banner"

expect_ok "ping client -> $INET_ALLOWED_V4" in_ns client ping -c 1 -W 2 "$INET_ALLOWED_V4"
expect_ok "ping -6 client -> $INET_ALLOWED_V6" in_ns client ping -6 -c 1 -W 2 "$INET_ALLOWED_V6"
expect_ok "ping client2 -> $INET_DNS_V4" in_ns client2 ping -c 1 -W 2 "$INET_DNS_V4"
expect_ok "ping -6 client2 -> $INET_DNS_V6" in_ns client2 ping -6 -c 1 -W 2 "$INET_DNS_V6"
expect_ok "ping inet -> client (return route)" in_ns inet ping -c 1 -W 2 "$CLIENT_V4"
expect_ok "ping -6 inet -> client2 (return route)" in_ns inet ping -6 -c 1 -W 2 "$CLIENT2_V6"

expect_eq "TCP echo over IPv4" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 7 tcp4 2>&1)" tcp4
expect_eq "TCP echo over IPv6" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V6" 7 tcp6 2>&1)" tcp6
expect_eq "UDP echo over IPv4" "$(topo_udp_roundtrip client "$INET_ALLOWED_V4" 7 udp4 2>&1)" udp4
expect_eq "UDP echo over IPv6" "$(topo_udp_roundtrip client "$INET_ALLOWED_V6" 7 udp6 2>&1)" udp6
expect_eq "UDP echo from client2" "$(topo_udp_roundtrip client2 "$INET_ALLOWED_V6" 7 c2 2>&1)" c2
expect_eq "HTTP over IPv4 (curl)" \
  "$(in_ns client curl --noproxy '*' -sS -m 5 "http://$INET_EVIL_V4/" 2>&1)" "hello from evil.test"
expect_eq "HTTP over IPv6 (curl)" \
  "$(in_ns client curl --noproxy '*' -sS -m 5 -g "http://[$INET_EVIL_V6]/" 2>&1)" "hello from evil.test over IPv6"
expect_eq "TCP banner (nc)" "$(in_ns client nc -w 3 "$INET_FTP_V4" 2121 </dev/null 2>&1)" "220 banner"

expect_ok "closed TCP port: ECONNREFUSED at once (IPv4)" refused_fast client "$INET_ALLOWED_V4" 9
expect_ok "closed TCP port: ECONNREFUSED at once (IPv6)" refused_fast client "$INET_ALLOWED_V6" 9
TOPO_WAIT_TIMEOUT=1 expect_fail "topo_wait_port gives up on a port nobody listens on" \
  topo_wait_port inet tcp "$INET_ALLOWED_V4" 9
topo_stop "tcp-echo-$INET_ALLOWED_V4-7"
expect_ok "topo_stop: the stopped echo server now refuses" refused_fast client "$INET_ALLOWED_V4" 7

topo_set_resolver client "$INET_DNS_V4"
expect_eq "topo_set_resolver: the client's resolv.conf names only the inet resolver" \
  "$(in_ns client grep -c nameserver /etc/resolv.conf)$(in_ns client grep -c "$INET_DNS_V4" /etc/resolv.conf)" 11

pids=("${TOPO_PIDS[@]}")
resolv_dir=/etc/netns/$NS_CLIENT
topo_destroy
expect_eq "gateway: no namespace left after topo_destroy" "$(topo_own_namespaces)" ""
expect_eq "gateway: no server process left after topo_destroy" "$(ps -o pid= -p "$(IFS=,; echo "${pids[*]}")" || true)" ""
expect_ok "gateway: resolv.conf override removed" test ! -e "$resolv_dir"
topo_destroy
expect_eq "topo_destroy twice is harmless" "$(topo_own_namespaces)" ""

# ---- host mode -------------------------------------------------------------------------------------------
echo "== host mode"
topo_create_host_mode
expect_eq "two namespaces of this run" "$(topo_own_namespaces | wc -l)" 2
for ns in client inet; do
  expect_ok "$ns: only lo and veths to namespaces of this run" links_are_private "$ns"
  expect_eq "$ns does not forward" \
    "$(sysctl_in "$ns" net.ipv4.ip_forward)$(sysctl_in "$ns" net.ipv6.conf.all.forwarding)" 00
done
expect_eq "inet has no default route" "$(in_ns inet ip route show default)$(in_ns inet ip -6 route show default)" ""
expect_ok "inet has no route to 1.1.1.1" no_route inet 1.1.1.1
expect_ok "inet has no route to 2606:4700:4700::1111" no_route inet 2606:4700:4700::1111
topo_serve_tcp_echo inet "$INET_ALLOWED_V6" 7
topo_serve_udp_echo inet "$INET_ALLOWED_V4" 7
expect_ok "host mode: ping client -> $INET_ALLOWED_V4" in_ns client ping -c 1 -W 2 "$INET_ALLOWED_V4"
expect_ok "host mode: ping -6 client -> $INET_ALLOWED_V6" in_ns client ping -6 -c 1 -W 2 "$INET_ALLOWED_V6"
expect_eq "host mode: TCP echo over IPv6" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V6" 7 h6 2>&1)" h6
expect_eq "host mode: UDP echo over IPv4" "$(topo_udp_roundtrip client "$INET_ALLOWED_V4" 7 h4 2>&1)" h4
expect_ok "host mode: closed port refused at once" refused_fast client "$INET_ALLOWED_V6" 9
topo_destroy
expect_eq "host mode: no namespace left" "$(topo_own_namespaces)" ""

# ---- cleanup on every exit path (each in a subshell with its own trap) ---------------------------------------
echo "== cleanup on exit paths"
scratch=$(mktemp -d)
# A separate bash per case: set -e must hold in it, which it would not in a subshell called from `||`.
# shellcheck disable=SC2016  # expanded by the inner bash
exit_path_script='
  set -euo pipefail
  . "$1/test/e2e/lib/topology.sh"
  topo_trap
  topo_create 2>/dev/null
  topo_serve_tcp_echo inet "$INET_ALLOWED_V4" 7
  echo "$TOPO_LAST_PID" >"$TOPO_LOG_DIR/server.pid"
  case $2 in
    exit) exit 3 ;;
    error) false ;;
    term) kill -TERM $$ ;;
    int) kill -INT $$ ;;
  esac
  sleep 5'
for kind in exit error term int; do
  rc=0
  mkdir -p "$scratch/$kind"
  TOPO_PREFIX="${TOPO_PREFIX}$kind-" TOPO_LOG_DIR="$scratch/$kind" \
    bash -c "$exit_path_script" _ "$src_dir" "$kind" 2>/dev/null || rc=$?
  case $kind in exit) want=3 ;; error) want=1 ;; term) want=143 ;; int) want=130 ;; esac
  expect_eq "$kind: exit status kept" "$rc" "$want"
  expect_eq "$kind: no namespace left" "$(topo_own_namespaces)" ""
  expect_eq "$kind: server process gone" "$(ps -o pid= -p "$(cat "$scratch/$kind/server.pid")" || true)" ""
done
rm -rf "$scratch"

report
