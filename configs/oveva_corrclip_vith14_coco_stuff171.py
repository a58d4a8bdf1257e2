# OV-EVA on CorrCLIP ViT-H/14, COCO-Stuff 171: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vith14_coco_stuff171.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
