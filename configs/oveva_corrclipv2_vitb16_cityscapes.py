# OV-EVA on CorrCLIPv2 ViT-B/16, Cityscapes: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitb16_cityscapes.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
