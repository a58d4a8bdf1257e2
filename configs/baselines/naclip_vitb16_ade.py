# Training-free baseline: the naclip last block, class names only. Any other
# benchmark: swap the dataset base, or pass
# --cfg-options model.clip.variant=naclip
_base_ = ['../oveva_vitb16_ade.py']
model = dict(clip=dict(variant='naclip'))
