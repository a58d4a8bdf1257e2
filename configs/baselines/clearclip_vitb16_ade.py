# Training-free baseline: the clearclip last block, class names only. Any other
# benchmark: swap the dataset base, or pass
# --cfg-options model.clip.variant=clearclip
_base_ = ['../oveva_vitb16_ade.py']
model = dict(clip=dict(variant='clearclip'))
