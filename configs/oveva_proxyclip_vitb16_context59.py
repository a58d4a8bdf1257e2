# OV-EVA on ProxyCLIP, PASCAL Context 59: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_context59.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
