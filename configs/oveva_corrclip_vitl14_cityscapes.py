# OV-EVA on CorrCLIP ViT-L/14, Cityscapes: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitl14_cityscapes.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
