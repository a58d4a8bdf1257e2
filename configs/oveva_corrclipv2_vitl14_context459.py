# OV-EVA on CorrCLIPv2 ViT-L/14, Context-459: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_context459.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
