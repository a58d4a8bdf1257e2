# OV-EVA on ADE20K-150: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_ade.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
