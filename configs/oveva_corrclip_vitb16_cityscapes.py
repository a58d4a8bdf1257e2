# OV-EVA on CorrCLIP ViT-B/16, Cityscapes: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitb16_cityscapes.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
