"""The OV-EVA segmentor: an mmseg ``EncoderDecoder`` with a CLIP inside.

Only ``extract_feat`` / ``encode_decode`` are OV-EVA's own; whole and slide
inference, post-processing (padding, resize, flip) and the data flow come
from mmseg, driven by ``test_cfg`` exactly as for any mmseg model.
With no vocabulary configured this is the plain training-free baseline
(MaskCLIP / SCLIP / ClearCLIP / NACLIP, by ``clip.variant``).
"""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.config import ConfigDict
from mmseg.models.segmentors import BaseSegmentor, EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import OptSampleList, SampleList
from torch import Tensor

from . import scoring
from .registry import VOCABULARIES
from .text_bank import ClassSpec, TextBank, load_classes


@MODELS.register_module()
class OVEVASegmentor(EncoderDecoder):
    """Training-free open-vocabulary segmentor.

    Args:
        clip: config of the dense CLIP encoder (``DenseCLIPEncoder`` keys:
            ``name``, ``pretrained``, ``variant``, ...).
        classes: class file path, shipped class-file name (``'ade20k'``) or
            a list of classes, each ``'name, synonym, ...'``.
        templates: prompt template set name or list (see ``TEMPLATE_SETS``).
        logit_scale: multiplier of cosine similarities; None uses the CLIP
            model's own (100 for OpenAI weights).
        prob_thd: pixels whose top class probability is below it become
            ``bg_idx`` (datasets with a background class); 0 disables.
        bg_idx: index of the background class in ``classes``.
        text_cache_dir: disk cache of text embeddings (None: default
            folder, False: memory only).
        vocabulary: config of a vocabulary source (``OpenAIVocabulary``,
            ``HFVocabulary``, ``LexiconVocabulary``, ``CachedVocabulary``);
            None: class names only. ``VocabularyPrefetchHook`` fills its
            cache before testing.
        test_cfg: mmseg's ``dict(mode='whole')`` or
            ``dict(mode='slide', crop_size=(224, 224), stride=(112, 112))``.
    """

    def __init__(self,
                 clip: dict,
                 classes: ClassSpec,
                 templates: Union[str, Sequence[str]] = 'imagenet80',
                 logit_scale: Optional[float] = None,
                 prob_thd: float = 0.0,
                 bg_idx: int = 0,
                 text_cache_dir=None,
                 vocabulary: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        # EncoderDecoder's own __init__ builds a trained backbone and head;
        # we keep only its inference methods.
        BaseSegmentor.__init__(
            self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.clip = MODELS.build({'type': 'DenseCLIPEncoder', **clip})
        self.classes = load_classes(classes)
        if len(self.classes) < 2:
            raise ValueError(
                f'model.classes has {len(self.classes)} class; segmentation '
                "picks one of several, so add e.g. 'background'")
        if not 0 <= bg_idx < len(self.classes):
            raise ValueError(f'bg_idx={bg_idx} is outside the '
                             f'{len(self.classes)} classes')
        self.num_classes = self.out_channels = len(self.classes)
        self.class_names = [synonyms[0] for synonyms in self.classes]
        self.synonyms = [s for synonyms in self.classes for s in synonyms]
        self.register_buffer(
            'synonym_to_class',
            torch.tensor([
                k for k, synonyms in enumerate(self.classes) for _ in synonyms
            ]),
            persistent=False)
        self.text_bank = TextBank(self.clip, templates, text_cache_dir)
        self._synonym_embeddings: Optional[Tensor] = None
        self.vocabulary = None
        if vocabulary is not None:
            self.vocabulary = VOCABULARIES.build(vocabulary)
            self.vocabulary.bind(self.clip)
        self._logit_scale = logit_scale
        self.prob_thd, self.bg_idx = prob_thd, bg_idx
        self.align_corners = False
        self.test_cfg = ConfigDict(test_cfg or dict(mode='whole'))

    @property
    def logit_scale(self) -> float:
        return self._logit_scale or self.clip.logit_scale

    def synonym_embeddings(self) -> Tensor:
        """(S, D) embeddings of every class synonym, encoded on first use
        (after any checkpoint is loaded) and kept for every later window."""
        if self._synonym_embeddings is None:
            self._synonym_embeddings = self.text_bank.embed(self.synonyms)
        return self._synonym_embeddings.to(self.synonym_to_class.device)

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, D, h, w) L2-normalised dense CLIP features."""
        return self.clip(inputs)

    def encode_decode(self, inputs: Tensor,
                      batch_img_metas: List[dict]) -> Tensor:
        """Class logits (B, K, H, W) for a batch of images or windows."""
        features = self.extract_feat(inputs)
        scores = scoring.text_scores(features, self.synonym_embeddings(),
                                     self.logit_scale)
        logits = scoring.class_scores(scores, self.synonym_to_class,
                                      self.num_classes)
        # features cover the input padded to whole patches: crop after resize
        ph, pw = self.clip.patch_size
        grid_h, grid_w = logits.shape[-2:]
        logits = resize(
            logits,
            size=(grid_h * ph, grid_w * pw),
            mode='bilinear',
            align_corners=self.align_corners)
        return logits[..., :inputs.shape[-2], :inputs.shape[-1]]

    def inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        logits = super().inference(inputs, batch_img_metas)
        return scoring.apply_background_threshold(logits, self.prob_thd,
                                                  self.bg_idx)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None):
        return self.encode_decode(inputs, None)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        raise NotImplementedError(
            'OVEVASegmentor is training-free: use it for testing only')
