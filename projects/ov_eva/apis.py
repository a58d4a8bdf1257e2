"""A model for one's own images, in the style of ``mmseg.apis``: a config
prepared for pictures instead of a benchmark (``image_config``) and the model
built from it (``init_model``); ``mmseg.apis.inference_model`` runs it on an
image file. The demo, the web page and its benchmark build theirs here."""
from pathlib import Path
from typing import Optional, Sequence, Union

from mmengine.config import Config


def image_config(config: Union[str, Path],
                 classes: Optional[Sequence[Sequence[str]]] = None,
                 vocabulary: Optional[str] = None,
                 cfg_options: Optional[dict] = None) -> Config:
    """``config`` for one's own images: ``classes`` (lists of synonyms;
    None: found per image, ``classes='auto'``), no background rule, the
    vocabulary source ``vocabulary`` (a short name, ``none`` or a type name;
    None keeps the config's), ``cfg_options`` merged last, and a test
    pipeline without annotation loading."""
    cfg = Config.fromfile(Path(config).expanduser())
    cfg.model.classes = 'auto' if classes is None else [
        ', '.join(synonyms) for synonyms in classes
    ]
    cfg.model.prob_thd = 0.0
    cfg.model.bg_idx = 0
    if vocabulary is not None:
        cfg.model.vocabulary = _vocabulary(vocabulary)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    # mmseg's inference_model builds cfg.test_pipeline, dropping only the
    # transforms named exactly LoadAnnotations: drop any annotation loader,
    # and take the dataset's pipeline where the config has no test_pipeline
    pipeline = cfg.get('test_pipeline') or \
        cfg.test_dataloader.dataset.pipeline
    cfg.test_pipeline = [
        t for t in pipeline if 'Annotation' not in str(t.get('type'))
    ]
    return cfg


def _vocabulary(name: str) -> Optional[dict]:
    from .registry import (VOCABULARIES, VOCABULARY_SHORT_NAMES,
                           vocabulary_config)
    vocabulary = vocabulary_config(name)
    if vocabulary is not None and VOCABULARIES.get(vocabulary['type']) is None:
        raise ValueError(
            f'--vocabulary {name!r} is unknown; use '
            f'one of {", ".join(VOCABULARY_SHORT_NAMES)}, none '
            f'or a type name: {", ".join(VOCABULARIES.module_dict)}')
    return vocabulary


OFFLINE_ROUTE = ('Without the weights, try the tools on the tiny random '
                 'model (no download, masks are noise): --cfg-options '
                 'model.clip.name=ov-eva-tiny model.clip.pretrained=None')


def init_model(cfg: Config, device: str):
    """mmseg's ``init_model`` without a checkpoint, seeded so that random
    weights (the tiny test model) are reproducible, with its weights loaded
    now: missing weights are said once, before the first image, with the
    offline route."""
    from mmengine.runner import set_random_seed
    from mmseg.apis import init_model as mmseg_init_model
    set_random_seed(0)
    model = mmseg_init_model(cfg, checkpoint=None, device=device)
    try:
        model.clip.load_pretrained()  # a no-op once loaded
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f'{" ".join(str(error).split())} {OFFLINE_ROUTE}') from None
    ready = getattr(model.clip, 'ready', None)
    if callable(ready):  # what a backend loads beside its weights (a bank)
        ready()
    return model


def inference_model(model,
                    image,
                    terms: Optional[Sequence[tuple]] = None,
                    classes: Optional[Sequence[Sequence[str]]] = None):
    """mmseg's ``inference_model`` for one ``image`` (a path or an RGB
    array), with what this image alone uses put in its data sample instead
    of on the model: its vocabulary ``terms`` ([(term, suggested class name
    or None)], [] for none; None: the model's own source is asked) and its
    ``classes`` (each a list of synonyms; None: the model's)."""
    import numpy as np
    import torch
    from mmengine.dataset import Compose
    pipeline = [
        step for step in model.cfg.test_pipeline
        if step['type'] != 'LoadAnnotations'
    ]
    if isinstance(image, np.ndarray):
        pipeline[0] = dict(pipeline[0], type='LoadImageFromNDArray')
        data = dict(img=np.ascontiguousarray(image[..., ::-1]))  # BGR
    else:
        data = dict(img_path=str(image))
    data = Compose(pipeline)(data)
    sample = data['data_samples']
    if terms is not None:
        sample.set_metainfo(dict(ov_eva_terms=list(terms)))
    if classes is not None:
        sample.set_metainfo(
            dict(ov_eva_classes=[list(synonyms) for synonyms in classes]))
    with torch.no_grad():
        return model.test_step(
            dict(inputs=[data['inputs']], data_samples=[sample]))[0]


__all__ = ['image_config', 'init_model', 'inference_model']
