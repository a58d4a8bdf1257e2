# OV-EVA on PASCAL Context 459: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_context459.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
