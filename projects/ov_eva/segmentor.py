"""The OV-EVA segmentor: an mmseg ``EncoderDecoder`` with a CLIP inside.

Only ``extract_feat`` / ``encode_decode``, the per-image head and the final
decision are OV-EVA's own; whole and slide inference, post-processing
(padding, resize, flip) and the data flow are mmseg's, driven by
``test_cfg`` as for any mmseg model. Slide inference and post-processing are
re-implemented for speed and memory (batched windows, channels-last, banded
decision for huge photos) and tested equal to mmseg's own.

Data flows one way: image -> dense features -> (vocabulary from cache or
source) -> text bank -> per-window score maps of every class synonym (a
"query") and term, merged as mmseg's slide inference merges them ->
``OVEVAHead`` once per image (mapping, refinement, fusion) -> resized to the
original image -> PAMR -> decision (softmax over the queries, max per class,
background rules) -> ``SegDataSample``. This is the order of the SCLIP-family
reference code, so that with no vocabulary the segmentor is the plain
training-free baseline (MaskCLIP / SCLIP / ClearCLIP / NACLIP, by
``clip.variant`` and the protocol in ``configs/_base_/protocols.py``) and
predicts what its official code predicts.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor, EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import OptSampleList, SampleList
from torch import Tensor

from . import scoring
from .registry import build_backend, build_vocabulary
from .text_bank import ClassSpec, TextBank, load_classes


@MODELS.register_module()
class OVEVASegmentor(EncoderDecoder):
    """Training-free open-vocabulary segmentor.

    Args:
        clip: config of the dense-feature backend (``ov_eva.backends``):
            ``type`` (default ``'DenseCLIPEncoder'``, the CLIP last-block
            variants; ``'ProxyCLIPEncoder'``; ``'CorrCLIPEncoder'``, which
            takes region masks, see ``_input_masks``) and its keys:
            ``name``, ``pretrained``, ``variant``, ...
        classes: class file path, shipped class-file name (``'ade20k'``),
            a list of classes, each ``'name, synonym, ...'``, None: the
            test dataset's classes (``DatasetClassesHook``), or ``'auto'``:
            no class list, each image's classes come from its vocabulary
            (``auto_classes``).
        templates: prompt template set name or list (see ``TEMPLATE_SETS``).
        term_templates: the (smaller) template set of vocabulary terms.
        logit_scale: multiplier of cosine similarities before the softmax;
            None uses the CLIP model's own (100 for OpenAI weights). The
            baselines use 40-65 (see ``configs/_base_/protocols.py``).
        prob_thd: pixels whose top class probability is below it become
            ``bg_idx`` (datasets with a background class); 0 disables. A
            class's probability is the max over its synonyms of the softmax
            over all synonyms of all classes, as in the references.
        area_thd: SCLIP's rule for VOC21: foreground classes whose argmax
            area is at most this share of all foreground area lose their
            pixels; None disables.
        bg_idx: index of the background class in ``classes``.
        text_cache_dir: disk cache of text embeddings (None: default
            folder, False: memory only).
        vocabulary: config of a vocabulary source (``OpenAIVocabulary``,
            ``HFVocabulary``, ``LexiconVocabulary``, ``CachedVocabulary``,
            ``StaticVocabulary``) or a short name (``'lexicon'``,
            ``'openai'``, ``'hf'``, ``'cached'``); None / ``'none'``: class
            names only. ``VocabularyPrefetchHook`` fills its
            cache before testing; images it missed are fetched on demand.
        head: config of the refinement head (``OVEVAHead``); None ignores
            the vocabulary (the baseline).
        pamr: PAMR refinement of the final logits at the original image
            size, guided by the normalised input resized there (docs/method.md
            step 6; off by default): None or ``num_iter=0`` (off), or e.g.
            ``dict(num_iter=10, dilations=(8, 16))`` as NACLIP uses it.
            Costs seconds per ADE20K-sized image on 2 CPU cores.
        max_auto_classes: with ``classes='auto'``, the most synonym groups
            found per image (the background class comes on top).
        auto_merge_thr: with ``classes='auto'``, the least CLIP text
            similarity of a term to a group's name for it to join the group
            as a synonym.
        auto_background: with ``classes='auto'``, the name of the class
            added first (index ``bg_idx`` = 0) for what no found class
            covers; None adds none.
        test_cfg: mmseg's ``dict(mode='whole')`` or
            ``dict(mode='slide', crop_size=(224, 224), stride=(112, 112))``.
        train_cfg, pretrained: accepted and ignored, as mmseg's tools (e.g.
            ``init_model``) set them on every segmentor; weights come from
            ``clip.pretrained``.
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
        # EncoderDecoder's own __init__ builds a trained backbone and head;
        # we keep only its inference methods.
        BaseSegmentor.__init__(
            self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.clip = build_backend(clip)
        self.bg_idx = bg_idx
        self.register_buffer(
            'query_class', torch.zeros(0, dtype=torch.long), persistent=False)
        self.classes: Optional[List[List[str]]] = None
        self.num_classes = self.out_channels = 0
        self.class_names: List[str] = []
        self.queries: List[str] = []
        self.auto_classes = isinstance(classes, str) and classes == 'auto'
        # classes='auto' on a dataset: its classes, to match found names to
        self.target_classes: Optional[List[List[str]]] = None
        self._target_embeddings: Optional[Tensor] = None
        if not isinstance(max_auto_classes, int) or max_auto_classes < 1:
            raise ValueError(f'model.max_auto_classes={max_auto_classes!r}: '
                             'give a whole number >= 1')
        self.max_auto_classes = max_auto_classes
        self.auto_merge_thr = auto_merge_thr
        self.auto_background = auto_background
        if classes is not None and not self.auto_classes:
            self.set_classes(load_classes(classes))
        self.text_bank = TextBank(self.clip, templates, text_cache_dir)
        self.term_bank = TextBank(self.clip, term_templates, text_cache_dir)
        self._query_embeddings: Optional[Tensor] = None
        self._term_embeddings: Optional[Tensor] = None  # of the batch
        self._reports: List[list] = []  # of the batch, for predict()
        # region masks of the batch, for backends that take them (CorrCLIP):
        # at the input size while inferring, at the original size for the
        # map correction after the decision
        self._guides: Optional[Tensor] = None
        self._region_masks: Optional[List[Tensor]] = None
        self.vocabulary = build_vocabulary(vocabulary)
        if self.vocabulary is not None:
            self.vocabulary.bind(self.clip)
        elif self.auto_classes:
            raise ValueError(
                "model.classes='auto' takes each image's classes from its "
                'vocabulary, and model.vocabulary is none: give a source, '
                "e.g. model.vocabulary='lexicon' (offline)")
        self._auto_terms: Dict[str, List] = {}  # img_path -> its terms
        self.head = MODELS.build(head) if head is not None else None
        self.pamr = self._check_pamr(pamr)
        self._logit_scale = logit_scale
        if area_thd is not None and not 0 <= area_thd < 1:
            raise ValueError(f'model.area_thd={area_thd!r}: give None or a '
                             'share of the foreground area in [0, 1)')
        self.prob_thd, self.area_thd = prob_thd, area_thd
        self.align_corners = False
        self.test_cfg = ConfigDict(test_cfg or dict(mode='whole'))
        for knob in ('batch_windows', 'max_output_logits', 'max_pamr_pixels'):
            value = self.test_cfg.get(knob)
            if value is not None and (not isinstance(value, int)
                                      or isinstance(value, bool) or value < 1):
                raise ValueError(f'test_cfg.{knob}={value!r}: give a '
                                 'positive whole number')

    def set_classes(self, classes: List[List[str]]) -> None:
        """The target classes, each a list of synonyms (see
        ``load_classes``); every synonym is a query with its own score map.
        ``DatasetClassesHook`` calls this with the test dataset's classes
        when ``model.classes`` is None."""
        if len(classes) < 2:
            raise ValueError(
                f'model.classes has {len(classes)} class; segmentation '
                "picks one of several, so add e.g. 'background'")
        if not 0 <= self.bg_idx < len(classes):
            raise ValueError(f'bg_idx={self.bg_idx} is outside the '
                             f'{len(classes)} classes')
        self.classes = classes
        self.num_classes = self.out_channels = len(classes)
        self.class_names = [synonyms[0] for synonyms in classes]
        self.queries = [s for synonyms in classes for s in synonyms]
        self.query_class = torch.tensor(
            [k for k, synonyms in enumerate(classes) for _ in synonyms],
            device=self.query_class.device)
        self._query_embeddings = None

    @property
    def fetch_classes(self) -> Optional[List[List[str]]]:
        """The target classes a vocabulary source is asked about: none with
        ``classes='auto'`` (the source says what the image holds)."""
        return [] if self.auto_classes else self.classes

    def set_target_classes(self, classes: List[List[str]]) -> None:
        """``classes='auto'`` on a dataset: the dataset's classes. Every
        class found in an image is then scored as its nearest dataset class
        by CLIP text similarity (``pred_sem_seg`` holds dataset indices),
        as vocabulary-free segmentation is evaluated."""
        self.target_classes = [list(c) for c in classes]
        self._target_embeddings = None

    def find_classes(self, image: str) -> List[List[str]]:
        """``classes='auto'``: one image's classes from its vocabulary (the
        MLLM's perceived terms or the lexicon's top concepts, best first),
        grouped into synonyms by CLIP text similarity
        (``scoring.group_terms``: ``auto_merge_thr``, at most
        ``max_auto_classes`` groups), after the ``auto_background`` class.
        The terms stay the image's vocabulary for the head."""
        result = self.vocabulary.fetch(image, [])
        background = self.auto_background
        terms = [t.text for t in result.terms if t.text != background]
        if not terms:
            why = f' ({result.error})' if result.error else ''
            raise RuntimeError(
                f"model.classes='auto': the vocabulary source "
                f'({type(self.vocabulary).__name__}) named nothing in '
                f'{image!r}{why}; check the source, or give a class list')
        groups = scoring.group_terms(
            self.term_bank.embed(terms), self.auto_merge_thr,
            self.max_auto_classes)
        classes = [[terms[i] for i in group] for group in groups]
        if background:
            classes.insert(0, [background])
        if len(classes) < 2:
            raise RuntimeError(
                f"model.classes='auto': only {classes[0][0]!r} was found in "
                f'{image!r} and model.auto_background is None; set a '
                'background name or give a class list')
        self._auto_terms[image] = result.terms
        return classes

    def _auto_predict(self, inputs: Tensor,
                      data_samples: OptSampleList) -> SampleList:
        """``predict`` with ``classes='auto'``: image by image, the image's
        classes (``find_classes``), then OV-EVA as usual on them."""
        if data_samples is None or any(
                s.metainfo.get('img_path') is None for s in data_samples):
            raise ValueError(
                "model.classes='auto' reads each image's vocabulary by "
                'file: give image paths (img_path), not bare arrays')
        if self.bg_idx != 0:
            raise ValueError("model.classes='auto' puts the background "
                             'class first: set model.bg_idx=0')
        samples = []
        for i, sample in enumerate(data_samples):
            image = sample.metainfo['img_path']
            self.set_classes(self.find_classes(image))
            self._reports = []
            try:
                seg_logits = self.inference(inputs[i:i + 1], [sample.metainfo])
                sample = self.postprocess_result(seg_logits, [sample],
                                                 inputs[i:i + 1])[0]
            finally:
                self._auto_terms.pop(image, None)
            sample.set_metainfo(
                dict(
                    ov_eva_vocabulary=self._reports[0]
                    if self._reports else [],
                    ov_eva_classes=[list(c) for c in self.classes]))
            if self.target_classes is not None:
                self._match_to_targets(sample)
            samples.append(sample)
        self._reports = []
        return samples

    def _match_to_targets(self, sample: SegDataSample) -> None:
        """Found classes -> their nearest dataset classes by text
        similarity (a found class's name against every synonym of every
        dataset class): ``pred_sem_seg`` and ``seg_logits`` in dataset
        classes, the found labels kept as ``auto_sem_seg``."""
        targets = self.target_classes
        queries = [s for synonyms in targets for s in synonyms]
        query_class = torch.tensor(
            [k for k, synonyms in enumerate(targets) for _ in synonyms])
        if self._target_embeddings is None:
            self._target_embeddings = self.text_bank.embed(queries)
        found = self.text_bank.embed(self.class_names)
        similarity = scoring.term_class_similarity(
            found.float(), self._target_embeddings.float(), query_class,
            len(targets))
        matched = scoring.match_names(similarity).cpu()
        pred = sample.pred_sem_seg.data
        scores = sample.seg_logits.data
        index = matched.to(scores.device)[:, None, None].expand_as(scores)
        target_scores = scores.new_full((len(targets), *scores.shape[1:]),
                                        -torch.inf)
        target_scores.scatter_reduce_(0, index, scores, reduce='amax')
        sample.set_data(
            dict(
                auto_sem_seg=PixelData(data=pred),
                pred_sem_seg=PixelData(data=matched.to(pred.device)[pred]),
                seg_logits=PixelData(data=target_scores)))
        sample.set_metainfo(
            dict(ov_eva_class_match=[
                dict(found=name, dataset_class=targets[int(k)][0])
                for name, k in zip(self.class_names, matched)
            ]))

    @staticmethod
    def _check_pamr(pamr: Optional[dict]) -> Optional[dict]:
        if pamr is None:
            return None
        cfg = dict(num_iter=10, dilations=(8, 16))
        if not isinstance(pamr, dict) or set(pamr) - set(cfg):
            raise ValueError(
                f'model.pamr={pamr!r}: give None or a dict with keys '
                'num_iter and dilations, e.g. dict(num_iter=10, '
                'dilations=(8, 16))')
        cfg.update(pamr)
        num_iter, dilations = cfg['num_iter'], cfg['dilations']
        if isinstance(dilations, int):
            dilations = (dilations, )
        if not isinstance(num_iter, int) or isinstance(num_iter, bool) \
                or num_iter < 0 or not dilations or not all(
                    isinstance(d, int) and d >= 1 for d in dilations):
            raise ValueError(
                f'model.pamr={pamr!r}: num_iter must be a whole number >= 0 '
                'and dilations whole numbers >= 1, e.g. (8, 16)')
        if num_iter == 0:  # no step: the identity
            return None
        return dict(num_iter=num_iter, dilations=tuple(dilations))

    @property
    def logit_scale(self) -> float:
        return self._logit_scale or self.clip.logit_scale

    @property
    def uses_vocabulary(self) -> bool:
        return self.vocabulary is not None and self.head is not None

    def query_embeddings(self) -> Tensor:
        """(Q, D) embeddings of every class synonym, encoded on first use
        (after any checkpoint is loaded) and kept for every later window."""
        if self.classes is None:
            raise ValueError(
                'model.classes is not set: give a class file, a shipped '
                "name (e.g. 'ade20k') or a list, or test on a dataset, "
                'whose classes are then taken')
        if self._query_embeddings is None:
            self._query_embeddings = self.text_bank.embed(self.queries)
        return self._query_embeddings.to(self.query_class.device)

    def extract_feat(self,
                     inputs: Tensor,
                     guides: Optional[Tensor] = None) -> Tensor:
        """(B, 3, H, W) -> (B, D, h, w) L2-normalised dense CLIP features;
        ``guides``: the (B, 1, H, W) region masks of backends that take
        them (``clip.needs_region_masks``)."""
        if guides is None:
            return self.clip(inputs)
        return self.clip(inputs, guides)

    def encode_decode(self, inputs: Tensor,
                      batch_img_metas: List[dict]) -> Tensor:
        """Logits (B, Q [+ U], H, W) for a batch of images or windows: the
        Q query (class synonym) scores and, while a batch's vocabulary is
        active, the U term scores ``S_t``."""
        logits = self.patch_logits(inputs, self._guides)
        rows, cols = self.clip.fit(*inputs.shape[-2:])
        # channels-last: upsampling and every later per-pixel pass over the
        # queries run ~1.5-3x faster on CPU (same values, other layout)
        logits = resize(
            logits.contiguous(memory_format=torch.channels_last),
            size=(rows.upsampled, cols.upsampled),
            mode='bilinear',
            align_corners=self.align_corners)
        return logits[..., rows.offset:rows.offset + inputs.shape[-2],
                      cols.offset:cols.offset + inputs.shape[-1]]

    def patch_logits(self,
                     inputs: Tensor,
                     guides: Optional[Tensor] = None) -> Tensor:
        """``encode_decode``'s logits before upsampling: (B, Q [+ U], h, w)
        at the patch grid of the inputs (see ``DenseCLIPEncoder.fit``)."""
        features = self.extract_feat(inputs, guides)
        text = self.query_embeddings()
        if self._term_embeddings is not None:
            text = torch.cat([text, self._term_embeddings.to(text.device)])
        return scoring.text_scores(features, text, self.logit_scale)

    def slide_inference(self, inputs: Tensor,
                        batch_img_metas: List[dict]) -> Tensor:
        """mmseg's sliding windows (same ``test_cfg.crop_size`` / ``stride``
        and the same window layout), with changes that leave the result
        unchanged but for float rounding: windows go through the encoder
        ``test_cfg.batch_windows`` at a time (default 16: the 15 windows of
        an ADE20K-sized image in one pass), and their patch-grid logits are
        upsampled and averaged in one separable step
        (``scoring.merge_windows``) instead of one full-size window at a
        time; the merged logits are channels-last."""
        h_stride, w_stride = self.test_cfg.stride
        h_crop, w_crop = self.test_cfg.crop_size
        per_forward = self.test_cfg.get('batch_windows', 16)
        batch_size, _, h_img, w_img = inputs.size()
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        # mmseg's window layout: the last row and column end at the border
        y_offsets = [
            max(min(i * h_stride + h_crop, h_img) - h_crop, 0)
            for i in range(h_grids)
        ]
        x_offsets = [
            max(min(j * w_stride + w_crop, w_img) - w_crop, 0)
            for j in range(w_grids)
        ]
        window = (min(h_crop, h_img), min(w_crop, w_img))
        boxes = [(y, x) for y in y_offsets for x in x_offsets]
        chunks = []
        for start in range(0, len(boxes), per_forward):
            crops = torch.cat([
                inputs[:, :, y:y + window[0], x:x + window[1]]
                for y, x in boxes[start:start + per_forward]
            ])
            guides = None if self._guides is None else torch.cat([
                self._guides[:, :, y:y + window[0], x:x + window[1]]
                for y, x in boxes[start:start + per_forward]
            ])
            chunks.append(self.patch_logits(crops, guides))
        logits = torch.cat(chunks)  # (windows * B, K, h, w)
        rows, cols = self.clip.fit(*window)
        return scoring.merge_windows(
            logits.view(h_grids, w_grids, batch_size, *logits.shape[1:]),
            y_offsets, x_offsets, window, (rows.upsampled, cols.upsampled),
            (h_img, w_img), (rows.offset, cols.offset))

    def inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Query logits (B, Q, H, W) at the input's resolution: mmseg's
        whole/slide inference, then the vocabulary head per image. PAMR and
        the decision follow at the original size (``postprocess_result``).
        Backends that take region masks get them cropped with the windows;
        the masks at the original size stay for the decision's map
        correction."""
        self._guides = self._input_masks(inputs, batch_img_metas)
        try:
            if not self.uses_vocabulary:
                return super().inference(inputs, batch_img_metas)
            return self._vocabulary_inference(inputs, batch_img_metas)
        finally:
            self._guides = None

    def _input_masks(self, inputs: Tensor,
                     batch_img_metas: List[dict]) -> Optional[Tensor]:
        """The backend's region masks (``clip.region_masks``) of each image,
        kept at the original size for the decision, resized (nearest) to
        the input image and padded as the batch: (B, 1, H, W); None for
        backends without masks."""
        self._region_masks = None
        if not getattr(self.clip, 'needs_region_masks', False):
            return None
        masks = self.clip.region_masks(batch_img_metas)
        self._region_masks = masks
        guides = torch.zeros((len(masks), 1, *inputs.shape[-2:]),
                             dtype=torch.int32,
                             device=inputs.device)
        for i, (mask, meta) in enumerate(zip(masks, batch_img_metas)):
            size = tuple(meta.get('img_shape', inputs.shape[-2:])[:2])
            mask = F.interpolate(
                mask[None, None].float(), size=size, mode='nearest')
            if meta.get('flip'):  # TTA flips the image after resizing it
                mask = mask.flip(
                    dims=(-1 if meta.get('flip_direction') ==
                          'horizontal' else -2, ))
            guides[i, :, :size[0], :size[1]] = mask[0].int().to(inputs.device)
        return guides

    def _vocabulary_inference(self, inputs: Tensor,
                              batch_img_metas: List[dict]) -> Tensor:
        vocabularies = [self.image_vocabulary(m) for m in batch_img_metas]
        self._reports = []
        # step 4 needs text only: map every term first, score only the kept
        terms = list(dict.fromkeys(t for v in vocabularies for t in v))
        embeddings = self.term_bank.embed(terms) if terms else None
        similarity = scoring.term_class_similarity(
            embeddings.float(),
            self.query_embeddings().float(), self.query_class,
            self.num_classes) if terms else None
        mappings = []
        for vocab in vocabularies:
            index = [terms.index(t) for t in vocab]
            suggested = torch.tensor(list(vocab.values()), dtype=torch.long)
            term_class = self.head.assign(similarity[index],
                                          suggested) if vocab else suggested
            mappings.append((index, term_class.cpu()))
        kept = sorted({
            i
            for index, term_class in mappings
            for i, k in zip(index, term_class.tolist()) if k >= 0
        })
        if not kept:  # no image has a mapped term: class names alone
            merged = super().inference(inputs, batch_img_metas)
        else:
            self._term_embeddings = embeddings[kept]
            try:
                merged = super().inference(inputs, batch_img_metas)
            finally:
                self._term_embeddings = None
        num_queries = len(self.queries)
        channel = {i: c for c, i in enumerate(kept)}
        for logits, vocab, (index, term_class) in zip(merged, vocabularies,
                                                      mappings):
            # every kept term's channel goes to the head as one view (a
            # gathered copy per image would cost as much as the refinement);
            # channels of other images' terms get class -1, weight 0
            channel_class = torch.full((len(kept), ), -1, dtype=torch.long)
            for i, k in zip(index, term_class.tolist()):
                if k >= 0:
                    channel_class[channel[i]] = k
            weights = torch.zeros(len(vocab))
            if bool((channel_class >= 0).any()):  # fused in place
                _, channel_weights = self.head(logits[:num_queries],
                                               self.query_class,
                                               logits[num_queries:],
                                               channel_class.to(logits.device))
                channel_weights = channel_weights.float().cpu()
                for j, (i, k) in enumerate(zip(index, term_class.tolist())):
                    if k >= 0:
                        weights[j] = channel_weights[channel[i]]
            sim = torch.zeros(len(vocab))
            if vocab:
                chosen = term_class.clamp(min=0).to(similarity.device)
                sim = similarity[index].gather(1, chosen[:, None])[:, 0]
            self._reports.append(
                self._report(vocab, term_class,
                             sim.float().cpu(), weights))
        # a view of the query channels: a stacked copy would cost as much as
        # the refinement
        return merged[:, :num_queries]

    def image_vocabulary(self, meta: dict) -> Dict[str, int]:
        """term -> the MLLM's suggested class index (-1: none) for one
        image; empty when the image has no vocabulary (class names only)."""
        image = meta.get('img_path')
        if image is None:
            return {}
        terms = self._auto_terms.get(image)  # classes='auto': already read
        if terms is None:
            terms = self.vocabulary.fetch(image, self.classes).terms
        index = {name: k for k, name in enumerate(self.class_names)}
        return {t.text: index.get(t.suggested_class, -1) for t in terms}

    def _report(self, vocab: Dict[str, int], term_class: Tensor,
                similarity: Tensor, weights: Tensor) -> List[dict]:
        """The vocabulary used and its mapping, for people (demo JSON)."""
        rows = []
        for i, (term, suggested) in enumerate(vocab.items()):
            k = int(term_class[i])
            rows.append(
                dict(
                    term=term,
                    suggested_class=self.class_names[suggested]
                    if suggested >= 0 else None,
                    mapped_class=self.class_names[k] if k >= 0 else None,
                    similarity=round(float(similarity[i]), 4)
                    if k >= 0 else None,
                    weight=round(float(weights[i]), 4)))
        return rows

    def predict(self,
                inputs: Tensor,
                data_samples: OptSampleList = None) -> SampleList:
        """mmseg's predict; each sample also carries the vocabulary used and
        its mapping in ``metainfo['ov_eva_vocabulary']`` (and with
        ``classes='auto'`` the image's classes in ``ov_eva_classes``)."""
        if self.auto_classes:
            return self._auto_predict(inputs, data_samples)
        if data_samples is not None:
            batch_img_metas = [sample.metainfo for sample in data_samples]
        else:
            batch_img_metas = [
                dict(
                    ori_shape=inputs.shape[2:],
                    img_shape=inputs.shape[2:],
                    pad_shape=inputs.shape[2:],
                    padding_size=[0, 0, 0, 0])
            ] * inputs.shape[0]
        self._reports = []
        try:
            seg_logits = self.inference(inputs, batch_img_metas)
            samples = self.postprocess_result(seg_logits, data_samples, inputs)
        finally:
            self._region_masks = None
        for sample, report in zip(samples, self._reports):
            sample.set_metainfo(dict(ov_eva_vocabulary=report))
        self._reports = []
        return samples

    def postprocess_result(self,
                           seg_logits: Tensor,
                           data_samples: OptSampleList = None,
                           inputs: Optional[Tensor] = None) -> SampleList:
        """mmseg's post-processing (padding and flip undone, logits resized
        to the original image), then the reference order: PAMR guided by
        the normalised ``inputs`` resized to the original image, and the
        decision (``scoring.decide``). ``seg_logits`` hold the (K, H, W)
        class log-probabilities, so their argmax (and mmseg's TTA) agrees
        with ``pred_sem_seg``.

        When Q x H x W of the original image exceeds
        ``test_cfg.max_output_logits`` (default 2**28, 1 GiB of float32),
        ``pred_sem_seg`` is decided band by band at full resolution
        (``scoring.upsampled_decision``) and ``seg_logits`` are kept at the
        working resolution, so memory follows the resized image, not the
        photo. PAMR, whose buffers hold 16 floats a pixel, runs at the
        working resolution then, and for photos of more than
        ``test_cfg.max_pamr_pixels`` pixels (default 2**22, 2048 x 2048;
        every benchmark image is smaller).
        """
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(len(seg_logits))]
        limit = self.test_cfg.get('max_output_logits', 2**28)
        pamr_limit = self.test_cfg.get('max_pamr_pixels', 2**22)
        num_queries = seg_logits.shape[1]
        for i, sample in enumerate(data_samples):
            meta = sample.metainfo
            # (1, Q, H, W) slices, not [i][None]: a size-1 batch with odd
            # strides sends F.interpolate down a path ~6x slower
            logits = self._unpad_unflip(seg_logits[i:i + 1], meta)
            size = tuple(meta.get('ori_shape', logits.shape[-2:])[:2])
            full = num_queries * size[0] * size[1] <= limit
            # PAMR at the original size as the references, unless the photo
            # is too large for its per-pixel buffers: then at working size
            refine = self.pamr is not None and inputs is not None
            pamr_at_full_size = full and size[0] * size[1] <= pamr_limit
            if refine:
                image = self._unpad_unflip(inputs[i:i + 1], meta).float()
            if refine and not pamr_at_full_size:
                logits = scoring.pamr(image, logits, **self.pamr)
            if full:
                logits = self._resize(logits, size)
            if refine and pamr_at_full_size:
                logits = scoring.pamr(
                    self._resize(image, size), logits, **self.pamr)
            scores, pred = scoring.decide(logits[0], self.query_class,
                                          self.num_classes, self.prob_thd,
                                          self.area_thd, self.bg_idx)
            if not full:
                pred = scoring.upsampled_decision(logits[0], size,
                                                  self.query_class,
                                                  self.num_classes,
                                                  self.prob_thd, self.area_thd,
                                                  self.bg_idx)
            if self._region_masks is not None:  # e.g. CorrCLIP's
                pred = self.clip.correct(pred,
                                         self._region_masks[i].to(pred.device))
            sample.set_data(
                dict(
                    seg_logits=PixelData(data=scores),
                    pred_sem_seg=PixelData(data=pred[None])))
        return data_samples

    def _resize(self, x: Tensor, size: tuple) -> Tensor:
        """mmseg's bilinear resize, skipped when ``x`` has the size."""
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return resize(
            x,
            size=size,
            mode='bilinear',
            align_corners=self.align_corners,
            warning=False)

    @staticmethod
    def _unpad_unflip(logits: Tensor, meta: dict) -> Tensor:
        """(1, K, H, W) logits without the test pipeline's padding and flip,
        as in mmseg's ``postprocess_result``."""
        left, right, top, bottom = meta.get('img_padding_size',
                                            meta.get('padding_size', [0] * 4))
        height, width = logits.shape[-2:]
        logits = logits[..., top:height - bottom, left:width - right]
        if meta.get('flip'):
            dim = -1 if meta.get('flip_direction') == 'horizontal' else -2
            logits = logits.flip(dims=(dim, ))
        return logits

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None):
        return self.encode_decode(inputs, None)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        raise NotImplementedError(
            'OVEVASegmentor is training-free: use it for testing only')
