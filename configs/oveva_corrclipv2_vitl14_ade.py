# OV-EVA on CorrCLIPv2 ViT-L/14, ADE20K-150: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_ade.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
