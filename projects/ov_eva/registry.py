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


# Dense-feature backends (model.clip.type): CLIP with a training-free last
# block, or CLIP guided by other frozen models (ov_eva/backends/).
BACKENDS = Registry('dense backend', locations=['ov_eva.backends'])
DEFAULT_BACKEND = 'DenseCLIPEncoder'


def build_backend(cfg: dict):
    """The dense-feature backend of ``model.clip`` (``type`` defaults to
    ``DenseCLIPEncoder``, the CLIP last-block variants), in OV-EVA's own
    registry scope whatever the default scope is."""
    cfg = dict(cfg)
    cfg.setdefault('type', DEFAULT_BACKEND)
    if cfg['type'] not in BACKENDS.module_dict:
        import difflib
        import_backends()
        known = sorted(BACKENDS.module_dict)
        if cfg['type'] not in known:
            close = difflib.get_close_matches(str(cfg['type']), known, 1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise ValueError(f"unknown model.clip.type {cfg['type']!r}{hint}; "
                             f'use one of {known}')
    return BACKENDS.build(dict(cfg, _scope_='ov_eva'))


def import_backends() -> None:
    import importlib
    importlib.import_module('ov_eva.backends')
