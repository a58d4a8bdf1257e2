# OV-EVA on ProxyCLIP, ADE20K-847: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_ade847.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
