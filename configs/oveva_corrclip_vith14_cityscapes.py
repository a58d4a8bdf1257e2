# OV-EVA on CorrCLIP ViT-H/14, Cityscapes: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vith14_cityscapes.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
