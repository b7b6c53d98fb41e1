#!/usr/bin/env bash
# End-to-end: `run --masquerade`: the gateway NATs its sandboxes through the outside interface (its nftables
# table), and the internet namespace has no route back to them, so only NATed traffic gets answers. Names are
# read and enforced as without NAT (the data plane sees answers on the inside, after NAT is undone); servers
# see the gateway's address; FTP follows through the helper's NAT half, passive and active; DNS answers are held
# where the data plane meets them, on the inside, until what they bind is in it; SIGTERM takes the NAT away with
# the table.
# Usage: masquerade_test.sh SOURCE_DIR BUILD_DIR   (root; exit 77 = skipped)
set -euo pipefail
src_dir=${1:?usage: $0 SOURCE_DIR BUILD_DIR}
build_dir=${2:?usage: $0 SOURCE_DIR BUILD_DIR}

# shellcheck source=lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_skip_unless_ready ip socat openssl curl setsid timeout nsenter vsftpd nft dnsmasq dig
PC_BIN=$build_dir/userspace/portcullis
pc_trap

topo_create
# Without NAT nothing comes back: the internet knows no route to the sandboxes.
in_ns inet ip route del 10.88.0.0/16
in_ns inet ip -6 route del fd88::/16

cert=$TOPO_LOG_DIR/cert.pem key=$TOPO_LOG_DIR/key.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$key" -out "$cert" -days 1 -subj /CN=allowed.test \
  -addext "subjectAltName=DNS:allowed.test,DNS:evil.test" 2>/dev/null
topo_start inet tls openssl s_server -accept "$INET_ALLOWED_V4:443" -cert "$cert" -key "$key" -www -quiet
topo_wait_port inet tcp "$INET_ALLOWED_V4" 443
# Says who it sees: the peer address of each connection.
# shellcheck disable=SC2016  # for socat's shell
topo_start inet whoami socat "TCP4-LISTEN:9100,bind=$INET_ALLOWED_V4,reuseaddr,fork" 'SYSTEM:echo $SOCAT_PEERADDR'
topo_wait_port inet tcp "$INET_ALLOWED_V4" 9100
topo_serve_udp_echo inet "$INET_ALLOWED_V4" 7000
topo_start inet dnsmasq dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address="$INET_DNS_V4" \
  --log-facility=- --address="/evil.test/$INET_ALLOWED_V4"
topo_wait_port inet udp "$INET_DNS_V4" 53
ftp_root=$TOPO_LOG_DIR/ftp
mkdir -p "$ftp_root"
chmod 555 "$ftp_root"
head -c 1000000 /dev/urandom >"$ftp_root/file.bin"
chmod 644 "$ftp_root/file.bin"
topo_serve_ftp "$INET_FTP_V4" "$ftp_root"

rc=0
out=$(pc_run_once gw "$PC_PIN_DIR-wrong" --policy "$src_dir/test/e2e/policies/masquerade.yaml" --mode gateway \
  --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" --masquerade "$GW_INSIDE") || rc=$?
expect_eq "--masquerade on an inside interface: run refuses" "$rc" 2
expect_match "and says why" "$out" "is not one of the --outside interfaces"

pc_start gw masquerade --policy "$src_dir/test/e2e/policies/masquerade.yaml" --mode gateway \
  --inside "$GW_INSIDE" --outside "$GW_OUTSIDE" --masquerade "$GW_OUTSIDE"

echo "== NAT through the gateway's table"
ruleset=$(in_ns gw nft list table inet portcullis)
expect_match "a masquerade rule for the sandboxes, on the outside interface" "$ruleset" \
  "oifname \"$GW_OUTSIDE\" ip saddr \\{? ?10.88.1.0/24 ?\\}? .*masquerade"
expect_eq "the server sees the gateway's address" "$(topo_tcp_roundtrip client "$INET_ALLOWED_V4" 9100 hi)" \
  "$GW_OUTSIDE_V4"
expect_eq "UDP by rule" "$(topo_udp_roundtrip client "$INET_ALLOWED_V4" 7000 ping)" ping

echo "== names, read behind NAT"
https() {
  in_ns client curl -sk --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' \
    --resolve "$1:443:$INET_ALLOWED_V4" "https://$1/" || true
}
expect_eq "https to allowed.test" "$(https allowed.test)" 200
expect_eq "evil.test on the same address is refused" "$(https evil.test)" 000
expect_log "by name" '"name":"evil.test"' '"verdict":"deny"'
expect_ok "a port no rule allows is refused at once" pc_refused_fast client "$INET_ALLOWED_V4" 9999

echo "== FTP through the helper's NAT half"
download() {
  local out
  out=$(mktemp "$TOPO_LOG_DIR/dl.XXXXXX")
  in_ns client curl -sS --max-time 10 -o "$out" "$@" "ftp://$INET_FTP_V4/file.bin" || return 1
  cmp -s "$out" "$ftp_root/file.bin" || { echo "the download differs"; return 1; }
}
expect_ok "passive" download --ftp-pasv
expect_ok "active (the server connects to the gateway, NAT sends it on)" download \
  --ftp-port "$CLIENT_V4:40000-40010"
expect_log "the active data connection is the expected one" "\"src\":\"$INET_FTP_V4\"" '"reason":"expected"'

echo "== DNS answers behind NAT"
expect_eq "dig evil.test: the answer comes back through the NAT" \
  "$(in_ns client dig +short +time=2 +tries=1 "@$INET_DNS_V4" evil.test A)" "$INET_ALLOWED_V4"
expect_fail "then UDP by the rule to that address is refused: a deny rule names evil.test" \
  env TOPO_UDP_TIMEOUT=2 bash -c ". '$src_dir/test/e2e/lib/topology.sh'; TOPO_PREFIX='$TOPO_PREFIX'; topo_udp_roundtrip client $INET_ALLOWED_V4 7000 pong"
expect_log "by that rule" '"proto":"udp"' '"dport":7000' '"verdict":"deny","rule":"no-evil"'

echo "== SIGTERM takes the NAT away"
pc_stop TERM
expect_eq "the daemon exits 0" "$PC_EXIT" 0
expect_fail "the table is gone" in_ns gw nft list table inet portcullis
expect_fail "without NAT nothing comes back" topo_tcp_roundtrip client "$INET_ALLOWED_V4" 9100 hi

report
