# OV-EVA on CorrCLIP ViT-B/16, COCO-Object: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitb16_coco_object.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
