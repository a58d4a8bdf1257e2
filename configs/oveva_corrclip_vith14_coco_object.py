# OV-EVA on CorrCLIP ViT-H/14, COCO-Object: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vith14_coco_object.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
