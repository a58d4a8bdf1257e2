# OV-EVA on CorrCLIP, ADE20K-150, CLIP ViT-B/16: CorrCLIP's official protocol
# (./baselines/corrclip_vitb16_ade.py) plus a vocabulary, which turns the
# OV-EVA head on; model.vocabulary=none predicts what the baseline predicts.
# The vocabulary source switches in one line (see oveva_vitb16_ade.py).
_base_ = ['./baselines/corrclip_vitb16_ade.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
