# OV-EVA on PASCAL VOC 21, ProxyCLIP's base (CLIP ViT-B/16 + DINO ViT-B/8): its
# official protocol (./baselines/proxyclip_vitb16_voc21.py) plus a vocabulary,
# which turns the OV-EVA head of _base_/models on; nothing else differs, and
# model.vocabulary=none predicts exactly what the baseline predicts. Other
# vocabulary sources: _base_/vocabulary/*.py.
_base_ = ['./baselines/proxyclip_vitb16_voc21.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
