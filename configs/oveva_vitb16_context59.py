# OV-EVA on PASCAL Context 59: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_context59.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
