# OV-EVA on COCO-Stuff 171, CLIP ViT-B/16: NACLIP's official protocol
# (./baselines/naclip_vitb16_coco_stuff171.py, PAMR included) plus a
# vocabulary, which turns the OV-EVA head of _base_/models on; nothing else
# differs, and model.vocabulary=none predicts exactly what the baseline
# predicts. The
# vocabulary source switches in one line (or --cfg-options
# model.vocabulary.type=...): LexiconVocabulary (offline, free),
# OpenAIVocabulary (GPT-4o; $OPENAI_API_KEY), HFVocabulary (local model),
# CachedVocabulary (replay). Full settings: _base_/vocabulary/*.py.
_base_ = ['./baselines/naclip_vitb16_coco_stuff171.py']
model = dict(vocabulary=dict(type='LexiconVocabulary'))
