"""LexiconVocabulary: the shipped lexicon, CLIP ranking over windows, the
vocabulary and text-embedding caches, and its errors."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import samples_folder

import ov_eva  # noqa: F401  (compat, registries)
from ov_eva.backends import DenseCLIPEncoder
from ov_eva.registry import VOCABULARIES
from ov_eva.vocabulary.lexicon import (SHIPPED_LEXICON, LexiconVocabulary,
                                       read_lexicon, window_boxes)

ADE_IMAGE = (
    samples_folder() / 'ADEChallengeData2016' / 'images' / 'validation' /
    'ADE_val_00000001.jpg')
CLASSES = [['sky'], ['wall', 'brick wall'], ['cat']]
SMALL = ['apple', 'boat', 'cat', 'dog', 'zebra', 'traffic light']


def tiny_encoder(seed: int) -> DenseCLIPEncoder:
    torch.manual_seed(seed)
    return DenseCLIPEncoder('ov-eva-tiny')


@pytest.fixture(scope='module')
def encoder():
    return tiny_encoder(0)


@pytest.fixture(scope='module')
def text_cache(tmp_path_factory):
    """One text cache for the module: the shipped lexicon is embedded with
    the tiny model once."""
    return tmp_path_factory.mktemp('lexicon_text_cache')


@pytest.fixture
def small_lexicon(tmp_path):
    path = tmp_path / 'small.txt'
    path.write_text('# a test lexicon\n' + '\n'.join(SMALL) + '\n\nDog\n')
    return path


def sample_image():
    """A real ADE20K image where the shared data is present, else a
    synthetic one with distinct quadrants."""
    if ADE_IMAGE.is_file():
        return str(ADE_IMAGE)
    rng = np.random.RandomState(0)
    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[:48, :64] = (200, 30, 30)
    rgb[:48, 64:] = rng.randint(0, 255, (48, 64, 3))
    rgb[48:, :64] = (20, 180, 240)
    rgb[48:, 64:] = np.linspace(0, 255, 64)[None, :, None].astype(np.uint8)
    return rgb


def synthetic_rgb() -> np.ndarray:
    rgb = np.zeros((80, 120, 3), np.uint8)
    rgb[:40, :60] = (250, 250, 0)
    rgb[40:, 60:] = np.random.RandomState(1).randint(0, 255, (40, 60, 3))
    return rgb


def test_shipped_lexicon_is_clean():
    lines = SHIPPED_LEXICON.read_text(encoding='utf-8').splitlines()
    assert len(lines) >= 2000
    assert len(set(lines)) == len(lines), 'duplicate names'
    assert lines == sorted(lines)
    for name in lines:
        assert name == name.strip().lower() and '  ' not in name, name
        assert re.fullmatch(r"[a-z0-9][a-z0-9 .'&-]*", name), name
        assert not name.startswith('other '), name
    assert read_lexicon(SHIPPED_LEXICON) == lines
    for name in ('person', 'wall', 'sky', 'car', 'golden retriever',
                 'brick wall', 'traffic light', 'american football'):
        assert name in lines
    for junk in ('background', 'unlabeled', 'sky-other', 'wall_brick'):
        assert junk not in lines
    assert (SHIPPED_LEXICON.parent / 'SOURCES.md').is_file()


def test_fetch_new_deterministic_and_cached(encoder, text_cache, tmp_path):
    image = sample_image()
    cache_file = tmp_path / 'vocab.sqlite'
    source = LexiconVocabulary(
        top_k=16, cache_file=cache_file, text_cache_dir=text_cache)
    source.bind(encoder)
    first = source.fetch(image, CLASSES)
    assert first.status == 'new', first.error
    assert len(first.terms) == 16
    texts = [t.text for t in first.terms]
    assert len(set(texts)) == 16 and set(texts) <= set(source.names)
    assert all(t.suggested_class is None for t in first.terms)
    assert first.entry.raw_answers == [] and first.usage == {}
    assert first.entry.source == 'lexicon'
    assert first.entry.model == source.model_id
    assert first.entry.params['top_k'] == 16

    fresh = LexiconVocabulary(
        top_k=16, cache_file=False, text_cache_dir=text_cache)
    fresh.bind(encoder)
    again = fresh.fetch(image, CLASSES)
    assert again.status == 'new'
    assert [t.text for t in again.terms] == texts
    assert fresh.text_bank.encoded_count == 0  # lexicon from the disk cache

    reopened = LexiconVocabulary(
        top_k=16, cache_file=cache_file, text_cache_dir=text_cache)
    reopened.bind(encoder)
    hit = reopened.fetch(image, CLASSES)
    assert hit.status == 'hit'
    assert [t.text for t in hit.terms] == texts
    # other parameters are another cache entry
    other = LexiconVocabulary(
        top_k=4, cache_file=cache_file, text_cache_dir=text_cache)
    other.bind(encoder)
    result = other.fetch(image, CLASSES)
    assert result.status == 'new'
    assert [t.text for t in result.terms] == texts[:4]


def test_ranking_max_over_views(encoder, small_lexicon, monkeypatch):
    rgb = synthetic_rgb()
    source = LexiconVocabulary(
        small_lexicon, top_k=3, cache_file=False, text_cache_dir=False)
    source.bind(encoder)
    assert source.names == SMALL  # comment, blank line, 'Dog' cleaned
    views = source.image_embeddings(rgb)
    assert views.shape == (5, encoder.embed_dim)
    assert torch.allclose(views.norm(dim=-1), torch.ones(5), atol=1e-5)
    # the whole image and its windows embed differently
    assert (views[0] @ views[4]).item() < 0.9999

    others = F.normalize(torch.randn(len(SMALL), views.shape[1]), dim=-1)
    others[SMALL.index('zebra')] = views[0]  # the whole image
    others[SMALL.index('boat')] = views[4]  # the bottom-right window
    monkeypatch.setattr(source.text_bank, 'embed',
                        lambda texts: others[[SMALL.index(t) for t in texts]])
    scores = source.scores(rgb)
    assert scores[SMALL.index('zebra')] == pytest.approx(1, abs=1e-5)
    assert scores[SMALL.index('boat')] == pytest.approx(1, abs=1e-5)
    terms, raw = source.generate(rgb, CLASSES, {})
    assert {t.text for t in terms[:2]} == {'zebra', 'boat'} and raw == []

    # whole image only: the window's name loses its perfect score
    whole = LexiconVocabulary(
        small_lexicon, window_grid=0, cache_file=False, text_cache_dir=False)
    whole.bind(encoder)
    monkeypatch.setattr(whole.text_bank, 'embed',
                        lambda texts: others[[SMALL.index(t) for t in texts]])
    assert whole.image_embeddings(rgb).shape[0] == 1
    whole_scores = whole.scores(rgb)
    assert whole_scores[SMALL.index('zebra')] == pytest.approx(1, abs=1e-5)
    assert whole_scores[SMALL.index('boat')] < 0.9999
    assert whole.generate(rgb, CLASSES, {})[0][0].text == 'zebra'


def test_ties_break_by_name(encoder, small_lexicon, monkeypatch):
    source = LexiconVocabulary(
        small_lexicon, top_k=4, cache_file=False, text_cache_dir=False)
    source.bind(encoder)
    # apple, boat, cat, dog, zebra, traffic light
    fixed = torch.tensor([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    monkeypatch.setattr(source, 'scores', lambda rgb: fixed)
    terms, _ = source.generate(synthetic_rgb(), CLASSES, {})
    assert [t.text for t in terms] == ['boat', 'dog', 'apple', 'cat']


def test_lexicon_encoded_once(encoder, small_lexicon, tmp_path):
    rgb = synthetic_rgb()
    first = LexiconVocabulary(
        small_lexicon, top_k=2, cache_file=False, text_cache_dir=tmp_path)
    first.bind(encoder)
    assert first.text_bank.encoded_count == 0  # nothing before first use
    first.generate(rgb, CLASSES, {})
    first.generate(rgb, CLASSES, {})
    assert first.text_bank.encoded_count == len(SMALL)
    second = LexiconVocabulary(
        small_lexicon, top_k=2, cache_file=False, text_cache_dir=tmp_path)
    second.bind(encoder)
    assert second.generate(rgb, CLASSES,
                           {}) == first.generate(rgb, CLASSES, {})
    assert second.text_bank.encoded_count == 0


def test_other_clip_other_key(encoder, small_lexicon):
    source = LexiconVocabulary(
        small_lexicon, cache_file=False, text_cache_dir=False)
    source.bind(encoder)
    other = LexiconVocabulary(
        small_lexicon, cache_file=False, text_cache_dir=False)
    other.bind(tiny_encoder(1))
    assert source.model_id.startswith('ov-eva-tiny:')
    assert source.model_id != other.model_id
    assert source.key('img', 'cls') != other.key('img', 'cls')
    assert source.text_bank.key != other.text_bank.key
    # parameters and lexicon content are part of the key too
    fewer = LexiconVocabulary(
        small_lexicon, top_k=3, cache_file=False, text_cache_dir=False)
    fewer.bind(encoder)
    assert fewer.key('img', 'cls') != source.key('img', 'cls')
    shipped = LexiconVocabulary(cache_file=False, text_cache_dir=False)
    shipped.bind(encoder)
    assert shipped.params()['lexicon'] != source.params()['lexicon']
    assert set(
        source.params()) == {'top_k', 'window_grid', 'templates', 'lexicon'}


def test_registry_build(small_lexicon):
    source = VOCABULARIES.build(
        dict(
            type='LexiconVocabulary',
            lexicon=str(small_lexicon),
            top_k=5,
            cache_file=False,
            strict=True))
    assert isinstance(source, LexiconVocabulary)
    assert source.top_k == 5 and source.strict and source.cache is None
    assert source.max_concurrency == 1 and source.source_name == 'lexicon'


@pytest.mark.parametrize('content', ['', '\n  \n', '# only a comment\n'])
def test_empty_lexicon(tmp_path, content):
    path = tmp_path / 'empty.txt'
    path.write_text(content)
    with pytest.raises(ValueError, match='holds no concept name') as info:
        LexiconVocabulary(path, cache_file=False)
    assert str(path) in str(info.value)


def test_unreadable_lexicon(tmp_path):
    missing = tmp_path / 'missing.txt'
    with pytest.raises(ValueError, match='cannot read lexicon file') as info:
        LexiconVocabulary(missing, cache_file=False)
    assert str(missing) in str(info.value)
    binary = tmp_path / 'binary.txt'
    binary.write_bytes(b'\xff\xfe\x00\x81')
    with pytest.raises(ValueError, match='UTF-8'):
        LexiconVocabulary(binary, cache_file=False)
    bad = tmp_path / 'bad.txt'
    bad.write_text('cat\n' + 'word ' * 12 + '\n')
    with pytest.raises(ValueError, match='line 2.*not a concept name'):
        LexiconVocabulary(bad, cache_file=False)


def test_bad_arguments(small_lexicon):
    with pytest.raises(ValueError, match='top_k'):
        LexiconVocabulary(small_lexicon, top_k=0)
    with pytest.raises(ValueError, match='window_grid'):
        LexiconVocabulary(small_lexicon, window_grid=-1)
    with pytest.raises(ValueError, match='unknown template set'):
        LexiconVocabulary(small_lexicon, templates='nope')


def test_use_before_bind(small_lexicon):
    source = LexiconVocabulary(small_lexicon, cache_file=False)
    message = 'LexiconVocabulary needs a CLIP encoder.*bind'
    with pytest.raises(RuntimeError, match=message):
        source.model_id
    with pytest.raises(RuntimeError, match=message):
        source.generate(synthetic_rgb(), CLASSES, {})
    with pytest.raises(RuntimeError, match=message):
        source.fetch(synthetic_rgb(), CLASSES)
    assert source.params()['top_k'] == 32  # params need no encoder


def test_window_boxes():
    assert window_boxes(10, 20, 0) == [(0, 10, 0, 20)]
    boxes = window_boxes(7, 9, 2)
    assert boxes[0] == (0, 7, 0, 9) and len(boxes) == 5
    covered = np.zeros((7, 9), int)
    for top, bottom, left, right in boxes[1:]:
        covered[top:bottom, left:right] += 1
    assert (covered == 1).all()  # the windows tile the image exactly
    for top, bottom, left, right in window_boxes(1, 3, 2):
        assert bottom > top and right > left  # no empty windows
