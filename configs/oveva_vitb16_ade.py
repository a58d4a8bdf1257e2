_base_ = [
    './_base_/models/ov_eva_vitb16.py', './_base_/datasets/ade20k.py',
    './_base_/default_runtime.py'
]
# The vocabulary source, switchable in one line (or with --cfg-options
# model.vocabulary.type=...): LexiconVocabulary (offline, free),
# OpenAIVocabulary (GPT-4o; $OPENAI_API_KEY), HFVocabulary (local model),
# CachedVocabulary (replay); model.vocabulary=none gives the baseline. Full
# settings: _base_/vocabulary/*.py.
model = dict(classes='ade20k', vocabulary=dict(type='LexiconVocabulary'))
