#!/usr/bin/env bash
# Zero-shot from scratch (issue 8): caption recipes, image tower and prompts on the demo's phantom, 3 seeds each.
#
#   bash benchmarks/study_zero_shot.sh            # ~75 min on 2 CPU cores; finished runs are skipped
#
# Every arm is configs/demo.yaml (600-patient phantom, fold 0, 64 px, batch 64, 30 epochs, lr 1e-3 with 100 warm-up
# iterations then cosine decay) with the contrastive loss alone (metric_loss_weight 0), so only the caption recipe
# changes between arms; each run also fits a linear probe on its best checkpoint's image embeddings (the ceiling the
# image tower sets). Results: BENCHMARKS.md, "Zero-shot from scratch".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=runs/study-zero-shot
SEEDS="0 1 2"
common=(--config configs/demo.yaml --output-root "$ROOT" --seeds $SEEDS --probe
        --set metric_loss_weight=0 --set lr_schedule=warmup_cosine --set lr=1e-3 --set epochs=30
        --set model_name=cxrcml-cnn --set prompts=present_absent_pooled)
paper=(--set caption_shuffle=false --set caption_subset=false --set caption_negatives=0.0)
run() { python -m monai_cxrcml.experiments run "$@"; }

run paper-caption       "${common[@]}" "${paper[@]}"
run shuffled            "${common[@]}" --set caption_shuffle=true --set caption_subset=false --set caption_negatives=0.0
run subsets             "${common[@]}" --set caption_shuffle=true --set caption_subset=true --set caption_negatives=0.0
run absent-phrases      "${common[@]}" --set caption_shuffle=true --set caption_subset=false --set caption_negatives=0.5
run subsets+absent      "${common[@]}" --set caption_shuffle=true --set caption_subset=true --set caption_negatives=0.5
run subsets+absent-vit  "${common[@]}" --set caption_shuffle=true --set caption_subset=true --set caption_negatives=0.5 \
                        --set model_name=cxrcml-tiny

# the same checkpoints scored with each class's own negative prompt instead of the pooled one
for seed in $SEEDS; do
  out="$ROOT/subsets+absent/fold0-seed$seed"
  [ -f "$out/own-negative/metrics.json" ] || python -m monai.bundle run evaluating \
    --config_file "['bundle/configs/train.yaml','configs/demo.yaml','bundle/configs/evaluate.yaml']" \
    --model_name cxrcml-cnn --prompts present_absent --ckpt_path "$out/models/model.pt" \
    --output_dir "$out/own-negative" --n_bootstrap 0 > /dev/null 2>&1
done
python -m monai_cxrcml.experiments compare "$ROOT"/{paper-caption,shuffled,subsets,absent-phrases,subsets+absent,subsets+absent-vit} \
  --baseline paper-caption --probe
