# OV-EVA on COCO-Object: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_coco_object.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
