#!/usr/bin/env bash
# Enhanced vs plain mask decoder (issue 13, item 5): the default click model's decoder fine-tuned on
# this CPU twice with the same data, steps, seed and recipe, once as it is (enhanced: global
# attention + 2 gated extra two-way layers) and once with those added parts dropped (plain: what the
# default computes with every gate at zero). Only the decoder learns; the encoder output is cached
# (both runs share one cache file). bf16 autocast, one torch thread per run.
#   DECODER=enhanced bash benchmarks/decoder_ablation.sh   # -> runs/decoder_ablation/enhanced/click.pt
#   DECODER=plain bash benchmarks/decoder_ablation.sh      # -> runs/decoder_ablation/plain/click.pt
#   DECODER=enhanced GATE_LR_SCALE=30 bash benchmarks/decoder_ablation.sh  # gates at 30x the learning rate
#                                                          # -> runs/decoder_ablation/enhanced_gate_lr30/click.pt
# Resumes from the run folder's last.pt when interrupted (rerun the same command). Then
#   python benchmarks/decoder_ablation.py   # held-out NoC, gates, gate ablation
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
decoder=${DECODER:?set DECODER=enhanced or DECODER=plain}
scale=${GATE_LR_SCALE:-1}
out=runs/decoder_ablation/$decoder
[ "$scale" = 1 ] || out=${out}_gate_lr$scale
mkdir -p "$out"
for other in runs/decoder_ablation/*/views.pt; do  # the same images, encoder and seed: the same cache
  [ -e "$other" ] && [ ! -e "$out/views.pt" ] && ln "$other" "$out/views.pt"
done
OMP_NUM_THREADS=1 .venv/bin/napari-cosas train-decoder \
  --data "$dev/glas/fit/images" "$dev/glas/fit/masks" --data "$dev/ebhi/fit/images" "$dev/ebhi/fit/masks" \
  --out "$out" --start-from weights/click_default.pt --decoder "$decoder" --train decoder \
  --steps "${STEPS:-150}" --batch-size 8 --lr 1e-4 --max-rounds 3 --views 1 \
  --mask-prompts 0.5 --click-focus 1.0 --checkpoint-every 25 --seed 0 --precision bf16 --gate-lr-scale "$scale" --device cpu
