# OV-EVA on ProxyCLIP, PASCAL Context 459: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_context459.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
