# CorrCLIP on ADE20K-847, CLIP ViT-H/14 as CorrCLIPv1 lists it
_base_ = ['./corrclip_vitb16_ade847.py']
model = dict(clip=dict(name='ViT-H-14', pretrained='laion2b_s32b_b79k'))
protocol = dict(model=model)  # the saved row names the CLIP it runs
