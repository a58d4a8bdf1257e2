"""The OV-EVA refinement head: one image's vocabulary folded onto its target
classes (method steps 4-6), once per image on whole-image score maps."""
from typing import Optional, Tuple

from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor

from . import scoring


@MODELS.register_module()
class OVEVAHead(BaseModule):
    """Top-N class mapping, mask-guided refinement and fusion.

    Every step has an off switch, so ablation configs can turn each on alone.

    Args:
        use_similarity: map terms to classes by CLIP text similarity
            (``sim >= map_thr``); False keeps only terms whose class the MLLM
            named ("vocabulary only").
        map_thr: least ``sim(t, c)`` for a term to be mapped by CLIP.
        top_n: terms kept per class (highest ``sim``); None keeps all.
        refine: mask-guided weights; False weighs a class's terms equally.
        temperature: softmax temperature of the refinement weights.
        fusion_lambda: weight of the vocabulary score in the fusion.
    """

    def __init__(self,
                 use_similarity: bool = True,
                 map_thr: float = 0.75,
                 top_n: Optional[int] = 3,
                 refine: bool = True,
                 temperature: float = 1.0,
                 fusion_lambda: float = 0.5,
                 init_cfg=None):
        super().__init__(init_cfg)
        if top_n is not None and top_n < 1:
            raise ValueError('head.top_n must be >= 1 or None')
        if temperature <= 0 or not 0 <= fusion_lambda <= 1:
            raise ValueError('head.temperature must be > 0 and '
                             'head.fusion_lambda in [0, 1]')
        self.use_similarity, self.map_thr = use_similarity, map_thr
        self.top_n, self.refine = top_n, refine
        self.temperature, self.fusion_lambda = temperature, fusion_lambda

    def assign(self, similarity: Tensor, suggested: Tensor) -> Tensor:
        """Top-N target class mapping from text alone (before any image
        scoring, so dropped terms are never scored).

        Args:
            similarity: (T, K) ``sim(t, c)`` of one image's terms.
            suggested: (T,) the MLLM's suggested class per term, -1 none.

        Returns:
            (T,) class per term, -1 for dropped terms.
        """
        return scoring.assign_terms(similarity, suggested, self.map_thr,
                                    self.top_n, self.use_similarity)

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
