# OV-EVA on ProxyCLIP, COCO-Stuff 171: its baseline plus a vocabulary
_base_ = ['./baselines/proxyclip_vitb16_coco_stuff171.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
