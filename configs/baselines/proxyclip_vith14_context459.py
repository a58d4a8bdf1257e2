# ProxyCLIP on Context-459, CLIP ViT-H/14 as its base_config.py lists it
_base_ = ['./proxyclip_vitb16_context459.py']
model = dict(clip=dict(name='ViT-H-14', pretrained='laion2b_s32b_b79k'))
