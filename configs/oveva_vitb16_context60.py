# OV-EVA on PASCAL Context 60: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_context60.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
