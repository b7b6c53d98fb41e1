#!/usr/bin/env bash
# End-to-end: `portcullis run --mode gateway` in the gw namespace enforces address, protocol and port rules
# on real traffic from the client to inet, over IPv4 and IPv6: ping, TCP (socat, nc) and UDP; rejects
# answer at once, `on_deny: drop` is silent; the JSON log names every verdict's rule; SIGHUP reloads (a broken
# file keeps the running policy); kill -9 leaves enforcement in place and `run` again adopts it without
# cutting a TCP stream; SIGTERM takes everything off and removes the pins. TC programs go on with TCX where the
# kernel has it (else clsact), and never beside another program.
# Usage: gateway_l4_test.sh SOURCE_DIR BUILD_DIR   (root; exit 77 = skipped)
set -euo pipefail
src_dir=${1:?usage: $0 SOURCE_DIR BUILD_DIR}
build_dir=${2:?usage: $0 SOURCE_DIR BUILD_DIR}

# shellcheck source=lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_skip_unless_ready ip ss socat nc ping setsid timeout nsenter tc bpftool iperf3
PC_BIN=$build_dir/userspace/portcullis
PC_TCX_PROGRAMS=$build_dir/test/portcullis_tcx_programs
[ -x "$PC_TCX_PROGRAMS" ] || { echo "FAIL: $PC_TCX_PROGRAMS is not built"; exit 1; }
policies=$src_dir/test/e2e/policies
pc_trap

topo_create
# The daemon reads its policy from a file of this run, so SIGHUP can be shown another one.
policy=$TOPO_LOG_DIR/policy.yaml
cp "$policies/gateway_l4.yaml" "$policy"
# With the XDP early drop (off by default), so its path is tested on real traffic too.
run_args=(--mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" --xdp native)
hook=$(pc_tc_hook gw "$GW_INSIDE")  # tcx, or tc (clsact) on kernels without TCX
echo "== TC programs go on with: $hook"

# Every denied port has a listener, so a refusal can only come from portcullis.
for port in 8080 9000 9010 9011 9999; do topo_serve_tcp_echo inet "$INET_ALLOWED_V4" "$port"; done
for port in 8080 9999; do topo_serve_tcp_echo inet "$INET_ALLOWED_V6" "$port"; done
topo_serve_tcp_echo inet "$INET_EVIL_V4" 8080
topo_serve_udp_echo inet "$INET_ALLOWED_V4" 7000
topo_serve_udp_echo inet "$INET_ALLOWED_V4" 7001
topo_serve_udp_echo inet "$INET_ALLOWED_V6" 7000
topo_serve_iperf3 inet "$INET_ALLOWED_V4" 5201

udp_fails_fast() {  # udp_fails_fast ROLE ADDR PORT: no answer, and the client learns it at once
  local t0 t1
  t0=$(pc_now_ms)
  if TOPO_UDP_TIMEOUT=3 topo_udp_roundtrip "$1" "$2" "$3" probe; then echo "answered"; return 1; fi
  t1=$(pc_now_ms)
  [ $((t1 - t0)) -lt 1000 ] || { echo "failed only after $((t1 - t0)) ms"; return 1; }
}

echo "== never beside or over another program"
in_ns gw tc qdisc add dev "$GW_OUTSIDE" clsact
in_ns gw tc filter add dev "$GW_OUTSIDE" ingress pref 7 u32 match u32 0 0 classid 1:1
rc=0
out=$(pc_run_once gw "$PC_PIN_DIR-foreign" --policy "$policy" "${run_args[@]}") || rc=$?
expect_eq "a foreign tc filter on an interface: run fails" "$rc" 1
expect_match "the message names the interface and the filter" "$out" \
  "out0 \($hook-ingress\): a 'u32' filter is attached already"
expect_ok "the foreign filter is untouched" bash -c "ip netns exec '$NS_GW' tc filter show dev out0 ingress | grep -q u32"
expect_ok "what the failed start attached is taken off again" pc_no_programs gw "$GW_INSIDE"
expect_fail "what the failed start pinned is removed" test -e "$PC_PIN_DIR-foreign"
in_ns gw tc qdisc del dev "$GW_OUTSIDE" clsact

echo "== gateway mode, on_deny: reject"
pc_start gw gw-a --policy "$policy" "${run_args[@]}"
rc=0
out=$(timeout 10 nsenter --net="/run/netns/$NS_GW" -- "$PC_BIN" run --pin-dir "$PC_PIN_DIR" --policy "$policy" \
  "${run_args[@]}" 2>&1) || rc=$?
expect_eq "a second daemon on the same pin directory: run fails" "$rc" 1
expect_match "it says another one is running" "$out" "another portcullis is running with the pin directory"
rc=0
out=$(pc_run_once gw "$PC_PIN_DIR-other" --policy "$policy" "${run_args[@]}") || rc=$?
expect_eq "a second daemon (another pin directory) on the same interfaces: run fails" "$rc" 1
expect_match "it names the interface and the program there" "$out" \
  "in0 \(xdp\): XDP program 'portcullis_xdp' \(id [0-9]+\) is attached already and is not portcullis's"
ready=$(pc_log_line '"event":"ready"')
expect_match "ready names the mode, interfaces, policy and rule count" "$ready" \
  '"mode":"gateway","inside":\["in0"\],"outside":\["out0"\],"policy":"[^"]+policy.yaml","rules":7,"groups":1'
expect_match "ready: XDP native on the inside, TC ingress on both sides, nothing adopted" "$ready" \
  "\"adopted\":false.*\"iface\":\"in0\",\"hook\":\"xdp\",[^}]*\"xdp_mode\":\"native\".*\"iface\":\"in0\",\"hook\":\"$hook-ingress\".*\"iface\":\"out0\",\"hook\":\"$hook-ingress\""
expect_ok "maps pinned in the pin directory" test -e "$PC_PIN_DIR/pc_flows"
if [ "$hook" = tcx ]; then
  expect_eq "TCX: the inside program and the reinjection turn-round alone on in0's hooks" \
    "$(pc_tcx_programs gw in0 | cut -d' ' -f2,4)" "ingress portcullis_insi
egress portcullis_rein"
  expect_eq "TCX: the outside program and the reinjection turn-round (held DNS answers) alone on out0's hooks" \
    "$(pc_tcx_programs gw out0 | cut -d' ' -f2,4)" "ingress portcullis_outs
egress portcullis_rein"
  expect_ok "TCX: the links are pinned" test -e "$PC_PIN_DIR/link_in0_tcx-ingress" -a -e "$PC_PIN_DIR/link_out0_tcx-ingress"
  expect_fail "TCX: no clsact qdisc" bash -c "ip netns exec '$NS_GW' tc qdisc show | grep -q clsact"
  # Host mode on out0 from another pin directory: both its hooks have gw-a's programs.
  rc=0
  out=$(pc_run_once gw "$PC_PIN_DIR-other" --policy "$policy" --mode host --iface "$GW_OUTSIDE") || rc=$?
  expect_eq "TCX: a second daemon on a hook with a TCX program: run fails" "$rc" 1
  expect_match "it names the interface and the program there" "$out" \
    "out0 \(tcx-egress\): a TCX program 'portcullis_rein' \(id [0-9]+\) is attached already and is not portcullis's"
  expect_eq "gw-a's programs stay, alone" \
    "$(pc_tcx_programs gw out0 | cut -d' ' -f2,4)" "ingress portcullis_outs
egress portcullis_rein"
fi

expect_ok "ping allowed prefix" in_ns client ping -c 1 -W 2 "$INET_ALLOWED_V4"
expect_ok "ping -6 allowed prefix" in_ns client ping -6 -c 1 -W 2 "$INET_ALLOWED_V6"
expect_ok "ping to a prefix no rule allows is refused at once (Packet filtered)" \
  pc_ping_refused client "$INET_DNS_V4"
expect_ok "ping -6 to a prefix no rule allows is refused at once (Administratively prohibited)" \
  pc_ping_refused client "$INET_DNS_V6"
expect_ok "ping to a denied prefix is refused at once" pc_ping_refused client "$INET_EVIL_V4"
# Two echo requests of one ping share a flow: the second meets the denied flow in XDP.
in_ns client ping -c 2 -i 0.2 -W 1 "$INET_DNS_V4" >/dev/null 2>&1 || true

expect_eq "tcp to an allowed port" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 8080 hello4)" hello4
expect_eq "tcp over IPv6 to an allowed port" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V6" 8080 hello6)" hello6
expect_ok "tcp to a denied port is refused at once" pc_refused_fast client "$INET_ALLOWED_V4" 9999
expect_ok "tcp over IPv6 to a denied port is refused at once" pc_refused_fast client "$INET_ALLOWED_V6" 9999
expect_eq "tcp to the low end of a port range" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 9000 lo)" lo
expect_eq "tcp to the high end of a port range" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 9010 hi)" hi
expect_ok "tcp just past the port range is refused" pc_refused_fast client "$INET_ALLOWED_V4" 9011
expect_ok "tcp to a destination a deny rule names is refused" pc_refused_fast client "$INET_EVIL_V4" 8080
expect_eq "udp to an allowed port" "$(topo_udp_roundtrip client "$INET_ALLOWED_V4" 7000 udp4)" udp4
expect_eq "udp over IPv6 to an allowed port" "$(topo_udp_roundtrip client "$INET_ALLOWED_V6" 7000 udp6)" udp6
expect_ok "udp to a denied port fails at once (ICMP admin-prohibited)" udp_fails_fast client "$INET_ALLOWED_V4" 7001
expect_ok "iperf3 (2 s of bulk TCP) through the gateway" in_ns client timeout 10 iperf3 -c "$INET_ALLOWED_V4" -p 5201 -t 2

# A source outside every group is spoofed: dropped, and no flow entry is made for it.
in_ns client ip addr add 10.99.0.2/32 dev "$CLIENT_IF"
expect_fail "a spoofed source gets nothing through" in_ns client ping -c 1 -W 1 -I 10.99.0.2 "$INET_ALLOWED_V4"

expect_log "log: ping allowed by its rule, with its group" '"event":"verdict"' '"group":"sandbox","proto":"icmp"' \
  "\"dst\":\"$INET_ALLOWED_V4\"" '"icmp_type":8' '"verdict":"allow","rule":"ping-allowed","reason":"rule"'
expect_log "log: ping -6 allowed" '"proto":"icmpv6"' "\"dst\":\"$INET_ALLOWED_V6\"" '"icmp_type":128' \
  '"verdict":"allow","rule":"ping-allowed"'
expect_log "log: tcp allow with its ports and rule" '"proto":"tcp"' "\"src\":\"$CLIENT_V4\"" \
  "\"dst\":\"$INET_ALLOWED_V4\",\"dport\":8080" '"l7":"none","name":null,"verdict":"allow","rule":"web","reason":"rule"'
expect_log "log: tcp deny by default" "\"dst\":\"$INET_ALLOWED_V4\",\"dport\":9999" \
  '"verdict":"deny","rule":null,"reason":"denied-by-default"'
expect_log "log: tcp deny by a deny rule" "\"dst\":\"$INET_EVIL_V4\",\"dport\":8080" \
  '"verdict":"deny","rule":"deny-evil","reason":"denied-by-rule"'
expect_log "log: port range allow" "\"dport\":9010" '"rule":"port-range"'
expect_log "log: udp allow" '"proto":"udp"' "\"dport\":7000" '"verdict":"allow","rule":"udp-echo"'
expect_log "log: udp deny" '"proto":"udp"' "\"dport\":7001" '"verdict":"deny"'
expect_log "log: timestamps are ISO-8601 UTC" '"event":"verdict","ts":"20' 'Z","group"'

echo "== SIGHUP"
cp "$policies/gateway_l4_broken.yaml" "$policy"
pc_signal HUP
expect_ok "a broken policy is refused, with FILE:LINE:COL" \
  pc_log_line '"event":"reload"' '"ok":false' 'policy.yaml:12:16: error: unknown proto' '"running_generation":1'
expect_eq "the running policy stays: tcp/8080 still allowed" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 8080 still)" still
expect_ok "the running policy stays: tcp/9999 still refused" pc_refused_fast client "$INET_ALLOWED_V4" 9999

cp "$policies/gateway_l4_reloaded.yaml" "$policy"
pc_signal HUP
expect_ok "a changed valid policy is loaded" pc_log_line '"event":"reload"' '"ok":true' '"generation":2'
expect_eq "new flows follow it: tcp/9999 now allowed" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 9999 moved)" moved
expect_ok "new flows follow it: tcp/8080 now refused" pc_refused_fast client "$INET_ALLOWED_V4" 8080
expect_log "log: the new rule decides, in the new generation" "\"dport\":9999" '"rule":"web-moved"' '"generation":2'

echo "== kill -9 during a TCP stream, then run again"
stream_out=$TOPO_LOG_DIR/stream.out
topo_start inet stream-sink socat -u "TCP4-LISTEN:9500,bind=$INET_ALLOWED_V4,reuseaddr" "OPEN:$stream_out,creat,trunc"
topo_wait_port inet tcp "$INET_ALLOWED_V4" 9500
# shellcheck disable=SC2016  # expanded by the inner bash
topo_start client stream-source bash -c \
  'for i in $(seq 1 60); do echo "chunk $i"; sleep 0.1; done | socat -u - "TCP4:$1:9500"' _ "$INET_ALLOWED_V4"
stream_pid=$TOPO_LAST_PID
sleep 1
expect_log "the stream was allowed by its rule" '"dport":9500' '"verdict":"allow","rule":"stream"'
pc_stop KILL
expect_eq "the daemon died of SIGKILL" "$PC_EXIT" 137
if [ "$hook" = tcx ]; then
  expect_eq "its programs stay attached (TCX)" "$(pc_tcx_programs gw in0 out0 | cut -d' ' -f1,2,4)" \
    "in0 ingress portcullis_insi
in0 egress portcullis_rein
out0 ingress portcullis_outs
out0 egress portcullis_rein"
  expect_ok "its TCX links stay pinned" test -e "$PC_PIN_DIR/link_in0_tcx-ingress" -a -e "$PC_PIN_DIR/link_out0_tcx-ingress"
  killed_ids=$(pc_tcx_programs gw in0 out0 | cut -d' ' -f3 | paste -sd' ')
else
  expect_ok "its programs stay attached" bash -c "ip netns exec '$NS_GW' bpftool net show | grep -q portcullis_insi"
fi
expect_ok "its maps stay pinned" test -e "$PC_PIN_DIR/pc_flows"
expect_ok "no daemon: a new denied flow is still refused (fail closed)" \
  pc_refused_fast client "$INET_ALLOWED_V4" 8080
sleep 0.5
lines_before=$(wc -l <"$stream_out")
pc_start gw gw-b --policy "$policy" "${run_args[@]}"
ready=$(pc_log_line '"event":"ready"')
expect_match "run again adopts the pinned maps" "$ready" '"generation":3,.*"adopted":true'
expect_match "run again replaces every program in place" "$ready" \
  "\"hook\":\"xdp\",[^}]*\"replaced\":true\},\{[^}]*\"hook\":\"$hook-ingress\",[^}]*\"replaced\":true\},\{[^}]*\"hook\":\"$hook-egress\",[^}]*\"replaced\":true\},\{[^}]*\"hook\":\"$hook-ingress\",[^}]*\"replaced\":true"
if [ "$hook" = tcx ]; then
  in0_id=$(grep -oE '"iface":"in0","hook":"tcx-ingress","prog_id":[0-9]+' <<<"$ready" | grep -oE '[0-9]+$')
  in0_egress_id=$(grep -oE '"iface":"in0","hook":"tcx-egress","prog_id":[0-9]+' <<<"$ready" | grep -oE '[0-9]+$')
  out0_id=$(grep -oE '"iface":"out0","hook":"tcx-ingress","prog_id":[0-9]+' <<<"$ready" | grep -oE '[0-9]+$')
  expect_eq "TCX: the pinned links now run the new daemon's programs, and nothing else" \
    "$(pc_tcx_programs gw in0 out0 | cut -d' ' -f1,2,3)" "in0 ingress $in0_id
in0 egress $in0_egress_id
out0 ingress $out0_id
out0 egress $in0_egress_id"
  # shellcheck disable=SC2016  # expanded by the inner bash
  expect_ok "TCX: the killed daemon's programs are off the hooks" \
    bash -c '[[ -n $2 && -n $3 && " $1 " != *" $2 "* && " $1 " != *" $3 "* ]]' _ "$killed_ids" "$in0_id" "$out0_id"
fi
expect_ok "after the restart a new denied flow stays denied" pc_refused_fast client "$INET_ALLOWED_V4" 8080
expect_eq "after the restart a new allowed flow works" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 9999 again)" again
stream_rc=0
wait "$stream_pid" || stream_rc=$?
expect_eq "the stream's client finished cleanly" "$stream_rc" 0
expect_ok "the stream kept flowing after the restart" test "$(wc -l <"$stream_out")" -gt "$lines_before"
expect_eq "every byte of the stream arrived" "$(tail -n 1 "$stream_out")" "chunk 60"
expect_eq "nothing of the stream was lost" "$(wc -l <"$stream_out")" 60
expect_fail "the stream's flow came with the adopted flow table: the new daemon never decided it" \
  grep -qF '"dport":9500' "$PC_LOG"

echo "== SIGTERM"
pc_stop TERM
expect_eq "SIGTERM: exit status 0" "$PC_EXIT" 0
stopped=$(pc_log_line '"event":"stopped"' || true)
expect_match "SIGTERM: a final summary with the counters" "$stopped" '"why":"SIGTERM","counters":\{"passed":[1-9]'
expect_match "counters: rejects sent" "$stopped" '"rejects_sent":[1-9]'
expect_match "counters: XDP dropped a denied flow's later packet" "$stopped" '"flow-denied":[1-9]'
expect_match "counters: the spoofed source was dropped" "$stopped" '"source-not-in-group":[1-9]'
expect_ok "SIGTERM: no program left in the gw namespace" pc_no_programs gw "$GW_INSIDE" "$GW_OUTSIDE"
expect_fail "SIGTERM: the pin directory is gone" test -e "$PC_PIN_DIR"
expect_eq "SIGTERM: nothing filters any more (tcp/8080 passes)" \
  "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 8080 free)" free

echo "== gateway mode, on_deny: drop"
pc_start gw gw-drop --policy "$policies/gateway_l4_drop.yaml" "${run_args[@]}"
expect_eq "tcp to an allowed port" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 8080 quiet)" quiet
expect_ok "tcp to a denied port: the connect times out (no RST)" pc_connect_times_out client "$INET_ALLOWED_V4" 9999 2
out=$(in_ns client ping -c 1 -W 1 "$INET_DNS_V4" 2>&1 || true)
expect_match "ping to a denied prefix: no answer at all" "$out" '1 packets transmitted, 0 received, 100% packet loss'
expect_fail "ping to a denied prefix: no error either" grep -q "filtered" <<<"$out"
expect_log "log: the dropped flow is logged as denied" "\"dport\":9999" '"verdict":"deny","rule":null'
pc_stop TERM
expect_eq "SIGTERM: exit status 0" "$PC_EXIT" 0
expect_ok "SIGTERM: no program left" pc_no_programs gw "$GW_INSIDE" "$GW_OUTSIDE"
expect_fail "SIGTERM: the pin directory is gone" test -e "$PC_PIN_DIR"

report
