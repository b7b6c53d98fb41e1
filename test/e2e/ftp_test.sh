#!/usr/bin/env bash
# End-to-end: FTP by the kernel's conntrack helper, through the gateway or in host mode. vsftpd serves in the internet namespace
# on IPv4 and IPv6; curl in the client namespace downloads and uploads in passive (EPSV, PASV) and active (EPRT,
# PORT) mode. The control connection passes by its ftp rule; portcullis assigns the helper to it in its nftables
# table and mirrors the helper's expectations into the data plane, so exactly the announced data connections
# pass. The server's data ports without a control connection, another server, and (gateway) a PORT naming a
# third host are denied; a reload without the rule cuts an open control connection and fails a new transfer;
# SIGTERM removes the table.
# Usage: ftp_test.sh SOURCE_DIR BUILD_DIR gateway|host   (root; exit 77 = skipped)
set -euo pipefail
src_dir=${1:?usage: $0 SOURCE_DIR BUILD_DIR}
build_dir=${2:?usage: $0 SOURCE_DIR BUILD_DIR}
mode=${3:-gateway}

# shellcheck source=lib/topology.sh
. "$src_dir/test/e2e/lib/topology.sh"
# shellcheck source=lib/portcullis.sh
. "$src_dir/test/e2e/lib/portcullis.sh"
topo_skip_unless_ready ip socat curl setsid timeout nsenter vsftpd nft jq
PC_BIN=$build_dir/userspace/portcullis
policies=$src_dir/test/e2e/policies
pc_trap

if [ "$mode" = gateway ]; then
  topo_create --client2
  fw_ns=gw
  run_args=(--mode gateway --inside "$GW_INSIDE,$GW_INSIDE2" --outside "$GW_OUTSIDE")
  hook=prerouting
else
  topo_create_host_mode
  fw_ns=client
  run_args=(--mode host --iface "$CLIENT_IF")
  hook=output
fi
policy=$TOPO_LOG_DIR/policy.yaml
sock=$TOPO_LOG_DIR/control.sock

# vsftpd: anonymous download and upload, passive ports 30000-30004; one instance per
# address family. port_promiscuous lets it follow a PORT to another host: the firewall must stop that.
ftp_root=$TOPO_LOG_DIR/ftp
mkdir -p "$ftp_root/incoming"
chmod 555 "$ftp_root"
chmod 777 "$ftp_root/incoming"
head -c 3000000 /dev/urandom >"$ftp_root/file.bin"
chmod 644 "$ftp_root/file.bin"
# Uploads too; and a PORT may name another host (the kernel's helper, not vsftpd, must refuse it).
uploads="write_enable=YES
anon_upload_enable=YES
anon_umask=022
port_promiscuous=YES"
topo_serve_ftp "$INET_FTP_V4" "$ftp_root" "$uploads"
topo_serve_ftp "$INET_FTP_V6" "$ftp_root" "$uploads"
# Another FTP server no rule allows, and a listener on the FTP server's data range with no control connection.
topo_serve_tcp_banner inet "$INET_EVIL_V4" 21 "220 another server"
topo_serve_tcp_echo inet "$INET_FTP_V4" 30009

ftp_url() {  # ftp_url ADDR PATH
  case $1 in *:*) echo "ftp://[$1]/$2" ;; *) echo "ftp://$1/$2" ;; esac
}
download() {  # download ADDR CURL-OPTIONS...: the file arrives whole
  local addr=$1 out
  shift
  out=$(mktemp "$TOPO_LOG_DIR/dl.XXXXXX")
  in_ns client curl -sS --max-time 10 -o "$out" "$@" "$(ftp_url "$addr" file.bin)" || return 1
  cmp -s "$out" "$ftp_root/file.bin" || { echo "the download differs"; return 1; }
}
upload() {  # upload ADDR NAME CURL-OPTIONS...: the file arrives whole on the server
  local addr=$1 name=$2
  shift 2
  in_ns client curl -sS --max-time 10 -T "$ftp_root/file.bin" "$@" "$(ftp_url "$addr" "incoming/$name")" || return 1
  cmp -s "$ftp_root/incoming/$name" "$ftp_root/file.bin" || { echo "the upload differs"; return 1; }
}

# Started without an ftp rule: no table (and no conntrack turned on); a reload brings the rule and the table.
cp "$policies/ftp_reloaded.yaml" "$policy"
pc_start "$fw_ns" ftp --policy "$policy" "${run_args[@]}" --control "$sock"
expect_fail "no ftp rule, no table" in_ns "$fw_ns" nft list table inet portcullis
cp "$policies/ftp.yaml" "$policy"
expect_ok "a reload with the ftp rule" "$PC_BIN" reload --control "$sock"

echo "== the nftables table"
ruleset=$(in_ns "$fw_ns" nft list table inet portcullis)
expect_match "a ct helper of type ftp" "$ruleset" 'type "ftp" protocol tcp'
expect_match "assigned to the ftp rule's control connections, counted and commented" "$ruleset" \
  'ip daddr @ftp0_v4 tcp dport 21 ct helper set "ftp" counter packets [0-9]+ bytes [0-9]+ comment "portcullis rule ftp-server'
expect_match "at $hook" "$ruleset" "type filter hook $hook priority filter"

echo "== passive and active, IPv4 and IPv6, download and upload"
expect_ok "passive download, EPSV" download "$INET_FTP_V4" --ftp-pasv
expect_ok "passive download, PASV" download "$INET_FTP_V4" --ftp-pasv --disable-epsv
# curl 7.88 takes an address with a port range (with "-" or an address alone it fails before sending EPRT).
expect_ok "active download, EPRT" download "$INET_FTP_V4" --ftp-port "$CLIENT_V4:40000-40010"
expect_ok "active download, PORT" download "$INET_FTP_V4" --ftp-port "$CLIENT_V4:40000-40010" --disable-eprt
expect_ok "passive upload" upload "$INET_FTP_V4" up-pasv.bin --ftp-pasv
expect_ok "active upload" upload "$INET_FTP_V4" up-port.bin --ftp-port "$CLIENT_V4:40000-40010"
expect_ok "IPv6 passive download" download "$INET_FTP_V6" --ftp-pasv -g
expect_ok "IPv6 active download" download "$INET_FTP_V6" --ftp-port "[$CLIENT_V6]:40000-40010" -g
expect_ok "IPv6 passive upload" upload "$INET_FTP_V6" up6.bin --ftp-pasv -g
expect_log "data connections are logged as expected, under the control connection's rule" \
  '"proto":"tcp"' '"l7":"ftp"' '"verdict":"allow"' '"rule":"ftp-server"' '"reason":"expected"'
[ "$mode" = host ] ||  # host mode admits connections from outside as they come: they are not egress
  expect_log "an active one too, opened from the server" "\"src\":\"$INET_FTP_V4\"" '"reason":"expected"'

echo "== what no control connection announced is denied"
expect_ok "the server's data range without a control connection" pc_refused_fast client "$INET_FTP_V4" 30009
expect_ok "another server's FTP is refused at once" pc_refused_fast client "$INET_EVIL_V4" 21
expect_log "denied by default" "\"dst\":\"$INET_EVIL_V4\"" '"dport":21' '"verdict":"deny"'
if [ "$mode" = gateway ]; then
# A PORT naming client2: the kernel's helper expects nothing for an address other than the client's, so the
# server's connection to client2 is refused at the gateway.
topo_start client2 bounce-target socat -u "TCP4-LISTEN:30100,bind=$CLIENT2_V4,reuseaddr" "OPEN:$TOPO_LOG_DIR/bounce.out,creat"
topo_wait_port client2 tcp "$CLIENT2_V4" 30100
bounce=$(printf 'USER anonymous\r\nPASS x\r\nPORT 10,88,2,2,117,148\r\nRETR file.bin\r\nQUIT\r\n' |
  in_ns client timeout 8 socat -t 5 - "TCP:$INET_FTP_V4:21" 2>&1 | tr -d '\r' || true)
expect_match "the server took the PORT (port_promiscuous)" "$bounce" "^200 PORT"
echo "$bounce" >"$TOPO_LOG_DIR/bounce.session"
expect_fail "client2 got no connection from the server" test -s "$TOPO_LOG_DIR/bounce.out"
counters=$(control() { "$PC_BIN" "$@" --control "$sock"; }; control stats)
expect_match "the gateway refused it as unsolicited" "$(jq -r '.counters.drops["unsolicited-inbound"] // 0' <<<"$counters")" \
  '^[1-9]'
fi

echo "== a reload without the rule"
# An open control connection: logged in, waiting.
(printf 'USER anonymous\r\nPASS x\r\n'; sleep 30) |
  in_ns client timeout 40 socat -t 1 - "TCP:$INET_FTP_V4:21" >"$TOPO_LOG_DIR/control.out" 2>&1 &
control_pid=$!
sleep 1
cp "$policies/ftp_reloaded.yaml" "$policy"
expect_ok "reload" "$PC_BIN" reload --control "$sock"
expect_log "the open control connection is revoked" '"dport":21' '"reason":"revoked"'
deadline=$((SECONDS + 3))
while kill -0 "$control_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
expect_fail "and cut" kill -0 "$control_pid"
kill "$control_pid" 2>/dev/null || true
wait "$control_pid" 2>/dev/null || true
expect_fail "a new transfer fails" download "$INET_FTP_V4" --ftp-pasv
expect_fail "the table went with the last ftp rule" in_ns "$fw_ns" nft list table inet portcullis

echo "== SIGTERM removes the table"
cp "$policies/ftp.yaml" "$policy"
expect_ok "reload with the rule again" "$PC_BIN" reload --control "$sock"
expect_ok "the table is back" in_ns "$fw_ns" nft list table inet portcullis
expect_ok "and FTP works again" download "$INET_FTP_V4" --ftp-pasv
pc_stop TERM
expect_eq "the daemon exits 0" "$PC_EXIT" 0
expect_fail "the table is gone" in_ns "$fw_ns" nft list table inet portcullis

report
