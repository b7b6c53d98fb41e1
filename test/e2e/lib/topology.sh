# shellcheck shell=bash
# Portcullis end-to-end topology: self-contained network namespaces for tests, the demo and benchmarks.
#
# Source it from a bash script that runs as root (set -euo pipefail is fine):
#   . "$src_dir/test/e2e/lib/topology.sh"
#   topo_trap                 # cleanup on EXIT, INT and TERM
#   topo_create               # gateway mode: client[,client2] -- gw -- inet   (topo_create --client2)
#   topo_create_host_mode     # host mode:    client -- inet
#   topo_serve_tcp_echo inet 198.18.0.10 7
#   expect_ok "tcp echo" in_ns client ...
#   report
#
# Safety, enforced here rather than left to each caller:
# - every namespace gets a unique per-run name (TOPO_PREFIX, default pc<pid>r<random>-) and is created with
#   `ip netns add`, which fails instead of adopting a namespace that exists already; only namespaces this
#   run created are ever deleted;
# - veth pairs are created directly inside the namespaces (`ip -n NS link add ... peer ... netns NS2`), so no
#   interface ever exists in the machine's own namespace and nothing is attached to its interfaces;
# - routes point only at a neighbouring namespace: client -> gw (default), inet -> gw (10.88.0.0/16 and
#   fd88::/16 only). gw and inet have no default route, so nothing can leave the box; forwarding is on in gw only;
# - every process started by topo_start runs in its own session (setsid) and is killed as a process group
#   by topo_destroy; anything still inside one of this run's namespaces is killed before it is deleted.
#
# Addresses (all variables are set by topo_create / topo_create_host_mode):
#   client  10.88.1.2/24 fd88:1::2/64 on $CLIENT_IF      (gw side $GW_INSIDE:  10.88.1.1 fd88:1::1)
#   client2 10.88.2.2/24 fd88:2::2/64 on $CLIENT2_IF     (gw side $GW_INSIDE2: 10.88.2.1 fd88:2::1)
#   gw outside $GW_OUTSIDE 198.18.0.1/24 2001:db8::1/64
#   inet $INET_IF 198.18.0.10 .20 .21 .53 /24 and 2001:db8::10 ::20 ::21 ::53 /64
# Host mode: client ($CLIENT_IF) is wired straight to inet, whose $INET_IF also holds 10.88.1.1 and fd88:1::1
# (the client's default gateway), so the same client and server addresses work in both modes.

# ---- configuration ---------------------------------------------------------------------------------------
TOPO_PREFIX=${TOPO_PREFIX:-pc$$r${RANDOM}-}
TOPO_WAIT_TIMEOUT=${TOPO_WAIT_TIMEOUT:-5}   # seconds topo_wait_port waits for a listener

# shellcheck disable=SC2034  # the interface and address variables are for the scripts that source this file
{
  # Interface names (they live inside the namespaces, so fixed names never clash between runs).
  CLIENT_IF=up0
  CLIENT2_IF=up0
  GW_INSIDE=in0
  GW_INSIDE2=in1
  GW_OUTSIDE=out0
  INET_IF=wan0

  # Addresses.
  CLIENT_V4=10.88.1.2 CLIENT_V6=fd88:1::2
  CLIENT2_V4=10.88.2.2 CLIENT2_V6=fd88:2::2
  GW_INSIDE_V4=10.88.1.1 GW_INSIDE_V6=fd88:1::1
  GW_INSIDE2_V4=10.88.2.1 GW_INSIDE2_V6=fd88:2::1
  GW_OUTSIDE_V4=198.18.0.1 GW_OUTSIDE_V6=2001:db8::1
  INET_ALLOWED_V4=198.18.0.10 INET_ALLOWED_V6=2001:db8::10   # allowed.test
  INET_EVIL_V4=198.18.0.20 INET_EVIL_V6=2001:db8::20         # evil.test
  INET_FTP_V4=198.18.0.21 INET_FTP_V6=2001:db8::21           # FTP
  INET_DNS_V4=198.18.0.53 INET_DNS_V6=2001:db8::53           # resolver
}

# ---- state (per sourcing shell) ----------------------------------------------------------------------------
TOPO_MODE=""            # gateway | host
TOPO_NAMESPACES=()      # namespaces this run created (only these are ever deleted)
TOPO_PIDS=()            # process-group leaders started by topo_start
TOPO_PID_NAMES=()       # their names, same index
TOPO_RESOLV_DIRS=()     # /etc/netns/NS directories created by topo_set_resolver
TOPO_LOG_DIR=${TOPO_LOG_DIR:-}  # set it to keep logs somewhere of your own (never deleted then)
TOPO_LOG_DIR_OWNED=0
TOPO_PASSED=0
TOPO_FAILED=0

_topo_names() {  # the namespace names, from TOPO_PREFIX (set again by topo_create: the prefix may change)
  NS_CLIENT="${TOPO_PREFIX}client"
  NS_CLIENT2="${TOPO_PREFIX}client2"
  NS_GW="${TOPO_PREFIX}gw"
  NS_INET="${TOPO_PREFIX}inet"
}
_topo_names

topo_log() { printf '[topo] %s\n' "$*" >&2; }
topo_die() { printf '[topo] error: %s\n' "$*" >&2; return 1; }

# topo_ns ROLE|NAME: the full namespace name for a role (client, client2, gw, inet) or a full name of this run.
topo_ns() {
  case $1 in
    client | client2 | gw | inet) printf '%s%s\n' "$TOPO_PREFIX" "$1" ;;
    "$TOPO_PREFIX"*) printf '%s\n' "$1" ;;
    *) topo_die "unknown namespace '$1' (roles: client client2 gw inet)" ;;
  esac
}

# in_ns ROLE CMD...: run CMD inside a namespace of this run.
in_ns() {
  local ns
  ns=$(topo_ns "$1") || return 1
  shift
  ip netns exec "$ns" "$@"
}

# topo_require CMD...: fail (return 1, naming the missing ones) unless every command exists.
topo_require() {
  local c missing=()
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] || topo_die "missing tools: ${missing[*]}"
}

# topo_skip_unless_ready CMD...: an e2e test's first step: exit 77 (skipped, saying why) unless it runs as root
# and every command exists.
topo_skip_unless_ready() {
  local missing
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: needs root (network namespaces, BPF, nftables)"
    exit 77
  fi
  if ! missing=$(topo_require "$@" 2>&1); then
    echo "SKIP: ${missing#\[topo\] error: } (scripts/setup installs them)"
    exit 77
  fi
}

# topo_log_dir: make sure $TOPO_LOG_DIR exists (a fresh mktemp directory unless the caller set one).
# Call it directly, never inside $(...): it sets variables.
topo_log_dir() {
  if [ -z "$TOPO_LOG_DIR" ]; then
    TOPO_LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-e2e.XXXXXX") || return 1
    TOPO_LOG_DIR_OWNED=1
  fi
  mkdir -p "$TOPO_LOG_DIR"
}

_topo_safe() { local s=${1//:/_}; printf '%s\n' "${s//\//_}"; }  # a string usable in file names and socat

# ---- creation --------------------------------------------------------------------------------------------
# Every step ends in `|| return 1`: callers may run these functions where set -e is ignored (if, ||).
_topo_add_ns() {  # _topo_add_ns NAME: create, record, loopback up, DAD and RA off, forwarding off
  local ns=$1
  ip netns add "$ns" || topo_die "cannot create namespace $ns (exists already?)" || return 1
  TOPO_NAMESPACES+=("$ns")
  ip -n "$ns" link set lo up || return 1
  ip netns exec "$ns" sysctl -qw \
    net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
    net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 >/dev/null || return 1
}

_topo_veth() {  # _topo_veth NS1 IF1 NS2 IF2: a veth pair whose ends are born inside the two namespaces
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3" || return 1
  ip -n "$1" link set "$2" up || return 1
  ip -n "$3" link set "$4" up || return 1
}

_topo_addr() {  # _topo_addr NS IF CIDR...: add addresses (IPv6 without DAD)
  local ns=$1 dev=$2 a
  shift 2
  for a in "$@"; do
    case $a in
      *:*) ip -n "$ns" -6 addr add "$a" dev "$dev" nodad || return 1 ;;
      *) ip -n "$ns" addr add "$a" dev "$dev" || return 1 ;;
    esac
  done
}

_topo_default_via() {  # _topo_default_via NS IF V4 V6: the namespace's only way out is its neighbour
  ip -n "$1" route add default via "$3" dev "$2" || return 1
  ip -n "$1" -6 route add default via "$4" dev "$2" || return 1
}

_topo_inet_servers() {  # the server addresses in inet
  _topo_addr "$NS_INET" "$INET_IF" \
    "$INET_ALLOWED_V4/24" "$INET_EVIL_V4/24" "$INET_FTP_V4/24" "$INET_DNS_V4/24" \
    "$INET_ALLOWED_V6/64" "$INET_EVIL_V6/64" "$INET_FTP_V6/64" "$INET_DNS_V6/64"
}

_topo_begin() {
  [ "$(id -u)" -eq 0 ] || topo_die "needs root (network namespaces)" || return 1
  topo_require ip sysctl setsid ss || return 1
  [ -z "$TOPO_MODE" ] || topo_die "a topology exists already in this shell ($TOPO_MODE)" || return 1
  case $TOPO_PREFIX in
    '' | *[!A-Za-z0-9_.-]*) topo_die "TOPO_PREFIX '$TOPO_PREFIX': use letters, digits, _ . - only" || return 1 ;;
  esac
  _topo_names
  topo_log_dir || return 1
}

# topo_create [--client2]: gateway topology. client (and client2) -- gw -- inet.
topo_create() {
  local with_client2=0
  [ "${1:-}" != --client2 ] || with_client2=1
  _topo_begin || return 1
  TOPO_MODE=gateway
  _topo_add_ns "$NS_CLIENT" || return 1
  _topo_add_ns "$NS_GW" || return 1
  _topo_add_ns "$NS_INET" || return 1

  # client <-> gw (inside)
  _topo_veth "$NS_CLIENT" "$CLIENT_IF" "$NS_GW" "$GW_INSIDE" || return 1
  _topo_addr "$NS_CLIENT" "$CLIENT_IF" "$CLIENT_V4/24" "$CLIENT_V6/64" || return 1
  _topo_addr "$NS_GW" "$GW_INSIDE" "$GW_INSIDE_V4/24" "$GW_INSIDE_V6/64" || return 1
  _topo_default_via "$NS_CLIENT" "$CLIENT_IF" "$GW_INSIDE_V4" "$GW_INSIDE_V6" || return 1

  if [ "$with_client2" -eq 1 ]; then
    _topo_add_ns "$NS_CLIENT2" || return 1
    _topo_veth "$NS_CLIENT2" "$CLIENT2_IF" "$NS_GW" "$GW_INSIDE2" || return 1
    _topo_addr "$NS_CLIENT2" "$CLIENT2_IF" "$CLIENT2_V4/24" "$CLIENT2_V6/64" || return 1
    _topo_addr "$NS_GW" "$GW_INSIDE2" "$GW_INSIDE2_V4/24" "$GW_INSIDE2_V6/64" || return 1
    _topo_default_via "$NS_CLIENT2" "$CLIENT2_IF" "$GW_INSIDE2_V4" "$GW_INSIDE2_V6" || return 1
  fi

  # gw (outside) <-> inet; inet routes only the client prefixes back to gw; nothing has a route past gw/inet.
  _topo_veth "$NS_GW" "$GW_OUTSIDE" "$NS_INET" "$INET_IF" || return 1
  _topo_addr "$NS_GW" "$GW_OUTSIDE" "$GW_OUTSIDE_V4/24" "$GW_OUTSIDE_V6/64" || return 1
  _topo_inet_servers || return 1
  ip -n "$NS_INET" route add 10.88.0.0/16 via "$GW_OUTSIDE_V4" dev "$INET_IF" || return 1
  ip -n "$NS_INET" -6 route add fd88::/16 via "$GW_OUTSIDE_V6" dev "$INET_IF" || return 1

  ip netns exec "$NS_GW" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 >/dev/null || return 1
  topo_log "gateway topology up: prefix $TOPO_PREFIX, logs $TOPO_LOG_DIR"
}

# topo_create_host_mode: client -- inet directly (portcullis would run in the client on $CLIENT_IF).
topo_create_host_mode() {
  _topo_begin || return 1
  TOPO_MODE=host
  _topo_add_ns "$NS_CLIENT" || return 1
  _topo_add_ns "$NS_INET" || return 1
  _topo_veth "$NS_CLIENT" "$CLIENT_IF" "$NS_INET" "$INET_IF" || return 1
  _topo_addr "$NS_CLIENT" "$CLIENT_IF" "$CLIENT_V4/24" "$CLIENT_V6/64" || return 1
  _topo_addr "$NS_INET" "$INET_IF" "$GW_INSIDE_V4/24" "$GW_INSIDE_V6/64" || return 1
  _topo_inet_servers || return 1
  _topo_default_via "$NS_CLIENT" "$CLIENT_IF" "$GW_INSIDE_V4" "$GW_INSIDE_V6" || return 1
  topo_log "host-mode topology up: prefix $TOPO_PREFIX, logs $TOPO_LOG_DIR"
}

# topo_set_resolver ROLE ADDR: `ip netns exec` in ROLE sees an /etc/resolv.conf naming only ADDR (an inet
# address), so a name lookup inside the namespace never targets the machine's resolver. Removed on destroy.
topo_set_resolver() {
  local ns dir
  ns=$(topo_ns "$1") || return 1
  dir=/etc/netns/$ns
  [ ! -e "$dir" ] || topo_die "$dir exists already" || return 1
  if [ ! -d /etc/netns ]; then
    mkdir /etc/netns 2>/dev/null && TOPO_MADE_ETC_NETNS=1
  fi
  mkdir "$dir" || return 1
  TOPO_RESOLV_DIRS+=("$dir")
  printf 'nameserver %s\noptions timeout:1 attempts:1\n' "$2" >"$dir/resolv.conf" || return 1
}

# topo_set_hosts ROLE "ADDR NAME" ...: an /etc/hosts for the namespace (`ip netns exec` mounts it over
# /etc/hosts), for clients that take the name to send from their own lookup. Removed with the topology.
topo_set_hosts() {
  local ns dir role=$1
  ns=$(topo_ns "$role") || return 1
  shift
  dir=/etc/netns/$ns
  if [ ! -d "$dir" ]; then
    if [ ! -d /etc/netns ]; then
      mkdir /etc/netns 2>/dev/null && TOPO_MADE_ETC_NETNS=1
    fi
    mkdir "$dir" || return 1
    TOPO_RESOLV_DIRS+=("$dir")
  fi
  printf '%s\n' "127.0.0.1 localhost" "$@" >"$dir/hosts"
}

# ---- processes -------------------------------------------------------------------------------------------
# topo_start ROLE NAME CMD...: run CMD in the background inside a namespace, in its own process group, with
# output to $TOPO_LOG_DIR/NAME.log. Sets TOPO_LAST_PID. topo_destroy (or topo_stop NAME) ends it.
topo_start() {
  local ns name
  ns=$(topo_ns "$1") || return 1
  name=$(_topo_safe "$2")
  shift 2
  topo_log_dir || return 1
  # A non-interactive shell's background job is no process-group leader, so setsid calls setsid() and execs
  # in place (as does `ip netns exec`): $! is the command itself and leads a group holding all it forks.
  setsid ip netns exec "$ns" "$@" </dev/null >"$TOPO_LOG_DIR/$name.log" 2>&1 &
  TOPO_LAST_PID=$!
  TOPO_PIDS+=("$TOPO_LAST_PID")
  TOPO_PID_NAMES+=("$name")
}

_topo_group_alive() {  # _topo_group_alive PGID: a member of the group is still running (zombies don't count)
  ps -e -o pgid=,stat= 2>/dev/null | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'
}

_topo_kill_group() {  # _topo_kill_group PID: TERM its process group, wait up to 2 s, then KILL
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 20); do
    _topo_group_alive "$pid" || break
    sleep 0.1
  done
  if _topo_group_alive "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# topo_stop NAME: stop a process started by topo_start (and everything in its process group).
topo_stop() {
  local i name
  name=$(_topo_safe "$1")
  for i in "${!TOPO_PIDS[@]}"; do
    if [ "${TOPO_PID_NAMES[$i]}" = "$name" ]; then
      _topo_kill_group "${TOPO_PIDS[$i]}"
      unset 'TOPO_PIDS[i]' 'TOPO_PID_NAMES[i]'
    fi
  done
}

# topo_wait_port ROLE tcp|udp ADDR PORT: wait (TOPO_WAIT_TIMEOUT s) for a listener on ADDR:PORT (ADDR may be
# '*' for any); a listener on the wildcard address also counts.
topo_wait_port() {
  local ns proto=$2 addr=$3 port=$4 flag deadline
  ns=$(topo_ns "$1") || return 1
  case $proto in
    tcp) flag=-Hltn ;;
    udp) flag=-Hlun ;;
    *) topo_die "topo_wait_port: proto must be tcp or udp" || return 1 ;;
  esac
  deadline=$((SECONDS + TOPO_WAIT_TIMEOUT))
  while :; do
    if ip netns exec "$ns" ss "$flag" 2>/dev/null | awk -v a="$addr" -v p="$port" '
        { l = $4; sub(/%[^]:]*/, "", l)
          if (l == a ":" p || l == "[" a "]:" p || l == "0.0.0.0:" p || l == "*:" p || l == "[::]:" p ||
              (a == "*" && l ~ (":" p "$"))) found = 1 }
        END { exit !found }'; then
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.05
  done
  topo_die "no $proto listener on $addr:$port in $1 after ${TOPO_WAIT_TIMEOUT}s"
}

# ---- servers (in any namespace; normally inet) ------------------------------------------------------------
_topo_socat_listen() {  # _topo_socat_listen tcp|udp ADDR PORT: a socat listening address
  local fam=4 a=$2
  case $2 in *:*) fam=6 a="[$2]" ;; esac
  case $1 in
    tcp) printf 'TCP%s-LISTEN:%s,bind=%s,reuseaddr,fork\n' "$fam" "$3" "$a" ;;
    udp) printf 'UDP%s-RECVFROM:%s,bind=%s,reuseaddr,fork\n' "$fam" "$3" "$a" ;;
  esac
}

# topo_udp_roundtrip ROLE ADDR PORT TEXT: send TEXT in one datagram from ROLE, print the first datagram that
# comes back (returns as soon as it does; fails after TOPO_UDP_TIMEOUT s, default 3).
topo_udp_roundtrip() {
  # shellcheck disable=SC2016  # expanded by the inner bash
  in_ns "$1" timeout "${TOPO_UDP_TIMEOUT:-3}" bash -c \
    'exec 3<>"/dev/udp/$1/$2" && printf "%s\n" "$3" >&3 && dd bs=65535 count=1 status=none <&3' _ "$2" "$3" "$4"
}

# topo_tcp_roundtrip ROLE ADDR PORT TEXT: send TEXT over one TCP connection from ROLE, print what comes back
# until the server closes (fails after TOPO_TCP_TIMEOUT s, default 5).
topo_tcp_roundtrip() {
  local a=$2
  case $a in *:*) a="[$a]" ;; esac
  printf '%s\n' "$4" | in_ns "$1" timeout "${TOPO_TCP_TIMEOUT:-5}" socat -t 2 - "TCP:$a:$3"
}

# topo_serve_tcp_echo ROLE ADDR PORT: a TCP echo server (socat); returns once it listens.
topo_serve_tcp_echo() {
  topo_start "$1" "tcp-echo-$2-$3" socat "$(_topo_socat_listen tcp "$2" "$3")" PIPE || return 1
  topo_wait_port "$1" tcp "$2" "$3"
}

# topo_serve_udp_echo ROLE ADDR PORT: a UDP echo server (socat, one reply per datagram).
topo_serve_udp_echo() {
  topo_start "$1" "udp-echo-$2-$3" socat "$(_topo_socat_listen udp "$2" "$3")" PIPE || return 1
  topo_wait_port "$1" udp "$2" "$3"
}

# topo_serve_ftp ADDR ROOT [CONF-LINES]: vsftpd in inet on ADDR port 21, anonymous, serving ROOT: passive ports
# 30000-30004, active connections never from port 20 (the kernel's FTP helper and the data plane see plain
# ephemeral ports). CONF-LINES (newline-separated) add to its configuration, which goes next to the logs. Returns
# once it listens.
topo_serve_ftp() {
  local addr=$1 root=$2 extra=${3:-} conf listen
  topo_log_dir
  mkdir -p "$TOPO_LOG_DIR/vsftpd-empty"
  case $addr in
    *:*) listen="listen=NO
listen_ipv6=YES
listen_address6=$addr" ;;
    *) listen="listen=YES
listen_address=$addr" ;;
  esac
  conf=$TOPO_LOG_DIR/vsftpd-$addr.conf
  cat >"$conf" <<CONF
$listen
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$root
local_enable=NO
secure_chroot_dir=$TOPO_LOG_DIR/vsftpd-empty
seccomp_sandbox=NO
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30004
connect_from_port_20=NO
xferlog_enable=NO
$extra
CONF
  topo_start inet "vsftpd-$addr" vsftpd "$conf"
  topo_wait_port inet tcp "$addr" 21
}

# topo_serve_tcp_banner ROLE ADDR PORT TEXT: answers every TCP connection with the line TEXT, then closes.
topo_serve_tcp_banner() {
  local f
  topo_log_dir || return 1
  f="$TOPO_LOG_DIR/banner-$(_topo_safe "$2-$3").txt"
  printf '%s\n' "$4" >"$f" || return 1
  topo_start "$1" "tcp-banner-$2-$3" socat "$(_topo_socat_listen tcp "$2" "$3")" "OPEN:$f,rdonly" || return 1
  topo_wait_port "$1" tcp "$2" "$3"
}

# topo_serve_http ROLE ADDR PORT [BODY]: an HTTP/1.x server (socat + a bash handler) answering every request
# with 200 and the line BODY (default "portcullis-e2e ADDR:PORT"); it reads the request head before it
# answers, so clients see a clean close. Clients: use `curl --noproxy '*'` with address literals.
topo_serve_http() {
  local handler body_file
  topo_log_dir || return 1
  handler="$TOPO_LOG_DIR/http-handler.sh"
  body_file="$TOPO_LOG_DIR/http-body-$(_topo_safe "$2-$3")"
  printf '%s\n' "${4:-portcullis-e2e $2:$3}" >"$body_file" || return 1
  cat >"$handler" <<'EOF' || return 1
#!/bin/bash
# One HTTP/1.x exchange on stdin/stdout: read the request head, answer 200 with the body file, close.
while IFS= read -r -t 5 line; do
  line=${line%$'\r'}
  [ -n "$line" ] || break
done
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
  "$(wc -c <"$1")"
cat "$1"
EOF
  topo_start "$1" "http-$2-$3" socat "$(_topo_socat_listen tcp "$2" "$3")" \
    "EXEC:/bin/bash $handler $body_file" || return 1
  topo_wait_port "$1" tcp "$2" "$3"
}

# topo_serve_iperf3 ROLE ADDR PORT: an iperf3 server bound to ADDR.
topo_serve_iperf3() {
  topo_start "$1" "iperf3-$2-$3" iperf3 -s -B "$2" -p "$3" || return 1
  topo_wait_port "$1" tcp "$2" "$3"
}

# ---- cleanup ---------------------------------------------------------------------------------------------
# topo_destroy [EXIT_STATUS]: kill what was started, delete this run's namespaces. Idempotent. Logs are kept
# (and their path printed) when EXIT_STATUS is non-zero or TOPO_KEEP_LOGS=1.
topo_destroy() {
  local status=${1:-0} i ns pid
  for i in "${!TOPO_PIDS[@]}"; do
    _topo_kill_group "${TOPO_PIDS[$i]}"
  done
  TOPO_PIDS=()
  TOPO_PID_NAMES=()
  for ns in "${TOPO_NAMESPACES[@]}"; do
    # Anything still inside a namespace this run created was started by this run (a grandchild that left its
    # process group, say): end it, or the namespace would outlive its name.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  TOPO_NAMESPACES=()
  for i in "${TOPO_RESOLV_DIRS[@]}"; do
    rm -f "$i/resolv.conf" "$i/hosts"
    rmdir "$i" 2>/dev/null || true
  done
  TOPO_RESOLV_DIRS=()
  if [ "${TOPO_MADE_ETC_NETNS:-0}" = 1 ]; then
    rmdir /etc/netns 2>/dev/null || true  # only if empty: another run may be using it
    TOPO_MADE_ETC_NETNS=0
  fi
  TOPO_MODE=""
  if [ -n "$TOPO_LOG_DIR" ] && [ "$TOPO_LOG_DIR_OWNED" = 1 ]; then
    if [ "$status" -ne 0 ] || [ "${TOPO_KEEP_LOGS:-0}" = 1 ]; then
      topo_log "logs kept in $TOPO_LOG_DIR"
    else
      rm -rf "$TOPO_LOG_DIR"
    fi
    TOPO_LOG_DIR=""
    TOPO_LOG_DIR_OWNED=0
  fi
  return 0
}

# topo_trap: destroy everything on any exit (normal, error under set -e, INT, TERM), keeping the exit status.
_topo_on_exit() {
  local rc=$1
  trap '' INT TERM  # a second Ctrl-C must not cut the cleanup short
  trap - EXIT
  topo_destroy "$rc"
  exit "$rc"
}
topo_trap() {
  trap '_topo_on_exit $?' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# topo_own_namespaces: the namespaces of this run (by prefix) that exist now, one a line.
topo_own_namespaces() {
  ip netns list 2>/dev/null | awk -v p="$TOPO_PREFIX" 'index($1, p) == 1 { print $1 }'
}

# ---- assertions ------------------------------------------------------------------------------------------
_topo_pass() { TOPO_PASSED=$((TOPO_PASSED + 1)); printf 'ok   - %s\n' "$1"; }
_topo_fail() { TOPO_FAILED=$((TOPO_FAILED + 1)); printf 'FAIL - %s\n' "$1"; }

# expect_ok DESC CMD...: CMD succeeds (its output is shown when it does not).
expect_ok() {
  local desc=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    _topo_pass "$desc"
  else
    _topo_fail "$desc (exit $rc): $(tail -n 5 <<<"$out")"
  fi
}

# expect_fail DESC CMD...: CMD fails.
expect_fail() {
  local desc=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    _topo_pass "$desc"
  else
    _topo_fail "$desc (succeeded, expected a failure): $(tail -n 5 <<<"$out")"
  fi
}

# expect_eq DESC ACTUAL EXPECTED
expect_eq() {
  if [ "$2" == "$3" ]; then _topo_pass "$1"; else _topo_fail "$1: got '$2', expected '$3'"; fi
}

# expect_match DESC TEXT ERE
expect_match() {
  if grep -qE -- "$3" <<<"$2"; then _topo_pass "$1"; else _topo_fail "$1: '$2' does not match /$3/"; fi
}

# report: "N passed, M failed" alone on a line; non-zero if anything failed.
report() {
  printf '%s passed, %s failed\n' "$TOPO_PASSED" "$TOPO_FAILED"
  [ "$TOPO_FAILED" -eq 0 ]
}
