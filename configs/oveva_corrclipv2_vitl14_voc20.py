# OV-EVA on CorrCLIPv2 ViT-L/14, PASCAL VOC 20: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_voc20.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
