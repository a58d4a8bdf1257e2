# Training-free baseline: the sclip last block, class names only. Any other
# benchmark: swap the dataset base, or pass
# --cfg-options model.clip.variant=sclip
_base_ = ['../oveva_vitb16_ade.py']
model = dict(clip=dict(variant='sclip'))
