# OV-EVA on CorrCLIP, Cityscapes, CLIP ViT-L/14: CorrCLIP's official protocol
# (./baselines/corrclip_vitl14_cityscapes.py) plus a vocabulary, which turns
# the OV-EVA head on; model.vocabulary=none predicts what the baseline
# predicts. The vocabulary source switches in one line (see
# oveva_vitb16_ade.py).
_base_ = ['./baselines/corrclip_vitl14_cityscapes.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
