"""The OV-EVA segmentor: a dense-feature backend, a class bank and a decode
head composed in the shape of mmseg's ``MultimodalEncoderDecoder``.

- image side: the backend (``model.clip``, ``ov_eva.backends``) turns images
  into L2-normalised dense features;
- text side: the ``ClassBank`` owns the classes and their embeddings;
- ``OVEVAHead`` scores features against text, folds each image's vocabulary
  onto the classes (mapping, refinement, fusion) and decides (PAMR, softmax
  over synonyms, thresholds, CorrCLIP's map correction).

Per-image data travels in the data samples, never on the model between
calls: the vocabulary terms (``metainfo['ov_eva_terms']``), the classes
found with ``classes='auto'`` (``ov_eva_classes``), the region masks of
backends that take them (the ``region_masks`` field), and the report of the
vocabulary used (``ov_eva_vocabulary``). A caller may put terms or masks in
the samples itself; the segmentor fetches only what is missing. With no
vocabulary the segmentor is the plain training-free baseline of its backend
and protocol (``configs/_base_/protocols.py``), as its official code.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import OptSampleList, SampleList
from torch import Tensor

from . import windows
from .class_bank import ClassBank, QuerySet, to_target_classes
from .class_lists import ClassSpec
from .registry import build_backend, build_vocabulary


@MODELS.register_module()
class OVEVASegmentor(BaseSegmentor):
    """Training-free open-vocabulary segmentor.

    Args:
        clip: the dense-feature backend (``ov_eva.backends``): ``type``
            (default ``'DenseCLIPEncoder'``, the CLIP last-block variants;
            ``'ProxyCLIPEncoder'``; ``'CorrCLIPEncoder'``, which takes
            region masks) and its keys: ``name``, ``pretrained``, ...
        classes: class file path, shipped class-file name (``'ade20k'``),
            a list of classes, each ``'name, synonym, ...'``, None: the test
            dataset's (``DatasetClassesHook``), or ``'auto'``: each image's
            classes come from its vocabulary (see ``ClassBank``).
        templates / term_templates: prompt template sets of class names and
            of vocabulary terms (see ``TEMPLATE_SETS``).
        logit_scale: multiplier of cosine similarities before the softmax;
            None uses the CLIP model's own (100 for OpenAI weights). The
            baselines use 40-65 (see ``configs/_base_/protocols.py``).
        prob_thd: pixels whose top class probability is below it become
            ``bg_idx``; 0 disables. A class's probability is the max over
            its synonyms of the softmax over all synonyms of all classes.
        area_thd: SCLIP's rule for VOC21 (foreground classes whose argmax
            area is at most this share of all foreground area lose their
            pixels); None disables.
        bg_idx: index of the background class in ``classes``.
        text_cache_dir: disk cache of text embeddings (None: default
            folder, False: memory only).
        vocabulary: a vocabulary source config or short name (``'lexicon'``,
            ``'openai'``, ``'hf'``, ``'cached'``); None / ``'none'``: class
            names only. ``VocabularyPrefetchHook`` fills its cache before
            testing; images it missed are fetched on demand.
        head: the ``OVEVAHead`` settings; None ignores the vocabulary.
        pamr: PAMR of the final logits at the original image size, e.g.
            ``dict(num_iter=10, dilations=(8, 16))`` as NACLIP; None or
            ``num_iter=0``: off.
        max_auto_classes / auto_merge_thr / auto_background: with
            ``classes='auto'``, the most synonym groups per image, the least
            text similarity of a term to join a group, and the class added
            first (``bg_idx`` 0) for what no found class covers.
        test_cfg: mmseg's ``dict(mode='whole')`` or ``dict(mode='slide',
            crop_size=(224, 224), stride=(112, 112))``, with the limits
            ``batch_windows``, ``max_output_logits``, ``max_pamr_pixels``.
        train_cfg, pretrained: accepted and ignored, as mmseg's tools set
            them on every segmentor; weights come from ``clip.pretrained``.
    """

    def __init__(self,
                 clip: dict,
                 classes: Optional[ClassSpec] = None,
                 templates: Union[str, Sequence[str]] = 'imagenet80',
                 term_templates: Union[str, Sequence[str]] = 'simple7',
                 logit_scale: Optional[float] = None,
                 prob_thd: float = 0.0,
                 area_thd: Optional[float] = None,
                 bg_idx: int = 0,
                 text_cache_dir=None,
                 vocabulary: Union[None, str, dict] = None,
                 head: Optional[dict] = dict(type='OVEVAHead'),
                 pamr: Optional[dict] = None,
                 max_auto_classes: int = 10,
                 auto_merge_thr: float = 0.9,
                 auto_background: Optional[str] = 'background',
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 train_cfg=None,
                 pretrained=None,
                 init_cfg=None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.clip = build_backend(clip)
        self.class_bank = ClassBank(self.clip, classes, templates,
                                    term_templates, text_cache_dir, bg_idx,
                                    max_auto_classes, auto_merge_thr,
                                    auto_background)
        self.vocabulary = build_vocabulary(vocabulary)
        if self.vocabulary is not None:
            self.vocabulary.bind(self.clip)
        elif self.class_bank.auto:
            raise ValueError(
                "model.classes='auto' takes each image's classes from its "
                'vocabulary, and model.vocabulary is none: give a source, '
                "e.g. model.vocabulary='lexicon' (offline)")
        head = dict(type='OVEVAHead', fold_terms=False) if head is None \
            else dict(dict(type='OVEVAHead'), **head)
        self.decode_head = MODELS.build(
            dict(
                head,
                logit_scale=logit_scale,
                prob_thd=prob_thd,
                area_thd=area_thd,
                bg_idx=bg_idx,
                pamr=pamr,
                map_correction=getattr(self.clip, 'needs_region_masks', False)
                and getattr(self.clip, 'correction', True)))
        self.align_corners = False
        self.test_cfg = windows.check_test_cfg(test_cfg)

    @property
    def classes(self) -> Optional[List[List[str]]]:
        return self.class_bank.classes

    @property
    def num_classes(self) -> int:  # mmseg's name; 0 until classes are set
        return len(self.class_bank.classes or [])

    out_channels = num_classes

    @property
    def uses_vocabulary(self) -> bool:
        return self.vocabulary is not None and self.decode_head.fold_terms

    def extract_feat(self,
                     inputs: Tensor,
                     guides: Optional[Tensor] = None) -> Tensor:
        """(B, 3, H, W) -> (B, D, h, w) L2-normalised dense features;
        ``guides``: the (B, 1, H, W) region masks of backends that take
        them."""
        return self.clip(inputs) if guides is None else self.clip(
            inputs, guides)

    def encode_decode(self, inputs: Tensor,
                      batch_img_metas: List[dict]) -> Tensor:
        """(B, Q, H, W) query logits of the classes for whole images."""
        text = self.class_bank.query_set().embeddings
        return windows.whole(self._patch_logits(text), self.clip.fit, inputs,
                             None)

    def _patch_logits(self, text: Tensor):
        def patch_logits(images: Tensor, guides: Optional[Tensor]) -> Tensor:
            return self.decode_head.scores(
                self.extract_feat(images, guides), text, self.clip.logit_scale)

        return patch_logits

    def inference(self, inputs: Tensor, text: Tensor,
                  guides: Optional[Tensor] = None) -> Tensor:
        """(B, S, H, W) logits of every text at the input's resolution, by
        ``test_cfg.mode`` (see ``ov_eva.windows``)."""
        cfg = self.test_cfg
        if cfg.mode == 'slide':
            return windows.slide(
                self._patch_logits(text), self.clip.fit, inputs, guides,
                cfg.crop_size, cfg.stride, cfg.get('batch_windows', 16))
        return windows.whole(self._patch_logits(text), self.clip.fit, inputs,
                             guides)

    def attach_image_data(self, samples: Sequence[SegDataSample]) -> None:
        """Put what each image needs into its sample, unless the caller
        did: region masks (backends that take them), vocabulary terms, and
        with ``classes='auto'`` the image's classes."""
        auto = self.class_bank.auto
        for sample in samples:
            image = sample.metainfo.get('img_path')
            if getattr(self.clip, 'needs_region_masks', False) \
                    and 'region_masks' not in sample:
                mask = self.clip.region_masks([sample.metainfo])[0]
                sample.set_field(PixelData(data=mask[None]), 'region_masks')
            if auto and image is None and 'ov_eva_classes' not in sample:
                raise ValueError(
                    "model.classes='auto' reads each image's vocabulary by "
                    'file: give image paths (img_path), not bare arrays')
            if self.uses_vocabulary and image is not None \
                    and 'ov_eva_terms' not in sample:
                result = self.vocabulary.fetch(image,
                                               self.class_bank.fetch_classes)
                if auto and not result.terms and result.error:
                    raise RuntimeError(
                        f"model.classes='auto': no vocabulary for {image!r} "
                        f'({result.error}); check the source')
                sample.set_metainfo(
                    dict(ov_eva_terms=[(t.text, t.suggested_class)
                                       for t in result.terms]))
            if auto and 'ov_eva_classes' not in sample:
                found = self.class_bank.find_classes(
                    [text for text, _ in sample.ov_eva_terms], image)
                sample.set_metainfo(dict(ov_eva_classes=found))

    def predict(self,
                inputs: Tensor,
                data_samples: OptSampleList = None) -> SampleList:
        """mmseg's predict; with a vocabulary each sample also carries the
        vocabulary used and its mapping in ``metainfo['ov_eva_vocabulary']``.
        Samples that carry their own classes (``ov_eva_classes``: found with
        ``classes='auto'``, or a caller's) are scored one by one on them."""
        if data_samples is None:
            shape = inputs.shape[2:]
            data_samples = [
                SegDataSample(
                    metainfo=dict(ori_shape=shape, img_shape=shape,
                                  pad_shape=shape, padding_size=[0] * 4))
                for _ in inputs
            ]
        self.attach_image_data(data_samples)
        if not any('ov_eva_classes' in s for s in data_samples):
            return self._predict(inputs, data_samples,
                                 self.class_bank.query_set())
        if self.class_bank.auto and self.class_bank.bg_idx != 0:
            raise ValueError("model.classes='auto' puts the background "
                             'class first: set model.bg_idx=0')
        for i, sample in enumerate(data_samples):  # classes differ per image
            queries = self.class_bank.query_set(
                sample.metainfo.get('ov_eva_classes'))
            self._predict(inputs[i:i + 1], [sample], queries)
            if self.class_bank.auto and \
                    self.class_bank.target_classes is not None:
                to_target_classes(sample,
                                  self.class_bank.match_targets(
                                      queries.class_names), queries,
                                  self.class_bank.target_classes)
        return data_samples

    def seg_logits(self, inputs: Tensor, samples: SampleList,
                   queries: QuerySet) -> Tuple[Tensor, List[List[dict]]]:
        """(B, Q, H, W) query logits at the input's resolution with each
        image's vocabulary (``attach_image_data``) folded in, and the
        report of each image's vocabulary."""
        index = {name: k for k, name in enumerate(queries.class_names)}
        vocabularies = [{
            text: index.get(suggested, -1)
            for text, suggested in s.metainfo.get('ov_eva_terms', [])
        } for s in samples]
        mapping = self.decode_head.map_terms(vocabularies, queries,
                                             self.class_bank.embed_terms)
        text = queries.embeddings
        if mapping.embeddings is not None:
            text = torch.cat([text, mapping.embeddings.to(text.device)])
        guides = windows.masks_at_input(samples, inputs)
        retrieval = getattr(self.clip, 'retrieval', None)  # CorrCLIPv2
        logits = self.inference(inputs, text, guides) if retrieval is None \
            else retrieval.supported_logits(self, inputs, samples, guides,
                                            text, queries, mapping)
        return self.decode_head.fold(logits, queries, mapping)

    def _predict(self, inputs: Tensor, samples: SampleList,
                 queries: QuerySet) -> SampleList:
        """``seg_logits``, then the decision at the original size."""
        logits, reports = self.seg_logits(inputs, samples, queries)
        limits = {k: self.test_cfg[k] for k in windows.TEST_CFG_LIMITS[1:]
                  if self.test_cfg.get(k) is not None}
        for i, sample in enumerate(samples):
            meta = sample.metainfo
            # (1, Q, H, W) slices, not [i][None]: a size-1 batch with odd
            # strides sends F.interpolate down a path ~6x slower
            image = None if self.decode_head.pamr is None else \
                windows.unpad_unflip(inputs[i:i + 1], meta).float()
            masks = sample.region_masks.data[0] \
                if 'region_masks' in sample else None
            size = tuple(meta.get('ori_shape', inputs.shape[-2:])[:2])
            scores, pred = self.decode_head.decide(
                windows.unpad_unflip(logits[i:i + 1], meta), queries, size,
                image, masks, **limits)
            sample.set_data(
                dict(
                    seg_logits=PixelData(data=scores),
                    pred_sem_seg=PixelData(data=pred[None])))
            if 'ov_eva_terms' in sample and self.decode_head.fold_terms:
                sample.set_metainfo(dict(ov_eva_vocabulary=reports[i]))
        return samples

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None):
        return self.encode_decode(inputs, None)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        raise NotImplementedError(
            'OVEVASegmentor is training-free: use it for testing only')
