#!/usr/bin/env bash
# Two lmpress builds on the same files, alternating who goes first each round
# (shared VMs drift): pp and tg tokens/s of each, and NEW/OLD.
# Usage: bench/ab-binaries.sh OLD_LMPRESS NEW_LMPRESS FILE.gguf... (ROUNDS, P, N, REPS in the environment)
set -euo pipefail
OLD=$1 NEW=$2
shift 2
ROUNDS=${ROUNDS:-3} P=${P:-128} N=${N:-32} REPS=${REPS:-3}
run() {  # binary file -> "pp tg"
  "$1" bench "$2" -p "$P" -n "$N" -r "$REPS" -t 2 --json --no-bandwidth |
    python3 -c 'import json,sys; t=json.load(sys.stdin); print(" ".join("%.2f" % x["avg_ts"] for x in t))'
}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); flags: $(grep -m1 -o -w 'avx2\|avx512f\|avx512_vnni\|avx512vbmi\|avx_vnni\|amx_tile' /proc/cpuinfo | sort -u | xargs)"
echo "| file | test | old t/s | new t/s | new/old |"
echo "|---|---|--:|--:|--:|"
for f in "$@"; do
  old_pp=() old_tg=() new_pp=() new_tg=()
  for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then o=$(run "$OLD" "$f"); n=$(run "$NEW" "$f"); else n=$(run "$NEW" "$f"); o=$(run "$OLD" "$f"); fi
    old_pp+=("${o% *}") old_tg+=("${o#* }") new_pp+=("${n% *}") new_tg+=("${n#* }")
  done
  python3 - "$f" "${old_pp[*]}" "${new_pp[*]}" "${old_tg[*]}" "${new_tg[*]}" "$P" "$N" <<'PY'
import sys, statistics as st
f, op, np_, ot, nt, P, N = sys.argv[1:]
for name, o, n in (("pp" + P, op, np_), ("tg" + N, ot, nt)):
    o = [float(x) for x in o.split()]; n = [float(x) for x in n.split()]
    mo, mn = st.mean(o), st.mean(n)
    print(f"| {f.split('/')[-1]} | {name} | {mo:.1f} ± {st.pstdev(o):.1f} | {mn:.1f} ± {st.pstdev(n):.1f} | {mn / mo:.3f} |")
PY
done
