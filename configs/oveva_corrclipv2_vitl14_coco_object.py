# OV-EVA on CorrCLIPv2 ViT-L/14, COCO-Object: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_coco_object.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
