# OV-EVA on ProxyCLIP, Cityscapes: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_cityscapes.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
