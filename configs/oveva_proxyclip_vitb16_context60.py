# OV-EVA on ProxyCLIP, PASCAL Context 60: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_context60.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
