# OV-EVA on ProxyCLIP, COCO-Object: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_coco_object.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
