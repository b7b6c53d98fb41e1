#!/usr/bin/env bash
# packaging/portcullis.service passes `systemd-analyze verify` without a word about it, gives `run` only options
# the built binary takes, and says what the daemon relies on: Type=notify, a SIGHUP reload, the interface list
# as one argument, the extra options split.
#   systemd_unit_test.sh SRC_DIR BUILD_DIR     (exit 77: skipped, no systemd-analyze)
set -euo pipefail
src_dir=$1
build_dir=$2
unit="$src_dir/packaging/portcullis.service"
portcullis="$build_dir/userspace/portcullis"

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: no systemd-analyze (scripts/setup installs systemd)"
  exit 77
fi
if [ ! -x "$portcullis" ]; then
  echo "FAIL: $portcullis is not built"
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
passes=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
expect_line() {  # expect_line DESCRIPTION REGEX FILE
  if grep -qE -- "$2" "$3"; then passes=$((passes + 1)); else fail "$1: no line matches /$2/ in $3"; fi
}

# systemd-analyze checks that every Exec binary exists: the unit under test runs the one just built.
# Lines that do not name the unit (a machine without systemd as PID 1, other units' problems) are not its.
verify() {  # verify UNIT_FILE: prints the lines about it; fails when systemd-analyze fails
  local status=0 output
  output=$(systemd-analyze verify "$1" 2>&1) || status=$?
  grep -F 'portcullis.service' <<<"$output" || true
  if [ "$status" -ne 0 ] && ! grep -qF 'portcullis.service' <<<"$output"; then
    echo "systemd-analyze verify exited $status:"
    echo "$output"
  fi
  return "$status"
}
mkdir "$work/unit" "$work/broken"
sed "s#/usr/sbin/portcullis#$portcullis#g" "$unit" >"$work/unit/portcullis.service"

status=0
problems=$(verify "$work/unit/portcullis.service") || status=$?
if [ -n "$problems" ] || [ "$status" -ne 0 ]; then
  fail "systemd-analyze verify (exit $status):"$'\n'"$problems"
else
  passes=$((passes + 1))
fi

# The same check sees a problem: a copy with an unknown key and a misspelt type is flagged.
sed -e 's/^Type=notify$/Type=notifi/' -e 's/^NotifyAccess=main$/NotifyAccess=main\nNotifyAcess=main/' \
  "$work/unit/portcullis.service" >"$work/broken/portcullis.service"
problems=$(verify "$work/broken/portcullis.service") || true
expect_problem() {  # expect_problem DESCRIPTION TEXT
  if grep -qF -- "$2" <<<"$problems"; then passes=$((passes + 1)); else fail "$1 went unnoticed: '$problems'"; fi
}
expect_problem "a misspelt Type=" "Failed to parse service type"
expect_problem "an unknown key" "Unknown key 'NotifyAcess'"

# What the daemon and the operator rely on. Continuation lines are joined first, as systemd reads them.
sed -e ':join' -e '/\\$/{N;s/\\\n[[:space:]]*//;b join' -e '}' "$unit" >"$work/joined"
expect_line "notify type" '^Type=notify$' "$work/joined"
expect_line "only the main process notifies" '^NotifyAccess=main$' "$work/joined"
expect_line "reload is SIGHUP to the daemon" '^ExecReload=/bin/kill -HUP \$MAINPID$' "$work/joined"
expect_line "stop is SIGTERM" '^KillSignal=SIGTERM$' "$work/joined"
expect_line "the policy is checked before the start" \
  '^ExecStartPre=/usr/sbin/portcullis check /etc/portcullis/policy\.yaml$' "$work/joined"
expect_line "host mode on the configured uplinks, as one argument" \
  '^ExecStart=/usr/sbin/portcullis run --policy /etc/portcullis/policy\.yaml --mode host --iface \$\{PORTCULLIS_IFACES\} ' \
  "$work/joined"
expect_line "extra options, split into words" '^ExecStart=.* \$PORTCULLIS_OPTS$' "$work/joined"
expect_line "restarted after a crash" '^Restart=on-failure$' "$work/joined"
expect_line "up before the network" '^Before=network-pre\.target$' "$work/joined"
if grep -qE '^PrivateNetwork=' "$work/joined"; then fail "PrivateNetwork= would hide the host's interfaces"; fi

# Every option the unit gives `run` is one the built binary takes.
"$portcullis" run --help >"$work/run-help"
while read -r option; do
  expect_line "run takes $option" "^ +$option( |$)" "$work/run-help"
done < <(grep -E '^ExecStart=' "$work/joined" | grep -oE -- '--[a-z-]+' | sort -u)

# The defaults file is what the unit reads: both variables, as a shell reads them too.
if (
  unset PORTCULLIS_IFACES PORTCULLIS_OPTS
  # shellcheck disable=SC1091
  . "$src_dir/packaging/portcullis.default"
  [ "$PORTCULLIS_IFACES" == "eth0" ] && [ "${PORTCULLIS_OPTS-unset}" == "" ]
); then
  passes=$((passes + 1))
else
  fail "packaging/portcullis.default does not set PORTCULLIS_IFACES=eth0 and an empty PORTCULLIS_OPTS"
fi

echo "packaging.systemd_unit: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
