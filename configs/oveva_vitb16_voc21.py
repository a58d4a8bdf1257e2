# OV-EVA on PASCAL VOC 21: NACLIP's protocol plus a vocabulary
_base_ = ['./baselines/naclip_vitb16_voc21.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
