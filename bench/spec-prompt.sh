#!/usr/bin/env bash
# Writes the input-grounded prompt of the speculative-decoding benches to $1: a
# docs-calib.txt passage, then its first 60 characters again to be continued (no
# trailing newline: llama.cpp's -f would drop it). Run from the repository root.
set -euo pipefail
python3 - "$1" <<'PY'
import sys
t = open("../shared/data/calib/docs-calib.txt").read()
i = t.index("NILFS2 is a log-structured")
p = t[i:i + 420]
open(sys.argv[1], "w").write(p + "\n\n" + p[:60])
PY
