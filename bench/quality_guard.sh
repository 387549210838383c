#!/usr/bin/env bash
# Quality guard for the precision options (issue 8): nDCG@10 on KorQuAD v1 dev retrieval (dense)
# and Spearman (cosine) on KorSTS dev, per precision, with the shared me5-small-ko model.
# Usage: bash bench/quality_guard.sh [OUT_DIR]   (from the repo root; ~15 min on 2 quiet cores)
set -euo pipefail
out="${1:-bench-out/guard}"; mkdir -p "$out"
data=../shared/data; model=../shared/models/me5-small-ko
ks="${PYTHON:-python} -m kosearch -q"
export HF_HUB_OFFLINE=1 KOSEARCH_CACHE="$out/cache"
for p in fp32 bf16 int8; do
    $ks eval sts "$data/korsts_dev" --model "$model" --precision "$p" --json > "$out/sts-$p.json"
    $ks eval retrieval "$data/korquad_v1_retrieval_dev" --model "$model" --mode dense \
        --precision "$p" --json > "$out/retrieval-$p.json"
done
# What `kosearch index --precision bf16` + `kosearch query` do: bf16 passages, fp32 queries
# (the ONNX query encoder gives the torch fp32 vectors, cosine >= 0.9999). The bf16 evaluation
# index cached above is such an index; `--index` queries it with the fp32 torch encoder.
idx=$(dirname "$(grep -l '"precision": "bf16"' "$out"/cache/eval/*/manifest.json | head -1)")
$ks eval retrieval "$data/korquad_v1_retrieval_dev" --index "$idx" --mode dense \
    --json > "$out/retrieval-bf16-passages-fp32-queries.json"
for f in "$out"/*.json; do echo "$(basename "$f"): $(cat "$f")"; done
