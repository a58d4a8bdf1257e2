# ProxyCLIP on PASCAL Context 59, CLIP ViT-L/14 as its base_config.py lists it
_base_ = ['./proxyclip_vitb16_context59.py']
model = dict(clip=dict(name='ViT-L-14', pretrained='openai'))
