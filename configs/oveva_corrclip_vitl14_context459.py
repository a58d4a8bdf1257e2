# OV-EVA on CorrCLIP ViT-L/14, PASCAL Context 459: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitl14_context459.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
