# OV-EVA on CorrCLIPv2 ViT-B/16, COCO-Object: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitb16_coco_object.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
