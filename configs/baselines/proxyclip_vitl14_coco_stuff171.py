# ProxyCLIP on COCO-Stuff 171, CLIP ViT-L/14 as its base_config.py lists it
_base_ = ['./proxyclip_vitb16_coco_stuff171.py']
model = dict(clip=dict(name='ViT-L-14', pretrained='openai'))
