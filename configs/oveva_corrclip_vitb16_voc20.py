# OV-EVA on CorrCLIP ViT-B/16, PASCAL VOC 20: its baseline + a vocabulary
_base_ = ['./baselines/corrclip_vitb16_voc20.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
