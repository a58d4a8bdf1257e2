"""OVEVASegmentor as an mmseg model: inference modes, batches, errors."""
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import ov_eva  # noqa: F401

SLIDE = dict(mode='slide', crop_size=(224, 224), stride=(112, 112))


def build(cfg, **overrides):
    torch.manual_seed(0)
    return MODELS.build({**cfg, **overrides}).eval()


def metas(n, shape):
    return [s.metainfo for s in samples(n, shape)]


def samples(n, shape):
    out = []
    for _ in range(n):
        sample = SegDataSample()
        sample.set_metainfo(
            dict(
                ori_shape=shape,
                img_shape=shape,
                pad_shape=shape,
                padding_size=[0, 0, 0, 0]))
        out.append(sample)
    return out


@pytest.mark.parametrize('test_cfg', [dict(mode='whole'), SLIDE])
def test_batch_of_two_equals_one_by_one(tiny_segmentor_cfg, test_cfg):
    model = build(tiny_segmentor_cfg, test_cfg=test_cfg)
    images = torch.randn(2, 3, 240, 320)
    with torch.no_grad():
        both = model.predict(images, samples(2, (240, 320)))
        single = [
            model.predict(images[i:i + 1], samples(1, (240, 320)))[0]
            for i in range(2)
        ]
    for joint, alone in zip(both, single):
        torch.testing.assert_close(
            joint.seg_logits.data, alone.seg_logits.data, atol=1e-4, rtol=0)
        assert torch.equal(joint.pred_sem_seg.data, alone.pred_sem_seg.data)


@pytest.mark.parametrize('test_cfg', [dict(mode='whole'), SLIDE])
@pytest.mark.parametrize('size', [(240, 320), (100, 150), (224, 460)])
def test_output_shapes(tiny_segmentor_cfg, test_cfg, size):
    model = build(tiny_segmentor_cfg, test_cfg=test_cfg)
    with torch.no_grad():
        logits = model.inference(
            torch.randn(1, 3, *size), model.class_bank.query_set().embeddings)
        out = model.predict(torch.randn(1, 3, *size), samples(1, (60, 80)))
    assert logits.shape == (1, 4, *size)  # a channel per class synonym
    assert out[0].pred_sem_seg.shape == (60, 80)  # resized to ori_shape
    assert out[0].seg_logits.data.shape == (3, 60, 80)
    assert int(out[0].pred_sem_seg.data.max()) < 3


def test_slide_differs_from_whole(tiny_segmentor_cfg):
    image = torch.randn(1, 3, 224, 448)
    with torch.no_grad():
        whole, slide = (build(tiny_segmentor_cfg, test_cfg=cfg)
                        for cfg in (dict(mode='whole'), SLIDE))
        text = whole.class_bank.query_set().embeddings
        whole = whole.inference(image, text)
        slide = slide.inference(image, text)
    assert not torch.allclose(whole, slide)


def test_every_synonym_is_a_query(tiny_segmentor_cfg):
    """Each synonym keeps its own score map to the end; a class's
    probability is the max over its synonyms of the softmax over all."""
    model = build(tiny_segmentor_cfg)
    image = torch.randn(1, 3, 16, 16)  # one patch: upsampling is constant
    with torch.no_grad():
        logits = model.encode_decode(image, None)
        feats = model.extract_feat(image)[0, :, 0, 0]
        texts = model.class_bank.text_bank.embed(
            ['sky', 'wall', 'brick wall', 'cat'])
        out = model.predict(image, samples(1, (16, 16)))[0]
    want = model.clip.logit_scale * (texts @ feats)
    torch.testing.assert_close(logits[0, :, 0, 0], want)
    probs = want.softmax(0)
    class_probs = torch.stack([probs[0], probs[1:3].max(), probs[3]])
    torch.testing.assert_close(out.seg_logits.data[:, 0, 0].exp(), class_probs)
    assert int(out.pred_sem_seg.data[0, 0, 0]) == int(class_probs.argmax())


def test_prob_thd_hands_low_confidence_to_background(tiny_segmentor_cfg):
    image = torch.randn(1, 3, 64, 64)
    confident = build(tiny_segmentor_cfg, prob_thd=0.0, bg_idx=2)
    unsure = build(tiny_segmentor_cfg, prob_thd=0.999, bg_idx=2)
    with torch.no_grad():
        a = confident.predict(image, samples(1, (64, 64)))[0]
        b = unsure.predict(image, samples(1, (64, 64)))[0]
    assert (a.pred_sem_seg.data != 2).any()
    assert (b.pred_sem_seg.data == 2).all()


def test_outputs_feed_iou_metric(tiny_segmentor_cfg):
    model = build(tiny_segmentor_cfg)
    with torch.no_grad():
        out = model.predict(torch.randn(1, 3, 64, 64), samples(1, (64, 64)))
    gt = out[0].pred_sem_seg.data.clone()
    out[0].gt_sem_seg = PixelData(data=gt)
    metric = IoUMetric()
    metric.dataset_meta = dict(classes=('sky', 'wall', 'cat'))
    metric.process([], [o.to_dict() for o in out])
    result = metric.compute_metrics(metric.results)
    assert result['aAcc'] == 100.0


def test_tensor_mode_and_no_training(tiny_segmentor_cfg):
    model = build(tiny_segmentor_cfg)
    out = model(torch.randn(1, 3, 32, 32), mode='tensor')
    assert out.shape == (1, 4, 32, 32)
    with pytest.raises(NotImplementedError, match='training-free'):
        model.loss(torch.randn(1, 3, 32, 32), samples(1, (32, 32)))


@pytest.mark.parametrize('overrides,error,match', [
    (dict(classes=['cat']), ValueError, "add e.g. 'background'"),
    (dict(classes=[]), ValueError, 'no class names'),
    (dict(classes=['cat', 'dog', 'Cat']), ValueError, 'appears twice'),
    (dict(classes='no_such_dataset'), ValueError, 'cannot read class file'),
    (dict(bg_idx=3), ValueError, 'bg_idx=3'),
    (dict(clip=dict(name='ov-eva-tiny', variant='x')), ValueError,
     'unknown model.clip.variant'),
    (dict(clip=dict(name='ViT-Z')), ValueError, 'unknown open_clip model'),
    (dict(test_cfg=dict(mode='whole', max_output_logits='1e9')), ValueError,
     'test_cfg.max_output_logits'),
    (dict(test_cfg=dict(mode='whole', batch_windows=0)), ValueError,
     'test_cfg.batch_windows=0'),
    (dict(pamr=dict(steps=3)), ValueError, 'keys num_iter and dilations'),
    (dict(pamr=dict(num_iter=-1)), ValueError, 'num_iter must be'),
    (dict(pamr=dict(dilations=(8, 0))), ValueError, 'dilations whole'),
    (dict(pamr=True), ValueError, 'give None or a dict'),
    (dict(area_thd=1.5), ValueError, 'model.area_thd=1.5'),
    (dict(classes=dict(path='voc21')), ValueError, 'keys file, verbatim'),
    (dict(clip=dict(name='ov-eva-tiny', patch_fit='crop')), ValueError,
     'unknown model.clip.patch_fit'),
])
def test_build_errors(tiny_segmentor_cfg, overrides, error, match):
    with pytest.raises(error, match=match):
        MODELS.build({**tiny_segmentor_cfg, **overrides})


STATIC = dict(
    type='StaticVocabulary',
    terms={
        'wall': ['brick masonry', 'painted plaster'],
        'sky': ['blue sky', 'clouds'],
        '': ['a cat on a sofa', 'room']
    })


def samples_with_paths(n, shape):
    out = samples(n, shape)
    for i, sample in enumerate(out):
        sample.set_metainfo(dict(img_path=f'image_{i}.jpg'))
    return out


def test_images_without_vocabulary_equal_the_baseline_exactly(
        tiny_segmentor_cfg, tmp_path):
    image = torch.randn(2, 3, 96, 128)
    base = build(tiny_segmentor_cfg, test_cfg=SLIDE)
    empty_cache = build(
        tiny_segmentor_cfg,
        test_cfg=SLIDE,
        vocabulary=dict(
            type='CachedVocabulary', cache_file=str(tmp_path / 'v.sqlite')))
    with torch.no_grad():
        want = base.predict(image, samples_with_paths(2, (96, 128)))
        got = empty_cache.predict(image, samples_with_paths(2, (96, 128)))
    for a, b in zip(want, got):
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)


@pytest.mark.parametrize('test_cfg', [dict(mode='whole'), SLIDE])
def test_vocabulary_changes_scores_and_is_reported(tiny_segmentor_cfg,
                                                   test_cfg):
    image = torch.randn(2, 3, 96, 128)
    base = build(tiny_segmentor_cfg, test_cfg=test_cfg)
    ours = build(
        tiny_segmentor_cfg,
        test_cfg=test_cfg,
        vocabulary=STATIC,
        head=dict(type='OVEVAHead', map_thr=0.0, top_n=2))
    with torch.no_grad():
        plain = base.predict(image, samples_with_paths(2, (96, 128)))
        out = ours.predict(image, samples_with_paths(2, (96, 128)))
        single = ours.predict(image[1:], samples_with_paths(1, (96, 128)))
    assert ours.out_channels == 3  # restored after the batch
    assert out[0].seg_logits.data.shape == (3, 96, 128)
    assert not torch.allclose(out[0].seg_logits.data, plain[0].seg_logits.data)
    torch.testing.assert_close(
        out[1].seg_logits.data, single[0].seg_logits.data, atol=1e-4, rtol=0)
    report = {r['term']: r for r in out[0].ov_eva_vocabulary}
    assert set(report) == {
        'brick masonry', 'painted plaster', 'blue sky', 'clouds',
        'a cat on a sofa', 'room'
    }
    assert report['brick masonry']['suggested_class'] == 'wall'
    assert report['brick masonry']['mapped_class'] == 'wall'
    assert report['room']['suggested_class'] is None
    mapped = [r for r in report.values() if r['mapped_class'] == 'wall']
    assert len(mapped) <= 2  # top_n
    weights = sum(r['weight'] for r in mapped)
    assert weights == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize('test_cfg', [dict(mode='whole'), SLIDE])
def test_batch_of_images_with_their_own_vocabularies(tiny_segmentor_cfg,
                                                     test_cfg):
    """Each image of a batch is refined with its own terms only, exactly as
    when it is predicted alone (the head sees every kept term's channel,
    those of the other images with weight 0)."""
    model = build(
        tiny_segmentor_cfg,
        test_cfg=test_cfg,
        vocabulary=STATIC,
        head=dict(type='OVEVAHead', map_thr=0.0, top_n=2))
    per_image = {
        'image_0.jpg': {
            'brick masonry': 1,
            'blue sky': 0,
            'room': -1
        },
        'image_1.jpg': {
            'clouds': 0,
            'a cat on a sofa': 2
        },
    }
    names = ['sky', 'wall', 'cat']

    def with_terms(batch):  # a caller's own terms travel in the samples
        for sample in batch:
            vocab = per_image[sample.img_path]
            sample.set_metainfo(
                dict(ov_eva_terms=[(t, names[k] if k >= 0 else None)
                                   for t, k in vocab.items()]))
        return batch

    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        batch = model.predict(images,
                              with_terms(samples_with_paths(2, (96, 128))))
        for i in range(2):
            alone = samples_with_paths(1, (96, 128))
            alone[0].set_metainfo(dict(img_path=f'image_{i}.jpg'))
            single = model.predict(images[i:i + 1], with_terms(alone))[0]
            torch.testing.assert_close(
                batch[i].seg_logits.data,
                single.seg_logits.data,
                atol=1e-4,
                rtol=0)
            assert batch[i].ov_eva_vocabulary == single.ov_eva_vocabulary
            assert [r['term'] for r in single.ov_eva_vocabulary
                    ] == list(per_image[f'image_{i}.jpg'])
            assert sum(r['weight'] for r in single.ov_eva_vocabulary) > 0


def test_pamr_refines_at_the_original_size(tiny_segmentor_cfg):
    """As NACLIP: the (fused) query logits and the normalised input are
    resized to the original image, PAMR runs there, then the decision."""
    from mmseg.models.utils import resize

    from ov_eva import scoring
    cfg = dict(
        tiny_segmentor_cfg, test_cfg=SLIDE, vocabulary=STATIC, prob_thd=0.3)
    plain = build(cfg)
    refined = build(cfg, pamr=dict(num_iter=3, dilations=[1, 2]))
    assert refined.decode_head.pamr == dict(num_iter=3, dilations=(1, 2))
    assert build(cfg, pamr=dict()).decode_head.pamr == dict(
        num_iter=10, dilations=(8, 16))
    assert build(cfg, pamr=dict(num_iter=0)).decode_head.pamr is None
    image = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        inputs = samples_with_paths(1, (96, 128))
        plain.attach_image_data(inputs)
        logits = plain.seg_logits(image, inputs,
                                  plain.class_bank.query_set())[0]
        got = refined.predict(image, samples_with_paths(1, (120, 150)))[0]
        unrefined = plain.predict(image, samples_with_paths(1, (120, 150)))[0]
    ori = (120, 150)
    expected = scoring.pamr(
        resize(image, ori, mode='bilinear', align_corners=False),
        resize(logits, ori, mode='bilinear', align_corners=False), 3, (1, 2))
    query_class = plain.class_bank.query_set().query_class
    scores, labels = scoring.decide(expected[0], query_class, 3, 0.3)
    torch.testing.assert_close(got.seg_logits.data, scores)
    assert torch.equal(got.pred_sem_seg.data[0], labels)
    assert not torch.equal(got.pred_sem_seg.data, unrefined.pred_sem_seg.data)
    # photos above test_cfg.max_pamr_pixels: PAMR at the working size
    small = build(
        cfg,
        pamr=dict(num_iter=3, dilations=[1, 2]),
        test_cfg=dict(SLIDE, max_pamr_pixels=120 * 150 - 1))
    with torch.no_grad():
        got = small.predict(image, samples_with_paths(1, (120, 150)))[0]
    expected = resize(
        scoring.pamr(image, logits, 3, (1, 2)),
        ori,
        mode='bilinear',
        align_corners=False)
    scores, labels = scoring.decide(expected[0], query_class, 3, 0.3)
    torch.testing.assert_close(got.seg_logits.data, scores)
    assert torch.equal(got.pred_sem_seg.data[0], labels)


def test_terms_are_encoded_once(tiny_segmentor_cfg):
    model = build(tiny_segmentor_cfg, vocabulary=STATIC)
    with torch.no_grad():
        model.predict(
            torch.randn(1, 3, 64, 64), samples_with_paths(1, (64, 64)))
        first = model.class_bank.term_bank.encoded_count
        model.predict(
            torch.randn(1, 3, 64, 64), samples_with_paths(1, (64, 64)))
    assert first == 6 and model.class_bank.term_bank.encoded_count == 6


def test_head_off_is_the_baseline(tiny_segmentor_cfg):
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = build(tiny_segmentor_cfg).predict(image,
                                              samples_with_paths(1, (64, 64)))
        b = build(
            tiny_segmentor_cfg, vocabulary=STATIC,
            head=None).predict(image, samples_with_paths(1, (64, 64)))
    assert torch.equal(a[0].seg_logits.data, b[0].seg_logits.data)


@pytest.mark.parametrize('fit', ['pad_end', 'pad_centre', 'truncate'])
@pytest.mark.parametrize('size,batch_windows',
                         [((300, 410), 8), ((300, 410), 1), ((150, 500), 3),
                          ((100, 120), 8), ((230, 250), 4)])
def test_batched_slide_equals_mmseg_slide(tiny_segmentor_cfg, size,
                                          batch_windows, fit):
    """Windows that are not whole patches (the image smaller than the
    crop) go through the encoder's patch fit in both."""
    from types import SimpleNamespace

    from mmseg.models.segmentors import EncoderDecoder
    model = build(
        tiny_segmentor_cfg,
        clip=dict(tiny_segmentor_cfg['clip'], patch_fit=fit),
        test_cfg=dict(
            mode='slide',
            crop_size=(232, 232),
            stride=(112, 112),
            batch_windows=batch_windows))
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        queries = model.class_bank.query_set()
        ours = model.inference(images, queries.embeddings)
        # mmseg's loop over our whole-image logits, a channel per query
        reference = SimpleNamespace(
            test_cfg=model.test_cfg,
            out_channels=len(queries.queries),
            encode_decode=model.encode_decode)
        mmseg = EncoderDecoder.slide_inference(reference, images,
                                               metas(2, size))
    torch.testing.assert_close(ours, mmseg, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('flip', [None, 'horizontal', 'vertical'])
def test_huge_outputs_are_post_processed_in_bands(tiny_segmentor_cfg, flip):
    # a limit below Q x H x W takes the path a 6000 x 8000 photo takes
    from mmseg.models.segmentors import BaseSegmentor

    from ov_eva import scoring
    model = build(tiny_segmentor_cfg, prob_thd=0.3, area_thd=0.05)
    banded = build(
        tiny_segmentor_cfg,
        prob_thd=0.3,
        area_thd=0.05,
        test_cfg=dict(mode='whole', max_output_logits=1000))
    torch.manual_seed(1)
    queries = model.class_bank.query_set()
    logits = torch.randn(2, len(queries.queries), 40, 50) * 2
    expected, got = samples(2, (150, 170)), samples(2, (150, 170))
    normal = samples(2, (150, 170))
    for sample in expected + got + normal:  # padded bottom and right
        sample.set_metainfo(
            dict(
                padding_size=[0, 6, 0, 4],
                flip=flip is not None,
                flip_direction=flip))
    # mmseg's own post-processing (unpad, unflip, resize), then the decision
    # is the reference of both paths
    BaseSegmentor.postprocess_result(model, logits.clone(), expected)
    decide(model, logits, normal)
    decide(banded, logits, got)
    for ref, ours, out in zip(expected, normal, got):
        scores, labels = scoring.decide(ref.seg_logits.data,
                                        queries.query_class, 3, 0.3, 0.05)
        assert torch.equal(ours.pred_sem_seg.data[0], labels)
        torch.testing.assert_close(ours.seg_logits.data, scores)
        assert torch.equal(out.pred_sem_seg.data[0], labels)
        # logits stay at the working resolution, unpadded
        assert out.seg_logits.data.shape == (model.num_classes, 36, 44)
        assert ours.seg_logits.data.shape == (model.num_classes, 150, 170)


def decide(model, logits, samples):
    """The segmentor's post-processing of (B, Q, h, w) logits: unpadded,
    unflipped, then the head's decision at the original size."""
    from ov_eva.windows import unpad_unflip
    limits = dict(max_output_logits=model.test_cfg.get(
        'max_output_logits', 2**28))
    for i, sample in enumerate(samples):
        scores, pred = model.decode_head.decide(
            unpad_unflip(logits[i:i + 1], sample.metainfo),
            model.class_bank.query_set(), sample.ori_shape, **limits)
        sample.set_data(
            dict(
                seg_logits=PixelData(data=scores),
                pred_sem_seg=PixelData(data=pred[None])))
