"""OV-EVA's own registry: vocabulary sources, chosen by config ``type``."""
from mmengine.registry import Registry

VOCABULARIES = Registry('vocabulary', locations=['ov_eva.vocabulary'])
