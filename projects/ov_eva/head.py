"""The OV-EVA decode head: text scoring, the vocabulary folded onto the
target classes (method steps 4-6), and the final decision.

Everything here is per image and stateless: the segmentor hands the head
dense features, the ``QuerySet`` of the classes and each image's vocabulary,
and gets back score maps, labels and a report of the terms used.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.model import BaseModule
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor

from . import scoring
from .class_bank import QuerySet


@dataclass
class TermMapping:
    """A batch's vocabulary mapped to classes (step 4, text only).

    Attributes:
        embeddings: (U, D) embeddings of the kept terms (mapped in at least
            one image), or None when no image has a mapped term.
        images: per image, (its terms, the index of each term in the
            batch's term list, (T,) class per term or -1).
        similarity: (batch terms, K) ``sim(t, c)``, or None.
        kept: indices (in the batch's term list) of the kept terms.
    """
    embeddings: Optional[Tensor]
    images: List[Tuple[Dict[str, int], List[int], Tensor]]
    similarity: Optional[Tensor]
    kept: List[int]


def check_pamr(pamr: Optional[dict]) -> Optional[dict]:
    """PAMR settings, None when off (no config or ``num_iter=0``)."""
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
    return None if num_iter == 0 else dict(
        num_iter=num_iter, dilations=tuple(dilations))


def resize_to(x: Tensor, size: tuple) -> Tensor:
    """mmseg's bilinear resize, skipped when ``x`` has the size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return resize(
        x, size=size, mode='bilinear', align_corners=False, warning=False)


@MODELS.register_module()
class OVEVAHead(BaseModule):
    """Scoring, top-N class mapping, mask-guided refinement, fusion and the
    decision. Every vocabulary step has an off switch, so ablation configs
    can turn each on alone.

    Args:
        use_similarity: map terms to classes by CLIP text similarity
            (``sim >= map_thr``); False keeps only terms whose class the MLLM
            named ("vocabulary only").
        map_thr: least ``sim(t, c)`` for a term to be mapped by CLIP.
        top_n: terms kept per class (highest ``sim``); None keeps all.
        refine: mask-guided weights; False weighs a class's terms equally.
        temperature: softmax temperature of the refinement weights.
        fusion_lambda: weight of the vocabulary score in the fusion.
        fold_terms: False ignores the vocabulary (the baseline).
        logit_scale, prob_thd, area_thd, bg_idx, pamr: the decision, set
            by the segmentor from its own settings of those names.
        map_correction: CorrCLIP's rule: after the decision each region of
            the image's region masks takes its most frequent label.
    """

    def __init__(self,
                 use_similarity: bool = True,
                 map_thr: float = 0.75,
                 top_n: Optional[int] = 3,
                 refine: bool = True,
                 temperature: float = 1.0,
                 fusion_lambda: float = 0.5,
                 fold_terms: bool = True,
                 logit_scale: Optional[float] = None,
                 prob_thd: float = 0.0,
                 area_thd: Optional[float] = None,
                 bg_idx: int = 0,
                 pamr: Optional[dict] = None,
                 map_correction: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        if top_n is not None and top_n < 1:
            raise ValueError('head.top_n must be >= 1 or None')
        if temperature <= 0 or not 0 <= fusion_lambda <= 1:
            raise ValueError('head.temperature must be > 0 and '
                             'head.fusion_lambda in [0, 1]')
        if area_thd is not None and not 0 <= area_thd < 1:
            raise ValueError(f'model.area_thd={area_thd!r}: give None or a '
                             'share of the foreground area in [0, 1)')
        self.use_similarity, self.map_thr = use_similarity, map_thr
        self.top_n, self.refine = top_n, refine
        self.temperature, self.fusion_lambda = temperature, fusion_lambda
        self.fold_terms = fold_terms
        self.logit_scale = logit_scale
        self.prob_thd, self.area_thd, self.bg_idx = prob_thd, area_thd, bg_idx
        self.pamr = check_pamr(pamr)
        self.map_correction = map_correction

    def scores(self, features: Tensor, text: Tensor,
               default_scale: float) -> Tensor:
        """(B, D, h, w) features, (S, D) text -> (B, S, h, w) logits at
        ``logit_scale`` (None: ``default_scale``, the CLIP model's)."""
        return scoring.text_scores(features, text, self.logit_scale
                                   or default_scale)

    def assign(self, similarity: Tensor, suggested: Tensor) -> Tensor:
        """Top-N target class mapping from text alone (before any image
        scoring, so dropped terms are never scored): (T, K) ``sim(t, c)``
        and (T,) the MLLM's suggested class (-1 none) -> (T,) class per
        term, -1 for dropped terms."""
        return scoring.assign_terms(similarity, suggested, self.map_thr,
                                    self.top_n, self.use_similarity)

    def map_terms(self, vocabularies: List[Dict[str, int]],
                  queries: QuerySet,
                  embed: Callable[[List[str]], Tensor]) -> TermMapping:
        """Step 4 for a batch: every image's terms (term -> suggested class
        index, -1 none) mapped to classes; only the kept terms are embedded
        for scoring."""
        terms = list(dict.fromkeys(t for v in vocabularies for t in v))
        if not self.fold_terms or not terms:
            empty = torch.zeros(0, dtype=torch.long)
            return TermMapping(None, [(v, [], empty) for v in vocabularies],
                               None, [])
        embeddings = embed(terms)
        similarity = scoring.term_class_similarity(
            embeddings.float(), queries.embeddings.float(),
            queries.query_class, queries.num_classes)
        images = []
        for vocab in vocabularies:
            index = [terms.index(t) for t in vocab]
            suggested = torch.tensor(list(vocab.values()), dtype=torch.long)
            term_class = self.assign(similarity[index],
                                     suggested) if vocab else suggested
            images.append((vocab, index, term_class.cpu()))
        kept = sorted({
            i
            for _, index, term_class in images
            for i, k in zip(index, term_class.tolist()) if k >= 0
        })
        return TermMapping(embeddings[kept] if kept else None, images,
                           similarity, kept)

    def forward(self, query_logits: Tensor, query_class: Tensor,
                term_logits: Tensor,
                term_class: Tensor) -> Tuple[Tensor, Tensor]:
        """Fused query logits (Q, H, W) of one image, and the terms' weights.
        Only the queries (class synonyms) of classes with terms change, and
        they are written into ``query_logits`` in place (a full copy per
        image costs as much as the refinement itself).

        Args:
            query_logits: (Q, H, W) scores ``S_s`` of every class synonym;
                ``S_c`` is their max per class. Overwritten.
            query_class: (Q,) class of each query.
            term_logits: (T, H, W) scores ``S_t`` of the mapped terms.
            term_class: (T,) their classes, from ``assign``.
        """
        # M_c from argmax_c S_c = the class of the top query; max().indices:
        # argmax's twin (first maximum on ties), 2-3x faster
        labels = query_class[query_logits.max(0).indices]
        weights = scoring.refinement_weights(term_logits, term_class, labels,
                                             self.temperature, self.refine)
        classes, vocab = scoring.vocabulary_scores(term_logits, term_class,
                                                   weights)
        rows, fused = scoring.fuse(query_logits, query_class, classes, vocab,
                                   self.fusion_lambda)
        query_logits[rows] = fused
        return query_logits, weights

    def fold(self, logits: Tensor, queries: QuerySet,
             mapping: TermMapping) -> Tuple[Tensor, List[List[dict]]]:
        """Steps 5-6 per image on (B, Q + U, H, W) merged logits: each
        image's mapped terms refine and fuse into its query channels (in
        place). Returns a view of the (B, Q, H, W) query logits and, per
        image, the report of its vocabulary."""
        num_queries = len(queries.query_class)
        channel = {i: c for c, i in enumerate(mapping.kept)}
        reports = []
        for image_logits, (vocab, index, term_class) in zip(
                logits, mapping.images):
            # every kept term's channel goes to the head as one view (a
            # gathered copy per image would cost as much as the refinement);
            # channels of other images' terms get class -1, weight 0
            channel_class = torch.full((len(channel), ), -1, dtype=torch.long)
            for i, k in zip(index, term_class.tolist()):
                if k >= 0:
                    channel_class[channel[i]] = k
            weights = torch.zeros(len(vocab))
            if bool((channel_class >= 0).any()):
                _, channel_weights = self(
                    image_logits[:num_queries], queries.query_class,
                    image_logits[num_queries:],
                    channel_class.to(image_logits.device))
                channel_weights = channel_weights.float().cpu()
                for j, (i, k) in enumerate(zip(index, term_class.tolist())):
                    if k >= 0:
                        weights[j] = channel_weights[channel[i]]
            reports.append(
                self.report(vocab, index, term_class, mapping.similarity,
                            weights, queries.class_names))
        # a view, not a copy: a stacked copy costs as much as the refinement
        return logits[:, :num_queries], reports

    @staticmethod
    def report(vocab: Dict[str, int], index: List[int], term_class: Tensor,
               similarity: Optional[Tensor], weights: Tensor,
               names: List[str]) -> List[dict]:
        """The vocabulary used and its mapping, for people (demo JSON)."""
        rows = []
        for j, (term, suggested) in enumerate(vocab.items()):
            k = int(term_class[j]) if len(term_class) else -1
            sim = float(similarity[index[j], k]) if k >= 0 else None
            rows.append(
                dict(
                    term=term,
                    suggested_class=names[suggested]
                    if suggested >= 0 else None,
                    mapped_class=names[k] if k >= 0 else None,
                    similarity=round(sim, 4) if sim is not None else None,
                    weight=round(float(weights[j]), 4)))
        return rows

    def decide(self,
               logits: Tensor,
               queries: QuerySet,
               size: Tuple[int, int],
               image: Optional[Tensor] = None,
               region_masks: Optional[Tensor] = None,
               max_output_logits: int = 2**28,
               max_pamr_pixels: int = 2**22) -> Tuple[Tensor, Tensor]:
        """One image's (1, Q, h, w) query logits -> (K, ., .) class
        log-probabilities and (H, W) labels at the original ``size``: PAMR
        guided by the normalised ``image`` (1, 3, h, w), the decision
        (``scoring.decide``), CorrCLIP's map correction with the image's
        (H, W) ``region_masks``.

        When Q x H x W exceeds ``max_output_logits``, the labels are
        decided band by band at full resolution
        (``scoring.upsampled_decision``) and the log-probabilities stay at
        the working resolution; PAMR, whose buffers hold 16 floats a pixel,
        then runs at the working resolution, as for photos of more than
        ``max_pamr_pixels`` pixels.
        """
        full = len(queries.query_class) * size[0] * size[1] \
            <= max_output_logits
        refine = self.pamr is not None and image is not None
        pamr_at_full_size = full and size[0] * size[1] <= max_pamr_pixels
        if refine and not pamr_at_full_size:
            logits = scoring.pamr(image, logits, **self.pamr)
        if full:
            logits = resize_to(logits, size)
        if refine and pamr_at_full_size:
            logits = scoring.pamr(resize_to(image, size), logits, **self.pamr)
        decision = (queries.query_class, queries.num_classes, self.prob_thd,
                    self.area_thd, self.bg_idx)
        scores, pred = scoring.decide(logits[0], *decision)
        if not full:
            pred = scoring.upsampled_decision(logits[0], size, *decision)
        if self.map_correction and region_masks is not None:
            pred = scoring.map_correction(pred, region_masks.to(pred.device))
        return scores, pred
