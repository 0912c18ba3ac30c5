#!/usr/bin/env bash
# Does the Student-t mixture + triplet term help rare findings? (issue 9) On the demo's phantom and model.
#
#   bash benchmarks/study_metric_term.sh arms          # 5 arms x seeds 0-4 (~2 h on 2 CPU cores)
#   SEEDS="0 1 2" ARMS="contrastive t-triplet-nu4 gmm-triplet" bash benchmarks/study_metric_term.sh arms  # a subset
#   bash benchmarks/study_metric_term.sh screen        # 5 knob settings x seeds 0-2 (~1 h)
#   bash benchmarks/study_metric_term.sh best ARM      # seeds 3-4 of the best screened setting
#   bash benchmarks/study_metric_term.sh table         # Table 2, paired tests against contrastive only (Holm-adjusted)
#
# Every arm is configs/demo.yaml's recipe written out (600-patient phantom, fold 0, cxrcml-cnn at 64 px, batch 64,
# 40 epochs, lr 1e-3 warm-up + cosine, no augmentation, caption subsets + absent phrases, pooled negative prompts,
# K = 40, margin 0.2, batch-hard mining, diagonal covariances, one refit per epoch from k-means, channels-last) on
# the same data and
# split (split_seed 0); `seed` moves initialisation, data order, captions and the mixture's k-means. Finished runs
# are skipped; "contrastive" is shared with benchmarks/study_zero_shot.sh. Results: BENCHMARKS.md, "The mixture and
# triplet term".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=runs/studies
recipe=(--config configs/demo.yaml --output-root "$ROOT" --probe --set model_name=cxrcml-cnn --set image_size=64
        --set batch_size=64 --set epochs=40 --set lr=1e-3 --set lr_schedule=warmup_cosine --set warmup_steps=100
        --set augmentation=False --set caption_shuffle=True --set caption_subset=True --set caption_negatives=0.5
        --set prompts=present_absent_pooled --set num_clusters=40 --set triplet_margin=0.2
        --set triplet_mining=batch_hard --set covariance_type=diag --set refit_schedule=epoch --set channels_last=True)
declare -A ARM=(
  [contrastive]="--set metric_loss_weight=0.0"
  [gmm-triplet]="--set metric_loss_weight=1.0 --set nu=.inf"
  [t-triplet-nu2]="--set metric_loss_weight=1.0 --set nu=2.0"
  [t-triplet-nu4]="--set metric_loss_weight=1.0 --set nu=4.0"
  [t-triplet-nu6]="--set metric_loss_weight=1.0 --set nu=6.0"
  [late-t-nu4]="--set metric_loss_weight=1.0 --set nu=4.0 --set metric_warmup_epochs=20 --set metric_ramp_epochs=5"
  [late-t-nu4-soft]="--set metric_loss_weight=1.0 --set nu=4.0 --set metric_warmup_epochs=20 --set metric_ramp_epochs=5 --set soft_triplets=True"
  [late-t-nu4-balanced]="--set metric_loss_weight=1.0 --set nu=4.0 --set metric_warmup_epochs=20 --set metric_ramp_epochs=5 --set balanced_sampler=True --set samples_per_cluster=4"
  [light-t-nu4]="--set metric_loss_weight=0.3 --set nu=4.0"
  [t-nu4-gmm-start]="--set metric_loss_weight=1.0 --set nu=4.0 --set cluster_gaussian_start=True"
)
MAIN=(contrastive t-triplet-nu4 gmm-triplet t-triplet-nu2 t-triplet-nu6)
KNOBS=(late-t-nu4 late-t-nu4-soft late-t-nu4-balanced light-t-nu4 t-nu4-gmm-start)
run() {  # arm seeds...
  local arm=$1; shift
  # shellcheck disable=SC2086
  python -m monai_cxrcml.experiments run "$arm" "${recipe[@]}" ${ARM[$arm]} --seeds "$@"
}
case "${1:-}" in
  arms) for seed in ${SEEDS:-0 1 2 3 4}; do for arm in ${ARMS:-${MAIN[*]}}; do run "$arm" "$seed"; done; done ;;
  screen) for arm in "${KNOBS[@]}"; do run "$arm" 0 1 2; done ;;
  best) run "${2:?name the best screened arm}" 3 4 ;;
  table) python -m monai_cxrcml.experiments compare \
           $(for arm in "${MAIN[@]}" "${KNOBS[@]}"; do compgen -G "$ROOT/$arm/fold*/metrics.json" > /dev/null && echo "$ROOT/$arm"; done) --baseline contrastive --probe ;;
  *) echo "usage: $0 arms|screen|best ARM|table" >&2; exit 2 ;;
esac
