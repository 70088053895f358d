# Sourced by the lmp-8m quality tables (prune-table.sh, structured-table.sh) so
# that they share one protocol: calibration on the first three quarters of
# docs-calib.txt, held-out text the last quarter, wiki.test.raw for PPL/KLD,
# and the dense F32 model they compare against. Expects to run from the repo root.
SHARED=$(cd ../shared && pwd)
MODEL=${MODEL:-$SHARED/models/lmp-8m}
WIKI=$SHARED/data/wikitext-2/wiki.test.raw
LMP=${LMP:-$PWD/build/lmpress}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
DOCS=$SHARED/data/calib/docs-calib.txt
N=$(wc -l < "$DOCS")
head -n $((N * 3 / 4)) "$DOCS" > "$W/calib.txt"
tail -n +$((N * 3 / 4 + 1)) "$DOCS" > "$W/heldout.txt"
CAL="--calib $W/calib.txt --calib-samples 128 --calib-ctx 256"
"$LMP" convert "$MODEL" "$W/dense.gguf" --dtype f32 > /dev/null
