# OV-EVA on ADE20K-847: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_ade847.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
