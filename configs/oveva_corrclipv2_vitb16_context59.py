# OV-EVA on CorrCLIPv2 ViT-B/16, PASCAL Context 59: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitb16_context59.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
