# OV-EVA on Cityscapes: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_cityscapes.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
