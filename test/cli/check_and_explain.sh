#!/usr/bin/env bash
# The real `portcullis` binary on the example policies and on broken ones: exit codes, locations, verdicts.
set -euo pipefail
portcullis=$1
src_dir=$2
examples="$src_dir/rules/examples"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
passes=0
expect() {  # expect DESCRIPTION ACTUAL EXPECTED
  if [ "$2" == "$3" ]; then
    passes=$((passes + 1))
  else
    echo "FAIL: $1: got '$2', expected '$3'"
    failures=$((failures + 1))
  fi
}
expect_match() {  # expect_match DESCRIPTION TEXT REGEX
  if grep -qE -- "$3" <<<"$2"; then
    passes=$((passes + 1))
  else
    echo "FAIL: $1: '$2' does not match /$3/"
    failures=$((failures + 1))
  fi
}
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print("null" if v is None else v)' "$1"; }

# Every example is accepted.
for policy in "$examples"/*.yaml; do
  status=0
  "$portcullis" check "$policy" >/dev/null 2>"$work/err" || status=$?
  expect "check $(basename "$policy")" "$status" 0
  expect "check $(basename "$policy") prints nothing on stderr" "$(cat "$work/err")" ""
done

# A malformed policy is rejected with every error at its line and column.
cat >"$work/bad.yaml" <<'YAML'
version: 1
defaults:
  action: maybe
rules:
  - name: web
    dst: "exa mple.com"
    proto: https
  - dst: 10.0.0.0/8
    proto: tcp
    ports: [80, "90-85"]
YAML
status=0
"$portcullis" check "$work/bad.yaml" >/dev/null 2>"$work/err" || status=$?
expect "check bad.yaml exit status" "$status" 1
errors=$(grep -c ': error: ' "$work/err" || true)
expect "check bad.yaml reports every error" "$errors" 3
expect_match "action error location" "$(cat "$work/err")" "bad.yaml:3:11: error: defaults.action must be one of allow, deny"
expect_match "name error location" "$(cat "$work/err")" "bad.yaml:6:10: error: bad name 'exa mple.com'"
expect_match "range error location" "$(cat "$work/err")" "bad.yaml:10:17: error: port range '90-85' is reversed"

status=0
"$portcullis" check "$work/missing.yaml" 2>"$work/err" || status=$?
expect "check of a missing file exits 1" "$status" 1
expect_match "missing file is named" "$(cat "$work/err")" "missing.yaml: error: cannot read"

# A shadowed rule is a warning, and the policy is still accepted.
cat >"$work/shadow.yaml" <<'YAML'
version: 1
rules:
  - {name: api, dst: api.example.com, proto: https}
  - {name: block, dst: .example.com, proto: any, action: deny}
YAML
status=0
"$portcullis" check "$work/shadow.yaml" >/dev/null 2>"$work/err" || status=$?
expect "check with a warning exits 0" "$status" 0
expect_match "shadow warning" "$(cat "$work/err")" "shadow.yaml:3:5: warning: rule 'api' never allows anything"

# explain agrees with the documented semantics on the demo policy.
demo="$examples/demo.yaml"
explain() { "$portcullis" explain "$demo" --format json "$@"; }
out=$(explain --src 10.88.1.2 --dst 198.18.0.10 --proto tcp --dport 443 --name allowed.test)
expect "allowed.test over TLS" "$(json_field verdict <<<"$out")/$(json_field rule <<<"$out")" "allow/allowed-web"
expect "allowed.test depends on its DNS binding" "$(json_field reason <<<"$out")" "rule-if-dns-binding"
out=$(explain --src 10.88.1.2 --dst 198.18.0.10 --proto udp --dport 443 --name ALLOWED.test.)
expect "allowed.test over QUIC, name normalized" "$(json_field verdict <<<"$out")/$(json_field l7 <<<"$out")" "allow/quic"
out=$(explain --src 10.88.1.2 --dst 198.18.0.20 --proto tcp --dport 443 --name www.evil.test)
expect "evil.test is denied by its rule" "$(json_field verdict <<<"$out")/$(json_field rule <<<"$out")" "deny/no-evil"
out=$(explain --src 10.88.1.2 --dst 198.18.0.99 --proto tcp --dport 443 --name other.test)
expect "unlisted name falls to the default" "$(json_field verdict <<<"$out")/$(json_field rule <<<"$out")/$(json_field reason <<<"$out")" "deny/null/default"
out=$(explain --src 10.88.1.2 --dst 198.18.0.53 --proto udp --dport 53)
expect "DNS to the resolver" "$(json_field verdict <<<"$out")/$(json_field rule <<<"$out")" "allow/dns.resolvers"
out=$(explain --src fd88:1::2 --dst 2001:db8::10 --proto icmpv6)
expect "ping6 from the sandbox" "$(json_field verdict <<<"$out")/$(json_field rule <<<"$out")" "allow/ping-internet-v6"
out=$(explain --src 10.99.0.2 --dst 198.18.0.10 --proto tcp --dport 443 --name allowed.test)
expect "spoofed source in gateway mode" "$(json_field verdict <<<"$out")/$(json_field reason <<<"$out")" "deny/source-not-in-group"

text=$("$portcullis" explain "$demo" --src 10.88.1.2 --dst 198.18.0.21 --proto tcp --dport 21)
expect_match "text output names the rule and its location" "$text" "^rule: ftp-server \(.*demo.yaml:[0-9]+:[0-9]+\)$"
expect_match "text output gives the verdict" "$text" "^verdict: allow$"

status=0
"$portcullis" explain "$demo" --src 10.88.1.2 --dst 198.18.0.10 --proto tcp >/dev/null 2>&1 || status=$?
expect "explain without --dport for tcp is a usage error" "$status" 2

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
