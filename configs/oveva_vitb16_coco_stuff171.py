# OV-EVA on COCO-Stuff 171: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_coco_stuff171.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
