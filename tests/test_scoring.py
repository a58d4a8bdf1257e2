"""Pure scoring functions on hand-made tensors."""
import pytest
import torch

from ov_eva import scoring


def test_text_scores_are_scaled_cosines():
    feats = torch.zeros(1, 2, 1, 2)
    feats[0, :, 0, 0] = torch.tensor([1., 0.])
    feats[0, :, 0, 1] = torch.tensor([0., 1.])
    text = torch.tensor([[1., 0.], [0.6, 0.8]])
    got = scoring.text_scores(feats, text, logit_scale=10.)
    assert got.shape == (1, 2, 1, 2)
    torch.testing.assert_close(got[0, :, 0, 0], torch.tensor([10., 6.]))
    torch.testing.assert_close(got[0, :, 0, 1], torch.tensor([0., 8.]))


def test_class_scores_take_max_over_synonyms():
    scores = torch.tensor([1., 5., 2., -3.]).view(1, 4, 1,
                                                  1).repeat(2, 1, 1, 3)
    text_to_class = torch.tensor([0, 1, 1, 2])
    got = scoring.class_scores(scores, text_to_class, 3)
    assert got.shape == (2, 3, 1, 3)
    torch.testing.assert_close(got[1, :, 0, 2], torch.tensor([1., 5., -3.]))


def reference_decision(cos, query_class, scale, prob_thd, area_thd=None):
    """The SCLIP-family decision as their official code writes it: logit
    scale and softmax over all queries, one-hot masks to take each class's
    max, SCLIP's area rule on class 0's complement, argmax, threshold."""
    num_classes, num_queries = int(query_class.max()) + 1, len(query_class)
    probs = (cos * scale).softmax(0)
    if num_classes != num_queries:
        one_hot = torch.nn.functional.one_hot(query_class)
        one_hot = one_hot.T.view(num_classes, num_queries, 1, 1)
        probs = (probs[None] * one_hot).max(1)[0]
    if area_thd is not None:
        predictions = torch.nn.functional.one_hot(
            probs.argmax(0), num_classes).to(probs)
        area = predictions[:, :, 1:].sum((0, 1), keepdim=True)
        area = (area > area_thd * area.sum()).to(probs)
        probs[1:] *= area.transpose(0, -1)
    pred = probs.argmax(0, keepdim=True)
    pred[probs.max(0, keepdim=True)[0] < prob_thd] = 0
    return probs, pred[0]


@pytest.mark.parametrize('synonyms', [False, True])
@pytest.mark.parametrize('prob_thd,area_thd', [(0.0, None), (0.1, None),
                                               (0.5, None), (0.1, 0.1),
                                               (0.0, 0.3)])
def test_decision_equals_the_reference_code(synonyms, prob_thd, area_thd):
    torch.manual_seed(0)
    query_class = torch.tensor(
        [0, 0, 1, 2, 2, 2, 3] if synonyms else [0, 1, 2, 3])
    cos = torch.randn(len(query_class), 30, 40) * 0.05
    cos[3, :5] += 0.2  # a small region for the area rule
    probs, want = reference_decision(cos, query_class, 65.0, prob_thd,
                                     area_thd)
    scores, got = scoring.decide(cos * 65.0, query_class, 4, prob_thd,
                                 area_thd)
    assert torch.equal(got, want)
    assert scores.shape == (4, 30, 40)
    assert torch.equal(scores.max(0).indices, got)  # TTA agrees
    kept = probs > 0
    kept[0] &= probs.max(0).values >= prob_thd  # else background is raised
    torch.testing.assert_close(scores[kept].exp(), probs[kept])
    if area_thd is not None and not bool(kept.all()):
        assert bool((scores[~kept] == -torch.inf).all())


def test_decision_rules_by_hand():
    # pixel 0: uniform over 3 queries (top prob 1/3); pixel 1: query 1
    logits = torch.tensor([[0., 0., 0.], [0., 5., 0.]]).T.reshape(3, 1, 2)
    one_each = torch.arange(3)
    _, labels = scoring.decide(logits, one_each, 3, prob_thd=0.5, bg_idx=2)
    assert labels.tolist() == [[2, 1]]
    _, labels = scoring.decide(logits, one_each, 3, prob_thd=0.2)
    assert labels.tolist() == [[0, 1]]  # no pixel below 0.2: argmax
    # two synonyms of class 0 share the softmax: 1/3 each, not 2/3
    scores, labels = scoring.decide(
        logits, torch.tensor([0, 0, 1]), 2, prob_thd=0.4, bg_idx=1)
    assert labels.tolist() == [[1, 0]]
    torch.testing.assert_close(scores[0, 0, 0].exp(), torch.tensor(1 / 3))
    counts = torch.tensor([100, 5, 50, 45])  # foreground: 100 pixels
    assert scoring.area_keep(counts, 0.1).tolist() == [True, False, True, True]
    assert scoring.area_keep(counts,
                             0.45).tolist() == [True, False, True, False]


def test_term_class_similarity_is_max_over_synonyms():
    terms = torch.tensor([[1., 0.], [0., 1.]])
    synonyms = torch.tensor([[1., 0.], [0.6, 0.8], [0., 1.]])
    got = scoring.term_class_similarity(terms, synonyms,
                                        torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(got, torch.tensor([[1., 0.], [0.8, 1.]]))


def test_assign_terms_threshold_suggestion_and_top_n():
    sim = torch.tensor([
        [0.90, 0.10],  # -> class 0
        [0.80, 0.20],  # -> class 0
        [0.95, 0.30],  # -> class 0 (best of class 0)
        [0.50, 0.60],  # below map_thr: dropped
        [0.10, 0.40],  # below map_thr, but the MLLM said class 0
        [0.76, 0.74],  # -> class 0, but top_n cuts it
    ])
    none = torch.full((6, ), -1)
    suggested = none.clone()
    suggested[4] = 0
    got = scoring.assign_terms(sim, suggested, map_thr=0.75, top_n=None)
    assert got.tolist() == [0, 0, 0, -1, 0, 0]
    top3 = scoring.assign_terms(sim, suggested, map_thr=0.75, top_n=3)
    assert top3.tolist() == [0, 0, 0, -1, -1, -1]  # 0.95, 0.90, 0.80 stay
    top1 = scoring.assign_terms(sim, none, map_thr=0.75, top_n=1)
    assert top1.tolist() == [-1, -1, 0, -1, -1, -1]
    only_mllm = scoring.assign_terms(
        sim, suggested, top_n=None, use_similarity=False)
    assert only_mllm.tolist() == [-1, -1, -1, -1, 0, -1]
    wins = suggested.clone()
    wins[0] = 1  # the MLLM's class wins over CLIP's choice
    assert scoring.assign_terms(sim, wins, top_n=None)[0] == 1


def region_setup():
    """Class 0 owns the left half of a 4x4 image, class 1 the right."""
    mask = torch.zeros(4, 4, dtype=torch.long)
    mask[:, 2:] = 1
    everywhere = torch.full((4, 4), 5.0)  # a 'room' term: high everywhere
    on_region = torch.zeros(4, 4)
    on_region[:, :2] = 5.0  # lights up class 0's region only
    return mask, torch.stack([everywhere, on_region])


def test_refinement_damps_global_terms_and_favours_aligned_ones():
    mask, scores = region_setup()
    term_class = torch.tensor([0, 0])
    w = scoring.refinement_weights(scores, term_class, mask, temperature=1.0)
    # a = [5 - 5, 5 - 2.5] = [0, 2.5] -> softmax
    want = torch.softmax(torch.tensor([0.0, 2.5]), 0)
    torch.testing.assert_close(w, want)
    assert w[1] > w[0]
    flat = scoring.refinement_weights(scores, term_class, mask, refine=False)
    torch.testing.assert_close(flat, torch.tensor([0.5, 0.5]))
    hot = scoring.refinement_weights(scores, term_class, mask, 0.1)
    assert hot[1] > w[1]  # lower temperature, sharper preference


def test_refinement_empty_mask_unused_terms_and_per_class_softmax():
    mask, scores = region_setup()
    empty = torch.full_like(mask, 5)  # no pixel of class 0
    w = scoring.refinement_weights(scores, torch.tensor([0, 0]), empty)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5]))  # a_t = 0
    scores3 = torch.cat([scores, scores[:1]])
    w = scoring.refinement_weights(scores3, torch.tensor([0, -1, 1]), mask)
    assert w.tolist() == [1.0, 0.0, 1.0]  # one term per class, one unused


def test_vocabulary_scores_and_fusion():
    # queries: two synonyms of class 0, one of class 1
    query_scores = torch.stack([
        torch.full((2, 2), 1.0),
        torch.full((2, 2), 3.0),
        torch.full((2, 2), 2.0)
    ])
    query_class = torch.tensor([0, 0, 1])
    term_scores = torch.stack([
        torch.full((2, 2), 4.0),
        torch.full((2, 2), 8.0),
        torch.full((2, 2), 100.0)
    ])
    term_class = torch.tensor([0, 0, -1])
    weights = torch.tensor([0.25, 0.75, 0.0])
    classes, vocab = scoring.vocabulary_scores(term_scores, term_class,
                                               weights)
    assert classes.tolist() == [0]
    torch.testing.assert_close(vocab[0], torch.full((2, 2), 7.0))
    rows, fused = scoring.fuse(query_scores, query_class, classes, vocab, 0.5)
    assert rows.tolist() == [0, 1]  # only the queries of class 0 change
    torch.testing.assert_close(fused[0], torch.full((2, 2), 4.0))
    torch.testing.assert_close(fused[1], torch.full((2, 2), 5.0))
    # the class score max_s Z_s is (1 - lambda) S_c + lambda V_c
    torch.testing.assert_close(
        fused.max(0).values, 0.5 * query_scores[:2].max(0).values + 0.5 * 7)
    torch.testing.assert_close(
        scoring.fuse(query_scores, query_class, classes, vocab, 0.0)[1],
        query_scores[:2])
    torch.testing.assert_close(
        scoring.fuse(query_scores, query_class, classes, vocab, 1.0)[1],
        vocab[[0, 0]])


def test_head_fuses_only_classes_with_terms():
    from ov_eva.head import OVEVAHead
    torch.manual_seed(0)
    query_scores = torch.randn(4, 4, 4)
    query_class = torch.tensor([0, 1, 2, 2])
    term_scores = torch.randn(2, 4, 4)
    original = query_scores.clone()
    fused, weights = OVEVAHead(fusion_lambda=0.5)(query_scores, query_class,
                                                  term_scores,
                                                  torch.tensor([2, 2]))
    assert fused is query_scores  # in place
    assert torch.equal(fused[:2], original[:2])  # Z = S exactly
    vocab = (weights[:, None, None] * term_scores).sum(0)
    torch.testing.assert_close(fused[2:], 0.5 * original[2:] + 0.5 * vocab)
    # M_c: the class of each pixel's top query
    labels = query_class[original.argmax(0)]
    torch.testing.assert_close(
        weights,
        scoring.refinement_weights(term_scores, torch.tensor([2, 2]), labels))


def test_head_functions_are_device_and_dtype_agnostic():
    mask, scores = region_setup()
    for dtype in (torch.float32, torch.float64):
        w = scoring.refinement_weights(
            scores.to(dtype), torch.tensor([0, 0]), mask)
        assert w.dtype == dtype
        torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=dtype))


@pytest.mark.parametrize('area_thd', [None, 0.05])
def test_upsampled_decision_equals_resize_then_decide(area_thd):
    torch.manual_seed(0)
    for query_class in (torch.tensor([0, 0, 1, 2, 3, 3, 4]), torch.arange(7)):
        check_upsampled_decision(query_class, area_thd)


def check_upsampled_decision(query_class, area_thd):
    from mmseg.models.utils import resize
    num_classes = int(query_class.max()) + 1
    for (h, w), (height, width), band in [((37, 53), (300, 411), 7 * 411),
                                          ((56, 75), (448, 597), 10**6),
                                          ((20, 30), (20, 30), 1),
                                          ((50, 40), (17, 13), 7 * 13 * 4)]:
        logits = torch.randn(7, h, w) * 3
        full = resize(logits[None], size=(height, width), mode='bilinear')
        _, expected = scoring.decide(full[0], query_class, num_classes, 0.3,
                                     area_thd)
        got = scoring.upsampled_decision(
            logits, (height, width),
            query_class,
            num_classes,
            0.3,
            area_thd,
            max_elements=band)
        assert got.dtype == torch.long
        assert torch.equal(got, expected), (h, w, height, width)


def test_bilinear_matrix_is_f_interpolate():
    torch.manual_seed(0)
    for n_in, n_out, keep, start in [(14, 224, 224, 0), (14, 224, 200, 0),
                                     (14, 224, 200, 7), (5, 3, 3, 0),
                                     (7, 7, 7, 0), (1, 16, 9, 3)]:
        column = torch.randn(n_in, dtype=torch.float64)
        expected = torch.nn.functional.interpolate(
            column[None, None], size=n_out, mode='linear',
            align_corners=False)[0, 0, start:start + keep]
        matrix = scoring.bilinear_matrix(n_in, n_out, keep, start=start)
        assert matrix.shape == (keep, n_in)
        torch.testing.assert_close(matrix @ column, expected)


def naive_merge(window_logits,
                y_offsets,
                x_offsets,
                window,
                upsampled,
                size,
                crop=(0, 0)):
    """mmseg's slide merge, window by window; each window's pixels lie at
    ``crop`` in its upsampled logits (ClearCLIP's centred padding)."""
    rows, cols, batch, channels = window_logits.shape[:4]
    preds = torch.zeros(batch, channels, *size, dtype=window_logits.dtype)
    count = torch.zeros(1, 1, *size, dtype=window_logits.dtype)
    for r, y in enumerate(y_offsets):
        for c, x in enumerate(x_offsets):
            up = torch.nn.functional.interpolate(
                window_logits[r, c],
                size=upsampled,
                mode='bilinear',
                align_corners=False)[..., crop[0]:crop[0] + window[0],
                                     crop[1]:crop[1] + window[1]]
            preds[..., y:y + window[0], x:x + window[1]] += up
            count[..., y:y + window[0], x:x + window[1]] += 1
    return preds / count


@pytest.mark.parametrize(
    'y_offsets,x_offsets,window,upsampled,size,crop',
    [
        ([0, 112, 224], [0, 112, 224, 336, 373], (224, 224), (224, 224),
         (448, 597), (0, 0)),  # an ADE20K image: the last column is shifted
        ([0], [0, 76], (100, 224), (112, 224), (100, 300),
         (0, 0)),  # short image, padded at the end
        ([0], [0, 76], (100, 224), (112, 224), (100, 300),
         (6, 0)),  # the same, padded around (ClearCLIP)
        ([0], [0, 76], (100, 224), (100, 224), (100, 300),
         (0, 0)),  # the same, truncated and stretched (SCLIP, NACLIP)
        ([0, 5, 9], [0], (20, 30), (32, 32), (29, 30), (6, 1)),  # overlap
        ([0, 40], [0, 40], (40, 40), (48, 48), (80, 80), (4, 4)),
    ])
def test_merge_windows_equals_window_by_window(y_offsets, x_offsets, window,
                                               upsampled, size, crop):
    torch.manual_seed(0)
    grid = (upsampled[0] // 16 or 1, upsampled[1] // 16 or 1)
    logits = torch.randn(
        len(y_offsets), len(x_offsets), 2, 5, *grid, dtype=torch.float64)
    merged = scoring.merge_windows(logits, y_offsets, x_offsets, window,
                                   upsampled, size, crop)
    assert merged.shape == (2, 5, *size)
    assert merged.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        merged,
        naive_merge(logits, y_offsets, x_offsets, window, upsampled, size,
                    crop))


def pamr_reference(image, logits, num_iter, dilations):
    """PAMR as its authors wrote it: fixed 3 x 3 convolution kernels that
    take differences to, or copies of, the neighbours at each dilation."""
    F = torch.nn.functional
    offsets = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]

    def local(x, kernel):
        b, k, h, w = x.shape
        x = x.reshape(b * k, 1, h, w)
        out = [
            F.conv2d(F.pad(x, [d] * 4, mode='replicate'), kernel, dilation=d)
            for d in dilations
        ]
        return torch.cat(out, 1).view(b, k, -1, h, w)

    every = torch.zeros(9, 1, 3, 3)
    difference, copy = torch.zeros(8, 1, 3, 3), torch.zeros(8, 1, 3, 3)
    for i in range(9):
        every[i, 0, i // 3, i % 3] = 1
    for i, (r, c) in enumerate(offsets):
        copy[i, 0, r, c] = difference[i, 0, r, c] = 1
        difference[i, 0, r, c], difference[i, 0, 1, 1] = -1, 1
    sigma = local(image, every).std(2, keepdim=True)
    affinity = -local(image, difference).abs() / (1e-8 + 0.1 * sigma)
    affinity = affinity.mean(1, keepdim=True).softmax(2)
    for _ in range(num_iter):
        logits = (local(logits, copy) * affinity).sum(2)
    return logits


def test_pamr_equals_the_convolution_formulation():
    torch.manual_seed(0)
    image, logits = torch.randn(2, 3, 30, 41), torch.randn(2, 5, 30, 41)
    for num_iter, dilations in [(1, (1, )), (3, (1, 4)), (2, (8, 16))]:
        torch.testing.assert_close(
            scoring.pamr(image, logits, num_iter, dilations),
            pamr_reference(image, logits, num_iter, dilations))
    last = logits.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        scoring.pamr(image, last, 2, (1, 2)),
        pamr_reference(image, logits, 2, (1, 2)))


def pamr_previous(image, logits, num_iter=10, dilations=(8, 16)):
    """scoring.pamr before its buffers were reused across the steps: fresh
    padded copies and a fresh sum per step."""

    def shifted(x, d, centre=False):  # the neighbours, borders replicated
        height, width = x.shape[-2:]
        padded = torch.nn.functional.pad(x, [d] * 4, mode='replicate')
        return [
            padded[..., d + dy:d + dy + height, d + dx:d + dx + width]
            for dy in (-d, 0, d) for dx in (-d, 0, d)
            if centre or (dy, dx) != (0, 0)
        ]

    image = image.float()
    grids = [v for d in dilations for v in shifted(image, d, centre=True)]
    scale = 1e-8 + 0.1 * torch.stack(grids, dim=2).std(dim=2)
    neighbours = [v for d in dilations for v in shifted(image, d)]
    affinity = torch.stack(
        [-((image - q).abs() / scale).mean(1) for q in neighbours], dim=1)
    affinity = affinity.softmax(dim=1).to(logits.dtype)
    for _ in range(num_iter):
        refined = torch.zeros_like(logits)
        neighbours = [v for d in dilations for v in shifted(logits, d)]
        for p, neighbour in enumerate(neighbours):
            refined.addcmul_(affinity[:, p:p + 1], neighbour)
        logits = refined
    return logits


@pytest.mark.parametrize('classes', [1, 21, 150])
def test_pamr_equals_its_previous_formula_bit_for_bit(classes):
    """The reused buffers change no bit: torch.equal, not a tolerance."""
    torch.manual_seed(classes)
    for batch, height, width, dilations in [(1, 17, 23, (8, 16)),
                                            (2, 40, 33, (1, 3))]:
        image = torch.randn(batch, 3, height, width)
        logits = torch.randn(batch, classes, height, width) * 5
        for num_iter in (1, 4):
            refined = scoring.pamr(image, logits, num_iter, dilations)
            assert torch.equal(
                refined, pamr_previous(image, logits, num_iter, dilations))
    last = logits.contiguous(memory_format=torch.channels_last)
    refined = scoring.pamr(image, last, 3, dilations)
    assert refined.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(refined, pamr_previous(image, last, 3, dilations))
    assert torch.equal(scoring.pamr(image, logits, 0), logits)


def test_pamr_moves_a_blurry_boundary_onto_the_image_edge():
    # image: dark left of column 24, bright right of it; the logits put the
    # class boundary 6 columns off, at 30
    image = torch.zeros(1, 3, 32, 48)
    image[..., 24:] = 1
    image += 0.01 * torch.randn(
        image.shape, generator=torch.Generator().manual_seed(0))
    ramp = (29.5 - torch.arange(48.0)) / 10
    logits = torch.stack([ramp, -ramp]).expand(32, 2, 48).permute(1, 0,
                                                                  2)[None]
    truth = (torch.arange(48) >= 24).long().expand(32, 48)
    assert (logits[0].argmax(0) != truth).sum() == 6 * 32
    refined = scoring.pamr(image, logits)  # 10 steps at dilations 8, 16
    assert torch.equal(refined[0].argmax(0), truth)
