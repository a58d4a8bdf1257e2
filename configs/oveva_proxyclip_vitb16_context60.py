# OV-EVA on PASCAL Context 60, ProxyCLIP's base (CLIP ViT-B/16 + DINO ViT-B/8):
# its official protocol (./baselines/proxyclip_vitb16_context60.py) plus a
# vocabulary, which turns the OV-EVA head of _base_/models on; nothing else
# differs, and model.vocabulary=none predicts exactly what the baseline
# predicts. Other vocabulary sources: _base_/vocabulary/*.py.
_base_ = ['./baselines/proxyclip_vitb16_context60.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
