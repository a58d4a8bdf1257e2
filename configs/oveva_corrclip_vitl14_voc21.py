# OV-EVA on CorrCLIP ViT-L/14, PASCAL VOC 21: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitl14_voc21.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
