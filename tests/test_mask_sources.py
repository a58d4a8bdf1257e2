"""Region-mask sources for CorrCLIP: the official pre-generated mask
archives' layout."""
import numpy as np
import pytest
import torch

from ov_eva.masks import build_mask_source


def write_archive(archive, mask):
    """An official archive's layout: one folder per dataset."""
    for dataset in ('ade', 'voc', 'context'):
        (archive / dataset).mkdir(parents=True)
    np.savez_compressed(archive / 'ade' / 'ADE_val_1.npz', instance_mask=mask)
    np.savez(archive / 'voc' / 'x.npz', instance_mask=mask)


def test_official_archive_layout(tmp_path):
    """CorrCLIPv2's instance_mask.zip (EntitySeg masks) and CorrCLIP's
    region_masks.zip: one folder per dataset of <image stem>.npz; EoMT's
    int16 masks with -1 read as they are; the archive's top folder or a
    doubled one named in the error."""
    archive = tmp_path / 'instance_mask'
    mask = np.array([[-1, 0, 0], [2, 2, -1]], np.int16)
    write_archive(archive, mask)
    meta = dict(img_path='/data/images/ADE_val_1.jpg', ori_shape=(2, 3))
    source = build_mask_source(
        dict(type='files', root=str(archive), folder='ade'))
    got = source.get(meta)
    assert got.dtype == torch.int32 and got.tolist() == mask.tolist()
    top = build_mask_source(dict(type='files', root=str(archive)))
    with pytest.raises(FileNotFoundError, match=r"\['ade', 'voc'\].*folder="):
        top.get(meta)
    with pytest.raises(FileNotFoundError, match="no folder 'ade847'"):
        build_mask_source(
            dict(type='files', root=str(archive), folder='ade847')).get(meta)
    doubled = tmp_path / 'unzipped' / 'instance_mask'
    write_archive(doubled / 'instance_mask', mask)
    with pytest.raises(FileNotFoundError, match='instance_mask/instance_mask'):
        build_mask_source(dict(type='files', root=str(doubled),
                               folder='ade')).get(meta)
