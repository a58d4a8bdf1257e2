# OV-EVA on CorrCLIPv2 ViT-L/14, COCO-Stuff 171: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_coco_stuff171.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
