"""Class lists and the text-embedding bank with its caches."""
import pytest
import torch

import ov_eva  # noqa: F401
from ov_eva.backends import DenseCLIPEncoder
from ov_eva.text_bank import (CLASS_NAME_DIR, TEMPLATE_SETS, TextBank,
                              load_classes, read_class_file)


@pytest.fixture(scope='module')
def encoder():
    torch.manual_seed(0)
    return DenseCLIPEncoder('ov-eva-tiny')


def test_class_lines_and_synonyms(tmp_path):
    path = tmp_path / 'classes.txt'
    path.write_text('sky\n  wall ,  brick   wall\n\ncat, cat\n')
    assert read_class_file(path) == [['sky'], ['wall', 'brick wall'], ['cat']]
    assert load_classes(['sky', 'wall, brick wall',
                         ['dog', 'puppy']]) == [['sky'],
                                                ['wall', 'brick wall'],
                                                ['dog', 'puppy']]
    assert load_classes('voc20') == read_class_file(CLASS_NAME_DIR /
                                                    'voc20.txt')
    assert ['日本庭園', 'zen garden'] in load_classes(['日本庭園, zen garden', 'x'])


@pytest.mark.parametrize('content,match', [
    ('', 'no class names'),
    ('\n \n', 'no class names'),
    ('cat\ndog\nCat, kitten\n', "class 'cat' appears twice"),
    ('cat,,kitten\ndog\n', 'empty name'),
])
def test_bad_class_files(tmp_path, content, match):
    path = tmp_path / 'bad.txt'
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        read_class_file(path)
    assert str(path) in str(info.value)


def test_unreadable_class_files(tmp_path):
    with pytest.raises(ValueError, match='cannot read class file.*missing'):
        read_class_file(tmp_path / 'missing.txt')
    binary = tmp_path / 'binary.txt'
    binary.write_bytes(b'\xff\xfe\x00\x81')
    with pytest.raises(ValueError, match='UTF-8'):
        read_class_file(binary)
    with pytest.raises(ValueError, match='no class names'):
        load_classes([])


def test_embedding_is_template_mean(encoder):
    bank = TextBank(
        encoder, ['a photo of a {}.', 'a {} in the scene'], cache_dir=False)
    got = bank.embed(['cat', 'dog', 'cat'])
    manual = encoder.encode_text(['a photo of a cat.', 'a cat in the scene'])
    want = torch.nn.functional.normalize(manual.mean(0), dim=0)
    torch.testing.assert_close(got[0], want)
    torch.testing.assert_close(got[2], got[0])
    assert bank.encoded_count == 2  # 'cat' once, 'dog' once


def test_disk_cache_reused_and_keyed(encoder, tmp_path):
    texts = ['wall', 'brick wall', 'sky']
    first = TextBank(encoder, 'simple7', cache_dir=tmp_path)
    emb = first.embed(texts)
    assert first.encoded_count == 3 and first.cache_file.is_file()

    second = TextBank(encoder, 'simple7', cache_dir=tmp_path)
    torch.testing.assert_close(second.embed(texts), emb)
    assert second.encoded_count == 0  # nothing encoded on the second run

    other_templates = TextBank(encoder, 'single', cache_dir=tmp_path)
    other_templates.embed(texts)
    assert other_templates.encoded_count == 3
    assert other_templates.cache_file != first.cache_file

    torch.manual_seed(5)
    other_weights = DenseCLIPEncoder('ov-eva-tiny')
    bank = TextBank(other_weights, 'simple7', cache_dir=tmp_path)
    assert not torch.allclose(bank.embed(texts), emb)
    assert bank.encoded_count == 3


def test_disk_cache_merges_and_survives_corruption(encoder, tmp_path):
    a = TextBank(encoder, 'single', cache_dir=tmp_path)
    b = TextBank(encoder, 'single', cache_dir=tmp_path)
    a.embed(['cat'])
    b.embed(['dog'])  # another process: keeps 'cat' in the file
    c = TextBank(encoder, 'single', cache_dir=tmp_path)
    c.embed(['cat', 'dog'])
    assert c.encoded_count == 0

    c.cache_file.write_bytes(b'not a torch file')
    d = TextBank(encoder, 'single', cache_dir=tmp_path)
    d.embed(['cat'])
    assert d.encoded_count == 1  # recomputed, then rewritten cleanly
    e = TextBank(encoder, 'single', cache_dir=tmp_path)
    e.embed(['cat'])
    assert e.encoded_count == 0


def test_template_sets():
    assert len(TEMPLATE_SETS['imagenet80']) == 80
    with pytest.raises(ValueError, match='unknown template set'):
        TextBank(None, 'imagenet81')
    with pytest.raises(ValueError, match="holding '{}'"):
        TextBank(None, ['a photo'])
