# OV-EVA on ProxyCLIP, PASCAL VOC 21: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_voc21.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
