# ProxyCLIP on Cityscapes, CLIP ViT-L/14 (openai) + DINO ViT-B/8: the ViT-B/16
# protocol (./proxyclip_vitb16_cityscapes.py) with the larger CLIP, as the
# official configs/base_config.py lists it.
_base_ = ['./proxyclip_vitb16_cityscapes.py']
model = dict(clip=dict(name='ViT-L-14', pretrained='openai'))
