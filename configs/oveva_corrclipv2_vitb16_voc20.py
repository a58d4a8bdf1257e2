# OV-EVA on CorrCLIPv2 ViT-B/16, PASCAL VOC 20: its baseline + a vocabulary
_base_ = ['./baselines/corrclipv2_vitb16_voc20.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
