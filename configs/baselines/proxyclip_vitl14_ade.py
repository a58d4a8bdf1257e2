# ProxyCLIP on ADE20K-150, CLIP ViT-L/14 as its base_config.py lists it
_base_ = ['./proxyclip_vitb16_ade.py']
model = dict(clip=dict(name='ViT-L-14', pretrained='openai'))
