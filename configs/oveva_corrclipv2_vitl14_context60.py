# OV-EVA on CorrCLIPv2 ViT-L/14, PASCAL Context 60: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_context60.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
