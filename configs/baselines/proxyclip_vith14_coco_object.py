# ProxyCLIP on COCO-Object, CLIP ViT-H/14 as its base_config.py lists it
_base_ = ['./proxyclip_vitb16_coco_object.py']
model = dict(clip=dict(name='ViT-H-14', pretrained='laion2b_s32b_b79k'))
