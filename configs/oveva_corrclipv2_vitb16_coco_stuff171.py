# OV-EVA on CorrCLIPv2 ViT-B/16, COCO-Stuff 171: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitb16_coco_stuff171.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
