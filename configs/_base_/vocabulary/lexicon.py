# No MLLM: rank the shipped concept lexicon by CLIP similarity to the image
# and its windows. Offline, deterministic, free.
vocabulary = dict(type='LexiconVocabulary', top_k=32, window_grid=2)
