# OV-EVA on CorrCLIP ViT-B/16, PASCAL Context 59: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitb16_context59.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
