# OV-EVA on PASCAL VOC 20: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_voc20.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
