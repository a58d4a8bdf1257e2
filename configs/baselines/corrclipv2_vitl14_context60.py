# CorrCLIPv2 on PASCAL Context 60, MetaCLIP ViT-L/14 (CorrCLIPv2-L: the bank's
# metaclip_l store)
_base_ = ['./corrclipv2_vitb16_context60.py']
model = dict(clip=dict(name='ViT-L-14-quickgelu', pretrained='metaclip_fullcc',
                       bank=dict(main='metaclip_l')))
__row = _base_.protocol  # saved: the CLIP it runs, CorrCLIPv2-L's mIoU
protocol = dict(model=model, published=__row.published_vitl14,
                published_source=__row.published_source_vitl14)
