# CorrCLIP on Context-459, CLIP ViT-L/14 as CorrCLIPv1 lists it
_base_ = ['./corrclip_vitb16_context459.py']
model = dict(
    clip=dict(name='ViT-L-14-quickgelu', pretrained='metaclip_fullcc'))
protocol = dict(model=model)  # the saved row names the CLIP it runs
