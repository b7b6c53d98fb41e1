#!/usr/bin/env bash
# Offline throughput of `portcullis replay` against ndpiReader (nDPI) and tshark on the same captures, one core
# each, in one run:
#   corpus  the Ethernet captures of ../shared/corpus, merged into one pcap (libpcap reads no pcapng whose
#           interfaces have different link types)
#   large   the corpus repeated REPEAT times (default 40)
# For each tool and file: wall time (best of RUNS, default 3) and packets per second. portcullis identifies every
# flow and decides it under rules/examples/demo.yaml; ndpiReader classifies every flow; tshark dissects every
# packet and prints the ClientHello server names.
# Usage: bench/replay/compare.sh   (no root; needs mergecap, ndpiReader and tshark: scripts/setup installs them)
set -euo pipefail
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORTCULLIS_BIN=${PORTCULLIS_BIN:-$src_dir/build/userspace/portcullis}
CORPUS=${CORPUS:-$src_dir/../shared/corpus}
REPEAT=${REPEAT:-40}
RUNS=${RUNS:-3}
for tool in mergecap capinfos ndpiReader tshark taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/setup installs it)" >&2; exit 1; }
done
[ -x "$PORTCULLIS_BIN" ] || { echo "build first: $PORTCULLIS_BIN is missing" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pc-replay-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The Ethernet captures mergecap can read whole (two of the corpus are damaged on purpose).
captures=()
while IFS= read -r capture; do
  if capinfos -E "$capture" 2>/dev/null | grep -q 'Ethernet$'; then captures+=("$capture"); fi
done < <(find "$CORPUS" -name '*.pcap' -o -name '*.pcapng' | sort)
mergecap -a -F pcap -w "$work/corpus.pcap" "${captures[@]}"
copies=()
for ((i = 0; i < REPEAT; i++)); do copies+=("$work/corpus.pcap"); done
mergecap -a -F pcap -w "$work/large.pcap" "${copies[@]}"

packets_of() { tshark -r "$1" -T fields -e frame.number 2>/dev/null | wc -l; }
best_seconds() {  # best_seconds CMD...: the shortest wall time of RUNS runs, on CPU 0
  local best="" t0 t1 s
  for ((r = 0; r < RUNS; r++)); do
    t0=${EPOCHREALTIME/./}
    taskset -c 0 "$@" >/dev/null 2>"$work/stderr" || { echo "failed: $* ($(tail -n 1 "$work/stderr"))" >&2; exit 1; }
    t1=${EPOCHREALTIME/./}
    s=$((t1 - t0))
    if [ -z "$best" ] || [ "$s" -lt "$best" ]; then best=$s; fi
  done
  echo "$best"
}

printf '%-8s %10s %-12s %12s %14s\n' file packets tool seconds packets/s
for file in corpus large; do
  path=$work/$file.pcap
  n=$(packets_of "$path")
  for tool in portcullis ndpiReader tshark; do
    case $tool in
      portcullis) us=$(best_seconds "$PORTCULLIS_BIN" replay --policy "$src_dir/rules/examples/demo.yaml" "$path") ;;
      ndpiReader) us=$(best_seconds ndpiReader -q -i "$path") ;;
      tshark) us=$(best_seconds tshark -r "$path" -Y tls.handshake.type==1 -T fields -e tls.handshake.extensions_server_name) ;;
    esac
    printf '%-8s %10d %-12s %12s %14d\n' "$file" "$n" "$tool" "$(awk -v u="$us" 'BEGIN { printf "%.3f", u / 1e6 }')" \
      "$(awk -v n="$n" -v u="$us" 'BEGIN { printf "%d", n / (u / 1e6) }')"
  done
done
