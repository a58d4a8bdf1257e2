# OV-EVA on ProxyCLIP, ADE20K-150: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_ade.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
