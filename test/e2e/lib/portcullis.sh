# shellcheck shell=bash
# Running `portcullis run` inside a topology of lib/topology.sh, for the e2e tests and the demo.
# Source lib/topology.sh first, set PC_BIN to the portcullis binary and PC_TCX_PROGRAMS to the build's
# test/portcullis_tcx_programs (it lists TCX hooks, which this system's bpftool and tc do not show), then:
#   pc_trap                              # instead of topo_trap: stops the daemons, removes their pins, then
#                                        # destroys the topology, on every exit path
#   pc_start gw gw-a --policy P --mode gateway --inside "$GW_INSIDE" --outside "$GW_OUTSIDE"
#   expect_log "allow logged" '"verdict":"allow"' '"rule":"web"'
#   pc_stop TERM
#
# The daemon enters the namespace with `nsenter --net`, not `ip netns exec`: the latter gives its command a
# private /sys without the machine's bpffs, where pins would die with the daemon and a restarted one could not
# adopt them. Its pins go to a directory of this run only (PC_PIN_DIR, /sys/fs/bpf/pc-e2e-...), never to a real
# deployment's.

PC_BIN=${PC_BIN:-}
PC_TCX_PROGRAMS=${PC_TCX_PROGRAMS:-}
PC_PIN_DIR=${PC_PIN_DIR:-/sys/fs/bpf/pc-e2e-$$-$RANDOM}
PC_PID=""       # the daemon started last
PC_PIDS=()      # every daemon this run started
PC_LOG=""       # its JSON log
PC_ERR=""       # its stderr
PC_EXIT=""      # its exit status, once pc_stop or pc_kill9 waited for it

pc_now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

_pc_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# pc_wait_log STRING [SECONDS]: wait (default 10 s) for a line of $PC_LOG holding STRING; fails early when
# the daemon exits.
pc_wait_log() {
  local deadline=$((SECONDS + ${2:-10}))
  while :; do
    if grep -qF -- "$1" "$PC_LOG" 2>/dev/null; then return 0; fi
    _pc_alive "$PC_PID" || { grep -qF -- "$1" "$PC_LOG" 2>/dev/null; return; }
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# pc_start ROLE NAME RUN-ARGS...: start `portcullis run RUN-ARGS` in ROLE's network namespace with this run's
# pin directory and the log $TOPO_LOG_DIR/NAME.jsonl, and wait for its ready line.
pc_start() {
  local role=$1 name=$2 ns
  shift 2
  [ -x "$PC_BIN" ] || topo_die "PC_BIN '$PC_BIN' is not an executable" || return 1
  ns=$(topo_ns "$role") || return 1
  topo_log_dir || return 1
  PC_LOG="$TOPO_LOG_DIR/$name.jsonl"
  PC_ERR="$TOPO_LOG_DIR/$name.err"
  : >"$PC_LOG"
  setsid nsenter --net="/run/netns/$ns" -- "$PC_BIN" run --pin-dir "$PC_PIN_DIR" --log "$PC_LOG" "$@" \
    </dev/null >"$PC_ERR" 2>&1 &
  PC_PID=$!
  PC_PIDS+=("$PC_PID")
  PC_EXIT=""
  if ! pc_wait_log '"event":"ready"' 10; then
    topo_log "portcullis ($name) did not get ready; its stderr:"
    sed 's/^/    /' "$PC_ERR" >&2
    return 1
  fi
}

# pc_run_once ROLE PIN_DIR RUN-ARGS...: run `portcullis run` in the foreground (for starts that must fail),
# printing its output; if it gets ready after all, it is stopped with SIGTERM after 10 s (status 124). PIN_DIR
# must be a directory of this run (PC_PIN_DIR-something); it is removed afterwards if left.
pc_run_once() {
  local role=$1 pin=$2 ns rc=0
  shift 2
  case $pin in "$PC_PIN_DIR"?*) ;; *) topo_die "pc_run_once: $pin is not below $PC_PIN_DIR-" || return 1 ;; esac
  ns=$(topo_ns "$role") || return 1
  timeout 10 nsenter --net="/run/netns/$ns" -- "$PC_BIN" run --pin-dir "$pin" --log - "$@" </dev/null 2>&1 || rc=$?
  [ ! -e "$pin" ] || rm -rf -- "$pin"
  return "$rc"
}

# pc_stop [SIGNAL]: send SIGNAL (default TERM) to the daemon and wait for it; its status is in PC_EXIT.
pc_stop() {
  local rc=0
  kill -"${1:-TERM}" "$PC_PID" 2>/dev/null || true
  wait "$PC_PID" 2>/dev/null || rc=$?
  PC_EXIT=$rc
}

# pc_signal SIGNAL: send a signal and return at once (SIGHUP).
pc_signal() { kill -"$1" "$PC_PID"; }

# pc_log_line STRING...: print the first line of $PC_LOG holding every STRING; waits up to 3 s for it.
pc_log_line() {
  local deadline=$((SECONDS + 3)) line s found
  while :; do
    while IFS= read -r line; do
      found=1
      for s in "$@"; do
        [[ $line == *"$s"* ]] || { found=0; break; }
      done
      if [ "$found" = 1 ]; then
        printf '%s\n' "$line"
        return 0
      fi
    done <"$PC_LOG"
    [ "$SECONDS" -lt "$deadline" ] || { echo "no line of $PC_LOG holds: $*"; return 1; }
    sleep 0.1
  done
}

# expect_log DESC STRING...: a line of the daemon's log holds every STRING.
expect_log() {
  local desc=$1
  shift
  expect_ok "$desc" pc_log_line "$@"
}

# pc_refused_fast ROLE ADDR PORT: a TCP connect gets ECONNREFUSED, in under a second.
pc_refused_fast() {
  local out t0 t1
  t0=$(pc_now_ms)
  if out=$(in_ns "$1" nc -vz -w 3 "$2" "$3" 2>&1); then
    echo "connected: $out"
    return 1
  fi
  t1=$(pc_now_ms)
  grep -q "Connection refused" <<<"$out" || { echo "not refused: $out"; return 1; }
  [ $((t1 - t0)) -lt 1000 ] || { echo "refused only after $((t1 - t0)) ms"; return 1; }
}

# pc_connect_times_out ROLE ADDR PORT SECONDS: a TCP connect is neither answered nor refused for SECONDS.
pc_connect_times_out() {
  local out t0 t1
  t0=$(pc_now_ms)
  if out=$(in_ns "$1" nc -vz -w "$4" "$2" "$3" 2>&1); then
    echo "connected: $out"
    return 1
  fi
  t1=$(pc_now_ms)
  ! grep -q "refused" <<<"$out" || { echo "refused: $out"; return 1; }
  [ $((t1 - t0)) -ge $(($4 * 1000 - 100)) ] || { echo "failed after $((t1 - t0)) ms: $out"; return 1; }
}

# pc_ping_refused ROLE ADDR: one ping is answered at once with an administratively-prohibited error
# (ping prints "Packet filtered" for ICMP, "Administratively prohibited" for ICMPv6).
pc_ping_refused() {
  local out t0 t1
  t0=$(pc_now_ms)
  if out=$(in_ns "$1" ping -c 1 -W 3 "$2" 2>&1); then
    echo "answered: $out"
    return 1
  fi
  t1=$(pc_now_ms)
  grep -qE "Packet filtered|Administratively prohibited" <<<"$out" || { echo "no admin-prohibited: $out"; return 1; }
  [ $((t1 - t0)) -lt 1000 ] || { echo "refused only after $((t1 - t0)) ms"; return 1; }
}

# pc_tcx_programs ROLE IF...: the programs on the interfaces' TCX hooks, one line each ("IF ingress|egress ID
# NAME", NAME cut to 15 characters), in the order they run; nothing when the kernel has no TCX.
pc_tcx_programs() {
  local role=$1 rc=0
  shift
  [ -x "$PC_TCX_PROGRAMS" ] || topo_die "PC_TCX_PROGRAMS '$PC_TCX_PROGRAMS' is not an executable" || return 1
  in_ns "$role" "$PC_TCX_PROGRAMS" "$@" 2>/dev/null || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 3 ] || { echo "cannot list the TCX programs of $*" >&2; return 1; }
}

# pc_tc_hook ROLE IF: how portcullis attaches its TC programs on this kernel: "tcx" where the kernel has TCX,
# else "tc" (clsact). The ready line's hooks are "$(pc_tc_hook ...)-ingress" and "-egress".
pc_tc_hook() {
  local rc=0
  [ -x "$PC_TCX_PROGRAMS" ] || topo_die "PC_TCX_PROGRAMS '$PC_TCX_PROGRAMS' is not an executable" || return 1
  in_ns "$1" "$PC_TCX_PROGRAMS" "$2" >/dev/null 2>&1 || rc=$?
  case $rc in
    0) echo tcx ;;
    3) echo tc ;;
    *) topo_die "cannot tell whether the kernel has TCX" ;;
  esac
}

# pc_no_programs ROLE IF...: nothing of ours (or anyone's) is attached to the interfaces: no XDP program,
# no TCX program, no tc filter, no clsact qdisc.
pc_no_programs() {
  local role=$1 dev out
  shift
  for dev in "$@"; do
    out=$(in_ns "$role" ip -d link show dev "$dev")
    ! grep -q "prog/xdp" <<<"$out" || { echo "$dev: XDP attached: $out"; return 1; }
    out=$(pc_tcx_programs "$role" "$dev") || return 1
    [ -z "$out" ] || { echo "$dev: TCX programs: $out"; return 1; }
    out=$(in_ns "$role" tc filter show dev "$dev" ingress 2>&1; in_ns "$role" tc filter show dev "$dev" egress 2>&1)
    [ -z "$out" ] || { echo "$dev: tc filters: $out"; return 1; }
    ! in_ns "$role" tc qdisc show dev "$dev" | grep -q clsact || { echo "$dev: a clsact qdisc is left"; return 1; }
  done
  # A bpftool that knows TCX (7.3+) lists its programs as "tcx/ingress"; 7.1 shows XDP and tc filters only.
  out=$(in_ns "$role" bpftool net show)
  ! grep -qE "portcullis|driver id|generic id|tcx/" <<<"$out" || { echo "bpftool net show: $out"; return 1; }
}

# pc_cleanup: stop every daemon this run started (TERM, then KILL after 5 s) and remove this run's pins.
pc_cleanup() {
  local pid i
  for pid in "${PC_PIDS[@]}"; do
    _pc_alive "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
      _pc_alive "$pid" || break
      sleep 0.1
    done
    _pc_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
  done
  PC_PIDS=()
  case $PC_PIN_DIR in
    /sys/fs/bpf/pc-e2e-* | /sys/fs/bpf/pc-demo-*) [ ! -e "$PC_PIN_DIR" ] || rm -rf -- "$PC_PIN_DIR" ;;
  esac
}

_pc_on_exit() {
  local rc=$1
  trap '' INT TERM
  trap - EXIT
  pc_cleanup
  topo_destroy "$rc"
  exit "$rc"
}

# pc_trap: on EXIT, INT and TERM stop the daemons and remove their pins, then destroy the topology.
pc_trap() {
  trap '_pc_on_exit $?' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
