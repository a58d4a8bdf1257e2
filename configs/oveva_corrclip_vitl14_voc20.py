# OV-EVA on CorrCLIP ViT-L/14, PASCAL VOC 20: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitl14_voc20.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
