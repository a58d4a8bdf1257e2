"""OV-EVA's own registry: vocabulary sources, chosen by config ``type``."""
from mmengine.registry import Registry

VOCABULARIES = Registry('vocabulary', locations=['ov_eva.vocabulary'])

# Short names accepted wherever a vocabulary source is chosen (configs,
# --cfg-options model.vocabulary=lexicon, the tools' --vocabulary flag).
VOCABULARY_SHORT_NAMES = dict(
    openai='OpenAIVocabulary',
    hf='HFVocabulary',
    lexicon='LexiconVocabulary',
    cached='CachedVocabulary',
    static='StaticVocabulary')


def vocabulary_config(spec):
    """A source config from a config dict, a short name, a type name, or
    None / 'none' (no vocabulary)."""
    if spec is None or (isinstance(spec, str) and spec.lower() == 'none'):
        return None
    if isinstance(spec, str):
        return dict(type=VOCABULARY_SHORT_NAMES.get(spec, spec))
    return dict(spec)


def build_vocabulary(spec):
    """Build a source from ``vocabulary_config(spec)`` (None for none), in
    OV-EVA's own registry scope whatever the default scope is."""
    cfg = vocabulary_config(spec)
    return None if cfg is None else VOCABULARIES.build(
        dict(cfg, _scope_='ov_eva'))
