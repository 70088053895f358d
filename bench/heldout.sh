# Sourced by the recovery benches (recover.sh, qat-scales.sh): docs-calib.txt split into $W/train.txt (the first 90%
# of its lines: training and calibration) and $W/heldout.txt (the last 10%, never trained on nor calibrated with),
# and ppl / kld of a model on the held-out part (needs LMP, MODEL, CTX, TEXT, W).
lines=$(wc -l < "$TEXT"); keep=$((lines * 9 / 10))
head -n "$keep" "$TEXT" > "$W/train.txt"; tail -n +"$((keep + 1))" "$TEXT" > "$W/heldout.txt"
ppl() { "$LMP" perplexity "$1" -f "$W/heldout.txt" -c "$CTX" --json | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'; }
kld() { "$LMP" kld "$MODEL" "$1" -f "$W/heldout.txt" -c "$CTX" --json | python3 -c 'import json,sys; print("%.5f" % json.load(sys.stdin)["kld"]["value"])'; }
