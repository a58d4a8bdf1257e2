# OV-EVA on CorrCLIP, ADE20K-150, CLIP ViT-H/14: CorrCLIP's official protocol
# (./baselines/corrclip_vith14_ade.py) plus a vocabulary, which turns the
# OV-EVA head on; model.vocabulary=none predicts what the baseline predicts.
# The vocabulary source switches in one line (see oveva_vitb16_ade.py).
_base_ = ['./baselines/corrclip_vith14_ade.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
