# OV-EVA on CorrCLIPv2 ViT-L/14, PASCAL VOC 21: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitl14_voc21.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
