#!/usr/bin/env bash
# The GPU figures of docs/speed.md, in one run on a machine with a CUDA GPU
# (from the repository root, with the project installed):
#
#     bash tools/gpu_check.sh 2>&1 | tee gpu_check.log
#
# 1. tests/test_gpu.py (Runner on cuda vs cpu, benchmark on cuda);
# 2. OV-EVA (NACLIP base, lexicon vocabulary, warm caches) against its base
#    on ADE-sized images (the photos in $IMAGE_DIR when set, e.g. ADE20K's
#    images/validation, else random 512x683 images), random ViT-B/16, fp32 / bf16 /
#    fp16: ms/image, peak GPU memory per stage, and the ADE val (2,000
#    images) time that follows;
# 3. the five bases side by side in bf16 (ProxyCLIP and CorrCLIP with the
#    VFM in $OV_EVA_VFM, a hub id or local folder; default the tiny random
#    DINO, which no hub is needed for: their VFM figures are then not
#    ViT-B/8's, say so when copying them).
# Environment: PYTHON (default python), IMAGES (default 16), ROUNDS (3),
# IMAGE_DIR (default: random images).
set -euo pipefail
PY=${PYTHON:-python}
IMAGES=${IMAGES:-16}
ROUNDS=${ROUNDS:-3}
PHOTOS=(${IMAGE_DIR:+--image-dir "$IMAGE_DIR"})
VFM=${OV_EVA_VFM:-ov-eva-tiny-dino}

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
"error: no CUDA GPU visible to PyTorch: run tools/gpu_check.sh on a GPU machine")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

"$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py

ade_time() {  # the last report's OV-EVA ms/image, as a 2,000-image time
    grep -E '^ov-eva \(warm caches\):' | tail -1 |
        sed -E 's/.* ([0-9]+) ms\/image.*/\1/' |
        awk '{printf "ADE val (2000 images) at %d ms/image: %.0f s\n", $1, $1 * 2 / 1}'
}

for amp in fp32 bf16 fp16; do
    echo "== OV-EVA vs NACLIP, ADE config, $amp"
    if [ "$amp" = fp32 ]; then precision=(--cfg-options model.clip.autocast=fp32)
    else precision=(--amp "$amp"); fi
    "$PY" tools/benchmark.py configs/oveva_vitb16_ade.py --device cuda \
        --images "$IMAGES" --rounds "$ROUNDS" "${PHOTOS[@]}" "${precision[@]}" | tee /tmp/ov_eva_gpu_$amp.log
    ade_time < /tmp/ov_eva_gpu_$amp.log
done

echo "== the bases side by side, bf16 (VFM: $VFM)"
"$PY" tools/benchmark.py --device cuda --amp bf16 --images "$IMAGES" \
    --rounds "$ROUNDS" "${PHOTOS[@]}" --vfm "$VFM" --masks ov-eva-tiny-sam2 --bases \
    configs/baselines/naclip_vitb16_ade.py configs/baselines/sclip_vitb16_ade.py \
    configs/baselines/clearclip_vitb16_ade.py \
    configs/baselines/proxyclip_vitb16_ade.py \
    configs/baselines/corrclip_vitb16_ade.py
