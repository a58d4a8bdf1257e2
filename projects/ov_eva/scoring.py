"""OV-EVA's per-pixel math as pure tensor functions (no models, no state).

Shapes: B batch, S texts (synonyms or terms), K classes, D embedding width,
H x W positions. Every function works on any device and batch size.
"""
import torch
from torch import Tensor


def text_scores(features: Tensor, text: Tensor, logit_scale: float) -> Tensor:
    """``S_t(x) = logit_scale * <F(x), e(t)>``: (B, D, H, W), (S, D) ->
    (B, S, H, W); both inputs L2-normalised."""
    return logit_scale * torch.einsum('bdhw,sd->bshw', features,
                                      text.to(features.dtype))


def class_scores(scores: Tensor, text_to_class: Tensor,
                 num_classes: int) -> Tensor:
    """``S_c(x) = max over the texts of class c``: (B, S, H, W) ->
    (B, K, H, W); ``text_to_class`` (S,) holds each text's class index and
    every class must own at least one text."""
    batch, _, height, width = scores.shape
    index = text_to_class.to(scores.device).view(1, -1, 1, 1).expand_as(scores)
    out = scores.new_full((batch, num_classes, height, width), -torch.inf)
    return out.scatter_reduce(1, index, scores, reduce='amax')


def apply_background_threshold(logits: Tensor,
                               prob_thd: float,
                               bg_idx: int = 0) -> Tensor:
    """Hand pixels whose top softmax probability is below ``prob_thd`` to
    class ``bg_idx``, as the SCLIP-family baselines do for datasets with a
    background class. Those pixels get ``bg_idx``'s logit raised just above
    their maximum, so a plain argmax (and mmseg's TTA, which averages
    softmaxes) yields background; other pixels are untouched.
    ``prob_thd <= 0`` returns ``logits`` unchanged."""
    if prob_thd <= 0:
        return logits
    top_prob, _ = logits.softmax(dim=1).max(dim=1)
    low = top_prob < prob_thd
    raised = logits.max(dim=1).values + 1.0
    out = logits.clone()
    out[:, bg_idx] = torch.where(low, raised, logits[:, bg_idx])
    return out
