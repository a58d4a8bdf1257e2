# OV-EVA on CorrCLIPv2 ViT-L/14, Cityscapes: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_cityscapes.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
