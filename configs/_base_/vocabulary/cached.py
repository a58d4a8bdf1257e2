# Replay a vocabulary cache (e.g. one imported from a JSON Lines export);
# never calls a model. Images missing from it use the class names alone.
vocabulary = dict(
    type='CachedVocabulary',
    cache_file='data/vocabulary/ov_eva_vocabulary.sqlite',
    on_missing='class_names')
