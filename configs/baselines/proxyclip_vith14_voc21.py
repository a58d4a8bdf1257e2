# ProxyCLIP on PASCAL VOC 21, CLIP ViT-H/14 (laion2b_s32b_b79k) + DINO ViT-B/8:
# the ViT-B/16 protocol (./proxyclip_vitb16_voc21.py) with the larger CLIP, as
# the official configs/base_config.py lists it.
_base_ = ['./proxyclip_vitb16_voc21.py']
model = dict(clip=dict(name='ViT-H-14', pretrained='laion2b_s32b_b79k'))
