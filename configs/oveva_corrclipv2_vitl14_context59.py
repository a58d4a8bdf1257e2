# OV-EVA on CorrCLIPv2 ViT-L/14, PASCAL Context 59: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_context59.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
