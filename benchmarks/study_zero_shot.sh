#!/usr/bin/env bash
# Zero-shot from scratch (issue 8): caption recipes, image tower, augmentation and prompts on the demo's phantom,
# 3 seeds each.
#
#   bash benchmarks/study_zero_shot.sh            # ~90 min on 2 CPU cores; finished runs are skipped
#
# Every arm is configs/demo.yaml's recipe written out (600-patient phantom, fold 0, cxrcml-cnn at 64 px, batch 64,
# 40 epochs, lr 1e-3 with 100 warm-up iterations then cosine decay, no augmentation, pooled negative prompts) with
# the contrastive loss alone (metric_loss_weight 0); each arm changes one thing. Every run also fits a linear probe
# on its best checkpoint's image embeddings (the ceiling the image tower sets). The arm named "contrastive"
# (caption subsets + absent phrases: the demo's recipe) is also the baseline of benchmarks/study_metric_term.sh,
# which shares runs/studies. Results: BENCHMARKS.md, "Zero-shot from scratch".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=runs/studies
SEEDS="0 1 2"
common=(--config configs/demo.yaml --output-root "$ROOT" --seeds $SEEDS --probe
        --set metric_loss_weight=0.0 --set model_name=cxrcml-cnn --set image_size=64 --set batch_size=64
        --set epochs=40 --set lr=1e-3 --set lr_schedule=warmup_cosine --set warmup_steps=100 --set augmentation=False
        --set prompts=present_absent_pooled --set covariance_type=diag --set channels_last=True)
recipe=(--set caption_shuffle=True --set caption_subset=True --set caption_negatives=0.5)
run() { python -m monai_cxrcml.experiments run "$@"; }

run contrastive     "${common[@]}" "${recipe[@]}"
run paper-caption   "${common[@]}" --set caption_shuffle=False --set caption_subset=False --set caption_negatives=0.0
run subsets         "${common[@]}" --set caption_shuffle=True --set caption_subset=True --set caption_negatives=0.0
run absent-phrases  "${common[@]}" --set caption_shuffle=True --set caption_subset=False --set caption_negatives=0.5
run with-augmentation "${common[@]}" "${recipe[@]}" --set augmentation=True
run vit-tower       "${common[@]}" "${recipe[@]}" --set model_name=cxrcml-tiny

# the demo recipe's checkpoints scored with each class's own negative prompt instead of the pooled one
for seed in $SEEDS; do
  out="$ROOT/contrastive/fold0-seed$seed"
  [ -f "$out/own-negative/metrics.json" ] || python -m monai.bundle run evaluating \
    --config_file "['bundle/configs/train.yaml','configs/demo.yaml','bundle/configs/evaluate.yaml']" \
    --metric_loss_weight 0.0 --prompts present_absent --ckpt_path "$out/models/model.pt" \
    --output_dir "$out/own-negative" --n_bootstrap 0 > /dev/null 2>&1
done
python -m monai_cxrcml.experiments compare \
  "$ROOT"/{paper-caption,subsets,absent-phrases,contrastive,with-augmentation,vit-tower} \
  --baseline paper-caption --probe
