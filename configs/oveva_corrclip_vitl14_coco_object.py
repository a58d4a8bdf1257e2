# OV-EVA on CorrCLIP ViT-L/14, COCO-Object: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitl14_coco_object.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
