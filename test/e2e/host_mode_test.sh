#!/usr/bin/env bash
# End-to-end: `portcullis run --mode host` inside the client namespace on its own uplink polices what the
# client sends (TCP and ping over IPv4 and IPv6: allowed, refused at once), not what comes in: a connection
# from inet to a listener in the client works. DNS answers reach the host through the daemon, which holds each
# until what it binds is in the data plane: once evil.test resolves to the allowed address, a deny rule to
# evil.test refuses it. SIGTERM takes everything off and removes the pins.
# Usage: host_mode_test.sh SOURCE_DIR BUILD_DIR   (root; exit 77 = skipped)
set -euo pipefail
src_dir=${1:?usage: $0 SOURCE_DIR BUILD_DIR}
build_dir=${2:?usage: $0 SOURCE_DIR BUILD_DIR}

# shellcheck source=lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_skip_unless_ready ip ss socat nc ping setsid timeout nsenter tc bpftool dnsmasq dig
PC_BIN=$build_dir/userspace/portcullis
PC_TCX_PROGRAMS=$build_dir/test/portcullis_tcx_programs
[ -x "$PC_TCX_PROGRAMS" ] || { echo "FAIL: $PC_TCX_PROGRAMS is not built"; exit 1; }
pc_trap

topo_create_host_mode
for addr in "$INET_ALLOWED_V4" "$INET_ALLOWED_V6"; do
  topo_serve_tcp_echo inet "$addr" 8080
  topo_serve_tcp_echo inet "$addr" 9999
done
topo_serve_tcp_echo client "$CLIENT_V4" 2222
topo_serve_tcp_echo client "$CLIENT_V6" 2222
topo_serve_udp_echo client "$CLIENT_V4" 5000
topo_start inet dnsmasq dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address="$INET_DNS_V4" \
  --log-facility=- --address="/evil.test/$INET_ALLOWED_V4"
topo_wait_port inet udp "$INET_DNS_V4" 53

hook=$(pc_tc_hook client "$CLIENT_IF")  # tcx, or tc (clsact) on kernels without TCX
echo "== host mode (TC programs go on with: $hook)"
pc_start client host --policy "$src_dir/test/e2e/policies/host_mode.yaml" --mode host --iface "$CLIENT_IF"
ready=$(pc_log_line '"event":"ready"')
expect_match "ready: host mode on the uplink" "$ready" '"mode":"host","ifaces":\["up0"\]'
expect_match "ready: TC egress and ingress on the uplink, no XDP" "$ready" \
  "\"attached\":\[\{\"iface\":\"up0\",\"hook\":\"$hook-egress\",[^]]*\{\"iface\":\"up0\",\"hook\":\"$hook-ingress\",[^]]*\]"
if [ "$hook" = tcx ]; then
  expect_eq "TCX: the inside program on egress, the outside one on ingress, nothing else" \
    "$(pc_tcx_programs client "$CLIENT_IF" | cut -d' ' -f2,4)" "ingress portcullis_outs
egress portcullis_insi"
  expect_ok "TCX: the links are pinned" test -e "$PC_PIN_DIR/link_up0_tcx-egress" -a -e "$PC_PIN_DIR/link_up0_tcx-ingress"
fi
expect_fail "ready: no XDP in host mode" grep -q '"hook":"xdp"' <<<"$ready"

expect_eq "tcp to an allowed port" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 8080 out4)" out4
expect_eq "tcp over IPv6 to an allowed port" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V6" 8080 out6)" out6
expect_ok "tcp to a denied port is refused at once" pc_refused_fast client "$INET_ALLOWED_V4" 9999
expect_ok "tcp over IPv6 to a denied port is refused at once" pc_refused_fast client "$INET_ALLOWED_V6" 9999
expect_ok "ping allowed" in_ns client ping -c 1 -W 2 "$INET_ALLOWED_V4"
expect_ok "ping -6 allowed" in_ns client ping -6 -c 1 -W 2 "$INET_ALLOWED_V6"
expect_ok "ping to a denied address is refused at once" pc_ping_refused client "$INET_DNS_V4"
expect_ok "ping -6 to a denied address is refused at once" pc_ping_refused client "$INET_DNS_V6"

expect_eq "inbound tcp to a listener in the host works" "$(topo_tcp_roundtrip inet "$CLIENT_V4" 2222 in4)" in4
expect_eq "inbound tcp over IPv6 works" "$(topo_tcp_roundtrip inet "$CLIENT_V6" 2222 in6)" in6
expect_eq "inbound udp works" "$(topo_udp_roundtrip inet "$CLIENT_V4" 5000 inudp)" inudp
expect_ok "inbound ping works" in_ns inet ping -c 1 -W 2 "$CLIENT_V4"

expect_log "log: allow by rule, no group" '"group":null,"proto":"tcp"' "\"dst\":\"$INET_ALLOWED_V4\",\"dport\":8080" \
  '"verdict":"allow","rule":"web","reason":"rule"'
expect_log "log: deny by default" "\"dst\":\"$INET_ALLOWED_V6\",\"dport\":9999" \
  '"verdict":"deny","rule":null,"reason":"denied-by-default"'
expect_fail "log: inbound flows are not egress verdicts" grep -qF '"dport":2222' "$PC_LOG"

echo "== DNS answers, held until they bind"
expect_eq "dig evil.test: the answer comes up the host's stack" \
  "$(in_ns client dig +short +time=2 +tries=1 "@$INET_DNS_V4" evil.test A)" "$INET_ALLOWED_V4"
expect_ok "then tcp/8080 of that address is refused at once: a deny rule names evil.test" \
  pc_refused_fast client "$INET_ALLOWED_V4" 8080
expect_log "log: denied by that rule" "\"dst\":\"$INET_ALLOWED_V4\",\"dport\":8080" '"verdict":"deny","rule":"no-evil"'
expect_eq "the same port over IPv6, which evil.test is not bound to, still passes" \
  "$(topo_tcp_roundtrip client "$INET_ALLOWED_V6" 8080 still6)" still6

echo "== SIGTERM"
pc_stop TERM
expect_eq "SIGTERM: exit status 0" "$PC_EXIT" 0
expect_ok "SIGTERM: a final summary" pc_log_line '"event":"stopped"' '"why":"SIGTERM"' '"rejects_sent":'
expect_ok "SIGTERM: no program left on the uplink" pc_no_programs client "$CLIENT_IF"
expect_fail "SIGTERM: the pin directory is gone" test -e "$PC_PIN_DIR"
expect_eq "SIGTERM: nothing filters any more (tcp/9999 passes)" \
  "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 9999 free)" free

report
