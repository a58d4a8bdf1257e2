# Training-free baseline: the maskclip last block, class names only (no
# vocabulary). Other benchmarks: swap the dataset base, or run any OV-EVA
# config with --cfg-options model.vocabulary=none model.clip.variant=vanilla
_base_ = [
    '../_base_/models/ov_eva_vitb16.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py'
]
model = dict(classes='ade20k', clip=dict(variant='vanilla'))
