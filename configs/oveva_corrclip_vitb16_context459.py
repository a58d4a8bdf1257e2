# OV-EVA on CorrCLIP ViT-B/16, PASCAL Context 459: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitb16_context459.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
