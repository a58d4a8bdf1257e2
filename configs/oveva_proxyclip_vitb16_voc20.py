# OV-EVA on ProxyCLIP, PASCAL VOC 20: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_voc20.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
