# ProxyCLIP on COCO-Stuff 171, CLIP ViT-L/14 (openai) + DINO ViT-B/8: the
# ViT-B/16 protocol (./proxyclip_vitb16_coco_stuff171.py) with the larger CLIP,
# as the official configs/base_config.py lists it.
_base_ = ['./proxyclip_vitb16_coco_stuff171.py']
model = dict(clip=dict(name='ViT-L-14', pretrained='openai'))
