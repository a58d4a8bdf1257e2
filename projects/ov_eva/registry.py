"""OV-EVA's own registries, built one way.

Models, datasets, transforms and hooks go into mmseg's registries. What only
OV-EVA chooses between goes into the three below: dense-feature backends
(``model.clip.type``), vocabulary sources (``model.vocabulary``) and region
mask sources (``model.clip.masks``). Each is an mmengine ``Registry`` that
imports its modules on first use (``locations``, so this module imports none
of them), takes a short name wherever a type name is taken, and names the
closest choices when a name is unknown.
"""
import difflib
from typing import Optional, Union

from mmengine.registry import Registry

Spec = Union[None, str, dict]


class OVEVARegistry(Registry):
    """An mmengine registry with short names and one-line errors.

    Args:
        name: what it holds, for messages.
        setting: the config key that chooses from it, for messages.
        locations: modules that register into it, imported on first use.
        short_names: short name -> type name, or -> a dict of defaults
            with its ``type``.
        default: the type of a config that names none.
    """

    def __init__(self,
                 name: str,
                 setting: str,
                 locations: list,
                 short_names: Optional[dict] = None,
                 default: Optional[str] = None):
        super().__init__(name, scope='ov_eva', locations=locations)
        self.setting = setting
        self.short_names = dict(short_names or {})
        self.default = default

    def config(self, spec: Spec) -> Optional[dict]:
        """A config dict from a config, a short or type name, or None /
        ``'none'`` (nothing to build)."""
        if spec is None or (isinstance(spec, str) and spec.lower() == 'none'):
            return None
        cfg = dict(type=spec) if isinstance(spec, str) else dict(spec)
        cfg.setdefault('type', self.default)
        short = self.short_names.get(cfg['type'])
        if isinstance(short, dict):
            cfg = dict(short, **dict(cfg, type=short['type']))
        elif short is not None:
            cfg['type'] = short
        return cfg

    def build_spec(self, spec: Spec):
        """Build from ``config(spec)`` in OV-EVA's scope whatever the
        default scope is; None for none."""
        cfg = self.config(spec)
        if cfg is None:
            return None
        self.import_from_location()
        if cfg['type'] not in self.module_dict:
            known = sorted({*self.module_dict, *self.short_names})
            close = difflib.get_close_matches(str(cfg['type']), known, 1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise ValueError(f'unknown {self.setting} type {cfg["type"]!r}'
                             f'{hint}; use one of {known}')
        return self.build(dict(cfg, _scope_='ov_eva'))


BACKENDS = OVEVARegistry(
    'dense backend',
    'model.clip',
    locations=['ov_eva.backends'],
    default='DenseCLIPEncoder')
VOCABULARIES = OVEVARegistry(
    'vocabulary',
    'model.vocabulary',
    locations=['ov_eva.vocabulary'],
    short_names=dict(
        openai='OpenAIVocabulary',
        hf='HFVocabulary',
        lexicon='LexiconVocabulary',
        cached='CachedVocabulary',
        static='StaticVocabulary'))
MASK_SOURCES = OVEVARegistry(
    'region mask source',
    'model.clip.masks',
    locations=['ov_eva.masks', 'ov_eva.eomt_masks'],
    short_names=dict(
        files='FileMasks',
        sam2='SAMMasks',
        eomt='EoMTMasks',
        # SAM (v1): its largest model unless named
        sam=dict(type='SAMMasks', name='facebook/sam-vit-huge')))
# short names of the tools' --vocabulary flag
VOCABULARY_SHORT_NAMES = VOCABULARIES.short_names


def vocabulary_config(spec: Spec) -> Optional[dict]:
    return VOCABULARIES.config(spec)


def build_vocabulary(spec: Spec):
    return VOCABULARIES.build_spec(spec)


def build_backend(cfg: dict):
    return BACKENDS.build_spec(dict(cfg))


def build_mask_source(spec: Spec):
    return MASK_SOURCES.build_spec(spec)
