"""OV-EVA's per-pixel math as pure tensor functions (no models, no state).

Shapes: B batch, S texts (synonyms or terms), K classes, D embedding width,
H x W positions. Every function works on any device and batch size.
"""
from typing import List, Optional, Sequence, Tuple

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


def class_probabilities(logits: Tensor, query_class: Tensor,
                        num_classes: int) -> Tensor:
    """The baselines' class probabilities: a softmax over every query (each
    synonym of each class its own channel), then the max over each class's
    queries. (Q, H, W) -> (K, H, W)."""
    probs = logits.softmax(dim=0)
    if len(query_class) == num_classes:  # one query a class: nothing to fold
        return probs
    return class_scores(probs[None], query_class, num_classes)[0]


def area_keep(counts: Tensor, area_thd: float, bg_idx: int = 0) -> Tensor:
    """SCLIP's area rule: from (K,) argmax pixel counts per class, (K,)
    bool, False for the foreground classes whose area is at most
    ``area_thd`` of all foreground area; the background is always kept."""
    num_classes = len(counts)
    foreground = torch.ones(
        num_classes, dtype=torch.bool, device=counts.device)
    foreground[bg_idx] = False
    keep = counts > area_thd * counts[foreground].sum()
    keep[bg_idx] = True
    return keep


def decide(logits: Tensor,
           query_class: Tensor,
           num_classes: int,
           prob_thd: float = 0.0,
           area_thd: Optional[float] = None,
           bg_idx: int = 0) -> Tuple[Tensor, Tensor]:
    """The final decision of the SCLIP-family baselines, at the output
    resolution: class probabilities (``class_probabilities``), SCLIP's area
    rule when ``area_thd`` is set, argmax, and the background threshold
    ``prob_thd`` on the top probability.

    Args:
        logits: (Q, H, W) query scores at their logit scale.
        query_class: (Q,) class of each query.

    Returns:
        (K, H, W) class log-probabilities (classes removed by the area rule
        at -inf, the background raised above the top class where the
        threshold applies, so that their argmax and mmseg's TTA agree with
        the labels), and the (H, W) labels.
    """
    probs = class_probabilities(logits, query_class, num_classes)
    if area_thd is not None:
        counts = torch.bincount(
            probs.max(dim=0).indices.flatten(), minlength=num_classes)
        keep = area_keep(counts, area_thd, bg_idx)
        probs = probs * keep[:, None, None].to(probs)
    top = probs.max(dim=0)  # .indices: argmax's first maximum, faster
    low = top.values < prob_thd
    labels = top.indices.masked_fill(low, bg_idx)
    scores = probs.log()
    if bool(low.any()):
        raised = scores.max(dim=0).values + 1.0
        scores[bg_idx] = torch.where(low, raised, scores[bg_idx])
    return scores, labels


def term_class_similarity(term_emb: Tensor, synonym_emb: Tensor,
                          synonym_to_class: Tensor,
                          num_classes: int) -> Tensor:
    """``sim(t, c) = max over synonyms s of c of <e(t), e(s)>``:
    (T, D), (S, D) -> (T, K)."""
    sims = term_emb @ synonym_emb.T.to(term_emb)
    index = synonym_to_class.to(sims.device).view(1, -1).expand_as(sims)
    out = sims.new_full((sims.shape[0], num_classes), -torch.inf)
    return out.scatter_reduce(1, index, sims, reduce='amax')


def assign_terms(similarity: Tensor,
                 suggested: Tensor,
                 map_thr: float = 0.75,
                 top_n: Optional[int] = 3,
                 use_similarity: bool = True) -> Tensor:
    """Top-N target class mapping (method step 4).

    Args:
        similarity: (T, K) ``sim(t, c)``.
        suggested: (T,) the MLLM's suggested class index, -1 for none; it
            wins over the CLIP choice.
        map_thr: terms whose best ``sim`` is below it (and with no suggested
            class) are dropped.
        top_n: each class keeps its ``top_n`` terms of highest ``sim``;
            None keeps all.
        use_similarity: False keeps only the MLLM's own suggestions (the
            "vocabulary only" ablation).

    Returns:
        (T,) class index per term, -1 for dropped terms.
    """
    best_sim, best = similarity.max(dim=1)
    suggested = suggested.to(similarity.device)
    chosen = torch.full_like(suggested, -1)
    if use_similarity:
        chosen = torch.where(best_sim >= map_thr, best, chosen)
    chosen = torch.where(suggested >= 0, suggested, chosen)
    if top_n is None:
        return chosen
    rank_sim = similarity.gather(1, chosen.clamp(min=0)[:, None])[:, 0]
    for k in chosen[chosen >= 0].unique():
        members = (chosen == k).nonzero()[:, 0]
        if len(members) > top_n:
            order = rank_sim[members].argsort(descending=True, stable=True)
            chosen[members[order[top_n:]]] = -1
    return chosen


def group_terms(embeddings: Tensor,
                merge_thr: float,
                max_groups: Optional[int] = None) -> List[List[int]]:
    """Synonym groups of ranked terms, for classes found with no class list
    (``model.classes='auto'``): terms in their rank order, each joins the
    group whose first term (the group's name) is the most similar, when
    that cosine similarity is at least ``merge_thr``, else opens a group of
    its own while there are fewer than ``max_groups`` (None: no cap); a term
    that can do neither is dropped.

    Args:
        embeddings: (T, D) L2-normalised text embeddings, best term first.

    Returns:
        groups of term indices, in the order they were opened; the first
        index of a group is its name.
    """
    if max_groups is not None and max_groups < 1:
        raise ValueError(f'max_groups={max_groups!r}: give None or >= 1')
    sims = (embeddings.float() @ embeddings.float().T).cpu()
    groups: List[List[int]] = []
    for t in range(len(embeddings)):
        if groups:
            heads = torch.tensor([g[0] for g in groups])
            best_sim, best = sims[t, heads].max(dim=0)
            if float(best_sim) >= merge_thr:
                groups[int(best)].append(t)
                continue
        if max_groups is None or len(groups) < max_groups:
            groups.append([t])
    return groups


def match_names(similarity: Tensor) -> Tensor:
    """Each found class's nearest target class by text similarity, as
    vocabulary-free segmentation is scored on a dataset: (F, K) ``sim`` ->
    (F,) target class index per found class."""
    return similarity.argmax(dim=1)


def refinement_weights(term_scores: Tensor,
                       term_class: Tensor,
                       labels: Tensor,
                       temperature: float = 1.0,
                       refine: bool = True) -> Tensor:
    """Mask-guided weights (method step 5) of one image's terms.

    ``a_t = mean_{x in M_c} S_t(x) - mean_x S_t(x)`` (0 where ``M_c`` is
    empty), ``w_t = softmax over the terms of class c of a_t / T``; with
    ``refine=False`` every term of a class weighs ``1 / |T_c|``.

    Args:
        term_scores: (T, H, W) ``S_t``.
        term_class: (T,) class of each term (-1: unused, weight 0).
        labels: (H, W) initial class map; ``M_c = {x : labels(x) = c}``.
    """
    used = term_class >= 0
    cls = term_class.clamp(min=0)
    if refine:
        # one matmul over the pixels: each term's score summed inside each
        # mask of its classes, and over the whole image (a column of ones).
        # Reads any layout of ``term_scores`` (e.g. a channels-last view of
        # the merged logits) in place.
        flat = term_scores.flatten(1)
        classes, slot = cls.unique(return_inverse=True)
        masks = torch.cat([
            labels.flatten()[:, None] == classes[None],
            labels.new_ones((labels.numel(), 1), dtype=torch.bool)
        ],
                          dim=1).to(flat.dtype)
        sums = flat @ masks  # (T, C + 1)
        area = masks.sum(0)[slot]
        inside = sums.gather(1, slot[:, None])[:, 0] / area.clamp(min=1)
        overall = sums[:, -1] / flat.shape[1]
        alignment = torch.where(area > 0, inside - overall,
                                torch.zeros_like(area))
        logits = alignment / temperature
    else:
        logits = torch.zeros(
            term_class.shape,
            device=term_scores.device,
            dtype=term_scores.dtype)
    logits = torch.where(used, logits, torch.full_like(logits, -torch.inf))
    # softmax within each class: subtract each class's max for stability
    num_classes = int(cls.max()) + 1 if len(cls) else 0
    class_max = logits.new_full((num_classes, ), -torch.inf).scatter_reduce(
        0, cls, logits, reduce='amax')
    exp = torch.where(used, (logits - class_max[cls]).exp(),
                      torch.zeros_like(logits))
    total = exp.new_zeros(num_classes).scatter_add(0, cls, exp)
    return torch.where(used, exp / total[cls].clamp(min=1e-12),
                       torch.zeros_like(exp))


def vocabulary_scores(term_scores: Tensor, term_class: Tensor,
                      weights: Tensor) -> Tuple[Tensor, Tensor]:
    """``V_c(x) = sum_{t in T_c} w_t S_t(x)`` for the classes that have terms
    (the others keep ``V_c = S_c``, see ``fuse``).

    Returns:
        the classes with terms (C,) and their ``V_c`` (C, H, W).
    """
    used = term_class >= 0
    classes, slot = term_class[used].unique(return_inverse=True)
    # one (C, T) mixing matrix and a matmul: no (T, H, W) temporaries, and
    # any memory layout of ``term_scores`` (e.g. channels-last) is read once
    mix = term_scores.new_zeros((len(classes), len(term_class)))
    mix[slot, used.nonzero()[:, 0]] = weights[used].to(mix)
    flat = term_scores.flatten(1)
    if flat.stride(0) < flat.stride(1):  # channels-last: pixel-major result
        return classes, (flat.T @ mix.T).T.view(-1, *term_scores.shape[1:])
    return classes, (mix @ flat).view(-1, *term_scores.shape[1:])


def fuse(scores: Tensor,
         score_class: Tensor,
         classes: Tensor,
         vocab: Tensor,
         fusion_lambda: float = 0.5) -> Tuple[Tensor, Tensor]:
    """``Z = (1 - lambda) S + lambda V_c`` (method step 6) for every query
    (class synonym) of the classes with terms: (Q, H, W) scores, (Q,) their
    classes, (C,) classes with terms and their (C, H, W) ``V_c``. Returns the
    fused queries' indices (F,) and their scores (F, H, W). The max over a
    class's fused queries is ``(1 - lambda) S_c + lambda V_c``; queries of
    classes without terms keep ``Z = S`` exactly."""
    slot = torch.full((int(max(score_class.max(), classes.max())) + 1, ),
                      -1,
                      dtype=torch.long,
                      device=score_class.device)
    slot[classes.to(slot.device)] = torch.arange(
        len(classes), device=slot.device)
    query_slot = slot[score_class]
    rows = (query_slot >= 0).nonzero()[:, 0]
    fused = scores[rows]  # a copy: updated in place below
    return rows, fused.mul_(1 - fusion_lambda).add_(
        vocab[query_slot[rows].to(vocab.device)].to(fused),
        alpha=fusion_lambda)


def _shifted(x: Tensor, dilation: int, centre: bool = False) -> list:
    """Views of ``x`` (..., H, W) moved by each of the 8 neighbour offsets
    ``(dy, dx)`` in ``{-d, 0, d}^2`` (and the centre if asked): view ``i`` at
    ``p`` holds ``x(p + offset_i)``, borders replicated."""
    height, width = x.shape[-2:]
    d = dilation
    padded = torch.nn.functional.pad(x, [d] * 4, mode='replicate')
    return [
        padded[..., d + dy:d + dy + height, d + dx:d + dx + width]
        for dy in (-d, 0, d) for dx in (-d, 0, d)
        if centre or (dy, dx) != (0, 0)
    ]


def pamr(image: Tensor,
         logits: Tensor,
         num_iter: int = 10,
         dilations: Sequence[int] = (8, 16)) -> Tensor:
    """PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020),
    as the training-free CLIP segmentors use it (10 steps, dilations 8 and
    16): each step replaces every pixel's logits by a weighted mean of its
    neighbours' at the given dilations, weighted by image similarity.

    Affinity of pixel ``p`` to neighbour ``q``: softmax over the neighbours
    of ``-mean_ch |I(p) - I(q)| / (1e-8 + 0.1 sigma(p))``, where ``sigma``
    is the per-channel standard deviation of ``I`` over the 3 x 3 grid of
    each dilation. Borders are replicated.

    Args:
        image: (B, 3, H, W) guidance image (e.g. the normalised input).
        logits: (B, K, H, W) scores at the image's resolution.

    Returns:
        (B, K, H, W) refined logits, in ``logits``'s layout and dtype.
    """
    image = image.float()
    grids = [v for d in dilations for v in _shifted(image, d, centre=True)]
    sigma = torch.stack(grids, dim=2).std(dim=2)  # (B, 3, H, W)
    scale = 1e-8 + 0.1 * sigma
    neighbours = [v for d in dilations for v in _shifted(image, d)]
    affinity = torch.stack(
        [-((image - q).abs() / scale).mean(1) for q in neighbours], dim=1)
    affinity = affinity.softmax(dim=1).to(logits.dtype)  # (B, P, H, W)
    if num_iter < 1:
        return logits
    # Two buffers for all the steps: the logits with replicated borders as
    # wide as the largest dilation (each dilation's neighbours are views of
    # it, equal to its own replicate padding) and the sum, refilled in
    # place; the same operations in the same order, so the same bits.
    height, width = logits.shape[-2:]
    margin = max(dilations)
    padded = logits.new_empty(
        (*logits.shape[:-2], height + 2 * margin, width + 2 * margin))
    inner = padded[..., margin:margin + height, margin:margin + width]
    neighbours = [
        padded[..., margin + dy:margin + dy + height,
               margin + dx:margin + dx + width] for d in dilations
        for dy in (-d, 0, d) for dx in (-d, 0, d) if (dy, dx) != (0, 0)
    ]
    refined = torch.empty_like(logits)
    for _ in range(num_iter):
        inner.copy_(logits)
        _replicate_borders(padded, margin)
        refined.zero_()
        for p, neighbour in enumerate(neighbours):
            refined.addcmul_(affinity[:, p:p + 1], neighbour)
        logits = refined
    return logits


def _replicate_borders(padded: Tensor, margin: int) -> None:
    """Fill the ``margin`` wide border of ``padded`` (..., H, W) in place
    from its inside, as ``F.pad(..., mode='replicate')`` would."""
    m = margin
    if m == 0:
        return
    rows = padded[..., m:-m, :]
    top, bottom = padded[..., :m, :], padded[..., -m:, :]
    left, right = rows[..., :m], rows[..., -m:]
    left.copy_(rows[..., m:m + 1].expand_as(left))
    right.copy_(rows[..., -m - 1:-m].expand_as(right))
    top.copy_(padded[..., m:m + 1, :].expand_as(top))
    bottom.copy_(padded[..., -m - 1:-m, :].expand_as(bottom))


def bilinear_taps(in_size: int,
                  out_size: int,
                  keep: int,
                  device=None,
                  dtype=torch.float32,
                  start: int = 0) -> Tuple[Tensor, Tensor, Tensor]:
    """Bilinear resizing along one axis from ``in_size`` to ``out_size``
    samples (``align_corners=False``, as ``F.interpolate``), ``keep``
    outputs from ``start`` on: output ``i`` is ``x[low[i]] * (1 - frac[i])
    + x[high[i]] * frac[i]``. Returns (low, high, frac)."""
    src = (
        (torch.arange(start, start + keep, device=device, dtype=dtype) + 0.5) *
        (in_size / out_size) - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    return low, high, src - low


def bilinear_matrix(in_size: int,
                    out_size: int,
                    keep: Optional[int] = None,
                    device=None,
                    start: int = 0) -> Tensor:
    """(keep, in_size) float64 matrix ``M`` of ``bilinear_taps``: ``M @ x``
    equals ``F.interpolate(x, out_size)[start:start + keep]`` for a column
    ``x``."""
    keep = out_size if keep is None else keep
    low, high, frac = bilinear_taps(in_size, out_size, keep, device,
                                    torch.float64, start)
    rows = torch.arange(keep, device=device)
    matrix = torch.zeros((keep, in_size), device=device, dtype=torch.float64)
    matrix.index_put_((rows, low), 1 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


def merge_windows(window_logits: Tensor, y_offsets: Sequence[int],
                  x_offsets: Sequence[int], window_size: Tuple[int, int],
                  upsampled_size: Tuple[int, int], image_size: Tuple[int, int],
                  crop_offset: Tuple[int, int]) -> Tensor:
    """Sliding-window logits merged into one image, as mmseg's slide
    inference merges them: each window bilinearly resized to
    ``upsampled_size`` and cropped to ``window_size`` from ``crop_offset``
    (where the window's pixels lie in its padded patch grid), added into its
    place, and every pixel divided by the number of windows covering it.

    Bilinear resizing is separable and the windows form a grid, so the
    merge is two small matrix products per image, ``A @ L @ B^T`` (weights
    over covering counts): the work and memory follow the image (K x H x W,
    written once), not windows x window size.

    Args:
        window_logits: (R, C, B, K, h, w) patch-grid logits per window.
        y_offsets, x_offsets: (R,) and (C,) top and left pixel of each row
            and column of windows.
        window_size: (wh, ww) pixels of a window.
        upsampled_size: (uh, uw) size of a window's logits resized before
            cropping to ``window_size`` from ``crop_offset`` (oy, ox).
        image_size: (H, W).

    Returns:
        (B, K, H, W) channels-last merged logits.
    """
    rows, cols, batch, channels, grid_h, grid_w = window_logits.shape
    device, dtype = window_logits.device, window_logits.dtype

    def axis_matrix(offsets, window, upsampled, grid, size, crop):
        # (size, len(offsets) * grid): each window's interpolation weights
        # at its offset, over the number of windows covering each pixel
        weights = bilinear_matrix(grid, upsampled, window, device, crop)
        matrix = torch.zeros((size, len(offsets) * grid),
                             device=device,
                             dtype=torch.float64)
        covered = torch.zeros(size, device=device, dtype=torch.float64)
        for i, start in enumerate(offsets):
            matrix[start:start + window, i * grid:(i + 1) * grid] = weights
            covered[start:start + window] += 1
        return (matrix / covered.clamp(min=1)[:, None]).to(dtype)

    height, width = image_size
    down = axis_matrix(y_offsets, window_size[0], upsampled_size[0], grid_h,
                       height, crop_offset[0])  # (H, R*h)
    across = axis_matrix(x_offsets, window_size[1], upsampled_size[1], grid_w,
                         width, crop_offset[1])  # (W, C*w)
    # (B, R*h, C*w, K): window rows and columns laid side by side
    tiles = window_logits.permute(2, 0, 4, 1, 5, 3)
    tiles = tiles.reshape(batch, rows * grid_h, cols * grid_w, channels)
    # ``down`` is block-sparse: between two window edges the same one or
    # two rows of windows cover the image, so each band of rows multiplies
    # only their columns (a third to a half of the work at 50% overlap)
    bottoms = [min(y + window_size[0], height) for y in y_offsets]
    edges = sorted({0, height, *y_offsets, *bottoms})
    bands = []
    for top, bottom in zip(edges[:-1], edges[1:]):
        used = down[top:bottom].abs().sum(0).nonzero()[:, 0]
        bands.append((top, bottom, int(used[0]), int(used[-1]) + 1))
    out = window_logits.new_empty((batch, height, width, channels))
    for b in range(batch):
        wide = (across @ tiles[b]).view(rows * grid_h, width * channels)
        image = out[b].view(height, width * channels)
        for top, bottom, first, last in bands:
            torch.mm(
                down[top:bottom, first:last],
                wide[first:last],
                out=image[top:bottom])
    return out.permute(0, 3, 1, 2)


def upsampled_bands(logits: Tensor,
                    size: Tuple[int, int],
                    max_elements: int = 2**23):
    """``logits`` (C, h, w) bilinearly resized to ``size`` (H, W)
    (``align_corners=False``, as mmseg's ``resize``), one band of rows at a
    time: yields (rows slice, (C, rows, W) float32 band), so memory is
    ~``max_elements`` floats instead of C x H x W (29 GB for 150 classes on
    a 6000 x 8000 photo). Equal to resizing all at once but for float
    rounding."""
    channels, height, width = logits.shape
    out_h, out_w = size
    logits = logits.float()
    # rows: PyTorch's source index and weight for align_corners=False;
    # columns: F.interpolate itself, on each band of interpolated rows
    top_row, bottom_row, weight = bilinear_taps(height, out_h, out_h,
                                                logits.device)
    weight = weight[None, :, None]
    rows = max(1, max_elements // max(channels * out_w, 1))
    for start in range(0, out_h, rows):
        band = slice(start, start + rows)
        lower = weight[:, band]
        mixed = (
            logits[:, top_row[band]] * (1 - lower) +
            logits[:, bottom_row[band]] * lower)
        count = mixed.shape[1]
        mixed = torch.nn.functional.interpolate(
            mixed.reshape(1, channels * count, width),
            size=out_w,
            mode='linear',
            align_corners=False)
        yield band, mixed.view(channels, count, out_w)


def upsampled_decision(logits: Tensor,
                       size: Tuple[int, int],
                       query_class: Tensor,
                       num_classes: int,
                       prob_thd: float = 0.0,
                       area_thd: Optional[float] = None,
                       bg_idx: int = 0,
                       max_elements: int = 2**23) -> Tensor:
    """``decide``'s (H, W) labels for query scores (Q, h, w) resized to
    ``size``, computed band by band (``upsampled_bands``) for photos whose
    full-size scores would not fit. The argmax of the class probabilities
    is taken on the class logits (the softmax keeps their order) and the
    softmax's normaliser is computed only for the threshold, so this equals
    ``decide`` but for float rounding. SCLIP's area rule takes a first pass
    that only counts argmax areas."""
    one_each = len(query_class) == num_classes

    def class_logits(band):
        return band if one_each else class_scores(band[None], query_class,
                                                  num_classes)[0]

    removed = None
    if area_thd is not None:
        counts = torch.zeros(
            num_classes, dtype=torch.long, device=logits.device)
        for _, band in upsampled_bands(logits, size, max_elements):
            top = class_logits(band).max(dim=0).indices
            counts += torch.bincount(top.flatten(), minlength=num_classes)
        removed = ~area_keep(counts, area_thd, bg_idx)
    pred = torch.empty(size, dtype=torch.long, device=logits.device)
    for rows, band in upsampled_bands(logits, size, max_elements):
        scores = class_logits(band)
        if removed is not None:  # not in place: the normaliser keeps all
            scores = scores.masked_fill(removed[:, None, None], -torch.inf)
        top = scores.max(dim=0)
        labels = top.indices
        if prob_thd > 0:
            low = (top.values - band.logsumexp(dim=0)).exp() < prob_thd
            labels = labels.masked_fill(low, bg_idx)
        pred[rows] = labels
    return pred


def region_index(masks: Tensor) -> Tuple[Tensor, Tensor]:
    """(h, w) integer labels -> (sorted distinct labels, (h, w) index of
    each pixel's label among them); index 0 is the smallest label, the
    unsegmented region by the official convention."""
    values, index = torch.unique(masks, return_inverse=True)
    return values, index


def map_correction(pred: Tensor, masks: Tensor) -> Tensor:
    """Every region of ``masks`` (H, W) but the first (smallest label)
    takes the most frequent label of ``pred`` (H, W) inside it (the
    smallest such label on ties, as ``torch.mode``)."""
    values, index = region_index(masks)
    if len(values) < 2:
        return pred.clone()
    num_labels = int(pred.max()) + 1
    flat_pred, flat_index = pred.flatten(), index.flatten()
    counts = torch.zeros(
        len(values) * num_labels, dtype=torch.long, device=pred.device)
    counts.index_add_(0, flat_index * num_labels + flat_pred,
                      torch.ones_like(flat_pred))
    mode = counts.view(len(values), num_labels).argmax(dim=1)
    corrected = mode.to(pred.dtype)[flat_index]
    return torch.where(flat_index == 0, flat_pred, corrected).view_as(pred)
