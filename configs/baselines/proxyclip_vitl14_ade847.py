# ProxyCLIP on ADE20K-847, CLIP ViT-L/14 as its base_config.py lists it
_base_ = ['./proxyclip_vitb16_ade847.py']
model = dict(clip=dict(name='ViT-L-14', pretrained='openai'))
