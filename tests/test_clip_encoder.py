"""The dense CLIP encoder: variant formulas, windows, weights, errors."""
import socket
import time

import pytest
import torch
import torch.nn.functional as F

import ov_eva  # noqa: F401  (registers modules, installs compat)
from ov_eva.backends.clip_variants import VARIANTS, DenseCLIPEncoder
from ov_eva.clip_encoder import (AxisFit, create_clip_model, file_quick_gelu,
                                 fit_axis)


def reference_dense(encoder, image, variant, std=5.0):
    """Patch embeddings computed head by head from the attention formulas,
    with the last block's input taken from open_clip's own forward."""
    visual = encoder.model.visual
    block = visual.transformer.resblocks[-1]
    captured = {}
    handle = block.register_forward_pre_hook(
        lambda mod, args: captured.setdefault('x', args[0]))
    visual(image)
    handle.remove()
    x = captured['x'][0]  # (N, C), batch of one
    attn = block.attn
    heads, (n, c) = attn.num_heads, x.shape
    d = c // heads
    y = block.ln_1(x)
    wq, wk, wv = attn.in_proj_weight.split(c)
    bq, bk, bv = attn.in_proj_bias.split(c)
    q, k, v = y @ wq.T + bq, y @ wk.T + bk, y @ wv.T + bv
    gh, gw = visual.grid_size
    gauss = torch.zeros(n, n)
    for i in range(1, n):
        for j in range(1, n):
            yi, xi = divmod(i - 1, gw)
            yj, xj = divmod(j - 1, gw)
            gauss[i, j] = torch.exp(
                torch.tensor(-((yi - yj)**2 + (xi - xj)**2) / (2 * std**2)))
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = q[:, sl], k[:, sl], v[:, sl]
        if variant == 'vanilla':
            outs.append(vh)
            continue
        if variant == 'sclip':
            a = torch.softmax(qh @ qh.T / d**0.5, -1) + torch.softmax(
                kh @ kh.T / d**0.5, -1)
        elif variant == 'clearclip':
            a = torch.softmax(qh @ qh.T / d**0.5, -1)
        else:
            a = torch.softmax(kh @ kh.T / d**0.5 + gauss, -1)
        outs.append(a @ vh)
    out = attn.out_proj(torch.cat(outs, dim=1))
    if variant == 'sclip':  # residual, then the block's FFN with residual
        out = x + out
        mlp = block.mlp
        hidden = block.ln_2(out) @ mlp.c_fc.weight.T + mlp.c_fc.bias
        hidden = hidden * torch.sigmoid(1.702 * hidden)  # QuickGELU
        out = out + hidden @ mlp.c_proj.weight.T + mlp.c_proj.bias
    tokens = visual.ln_post(out[1:]) @ visual.proj
    tokens = F.normalize(tokens, dim=-1)
    return tokens.T.reshape(-1, gh, gw)


@pytest.mark.parametrize('variant', VARIANTS)
def test_variant_matches_formula(variant):
    torch.manual_seed(0)
    encoder = DenseCLIPEncoder(
        'ov-eva-tiny', variant=variant, autocast='fp32', quick_gelu=True)
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        got = encoder(image)[0]
        want = reference_dense(encoder, image, variant)
    assert got.shape == (32, 14, 14)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_variants_differ():
    torch.manual_seed(0)
    encoder = DenseCLIPEncoder('ov-eva-tiny')
    image = torch.randn(1, 3, 224, 224)
    outs = {}
    for variant in VARIANTS:
        encoder.variant = variant
        outs[variant] = encoder(image)
    for a in VARIANTS:
        for b in VARIANTS:
            if a < b:
                assert not torch.allclose(outs[a], outs[b]), (a, b)


def reference_positional_embedding(pos, height, width, patch=16):
    """``interpolate_pos_encoding`` as SCLIP, NACLIP and ClearCLIP write it:
    called only when the token count differs from the native one, bicubic
    with a scale factor of (grid + 0.1) / native grid."""
    native = int((pos.shape[0] - 1)**0.5)
    rows, cols = height // patch, width // patch
    if rows * cols == native * native:
        return pos
    patch_pos = pos[1:].reshape(1, native, native, -1).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(
        patch_pos,
        scale_factor=((rows + 0.1) / native, (cols + 0.1) / native),
        mode='bicubic',
        align_corners=False,
        recompute_scale_factor=False)
    assert patch_pos.shape[-2:] == (rows, cols)
    return torch.cat([pos[:1], patch_pos.flatten(2)[0].T])


@pytest.mark.parametrize('size', [(224, 224), (448, 448), (336, 448),
                                  (336, 500), (112, 448), (560, 1008)])
def test_positional_embedding_as_the_references(size):
    torch.manual_seed(0)
    encoder = DenseCLIPEncoder('ov-eva-tiny', patch_fit='truncate')
    native = encoder.model.visual.positional_embedding
    grid = (size[0] // 16, size[1] // 16)
    got = encoder.positional_embedding(grid)
    torch.testing.assert_close(
        got, reference_positional_embedding(native.detach(), *size))
    if grid[0] * grid[1] == 196:  # the references' token-count test
        assert got is native


def test_positional_embedding_by_size():
    encoder = DenseCLIPEncoder('ov-eva-tiny', pos_resize='size')
    native = encoder.model.visual.positional_embedding
    assert encoder.positional_embedding((14, 14)) is native
    big = encoder.positional_embedding((28, 21))
    assert big.shape == (1 + 28 * 21, native.shape[1])
    torch.testing.assert_close(big[0], native[0])
    expected = F.interpolate(
        native[1:].detach().reshape(1, 14, 14, -1).permute(0, 3, 1, 2),
        size=(28, 21),
        mode='bicubic',
        align_corners=False)
    torch.testing.assert_close(big[1:], expected.flatten(2)[0].T)
    scaled = DenseCLIPEncoder('ov-eva-tiny').positional_embedding((28, 21))
    assert not torch.allclose(scaled, big)  # the two rules differ


def test_fit_axis():
    assert fit_axis(224, 16, 'truncate') == AxisFit(0, 0, 224, 0)
    assert fit_axis(500, 16, 'truncate') == AxisFit(0, 0, 500, 0)
    assert fit_axis(500, 16, 'pad_end') == AxisFit(0, 12, 512, 0)
    assert fit_axis(500, 16, 'pad_centre') == AxisFit(6, 6, 512, 6)
    assert fit_axis(501, 16, 'pad_centre') == AxisFit(5, 6, 512, 5)
    assert fit_axis(8, 16, 'truncate') == AxisFit(0, 8, 8, 0)


@pytest.mark.parametrize('fit,size,grid', [
    ('pad_end', (448, 448), (28, 28)),
    ('pad_end', (230, 250), (15, 16)),
    ('pad_end', (8, 8), (1, 1)),
    ('pad_centre', (230, 250), (15, 16)),
    ('truncate', (336, 224), (21, 14)),
    ('truncate', (230, 250), (14, 15)),
    ('truncate', (8, 8), (1, 1)),
])
def test_window_sizes(fit, size, grid):
    encoder = DenseCLIPEncoder('ov-eva-tiny', patch_fit=fit)
    feats = encoder(torch.randn(2, 3, *size))
    assert feats.shape == (2, 32, *grid)
    torch.testing.assert_close(
        feats.norm(dim=1), torch.ones(2, *grid), atol=1e-5, rtol=0)


def test_patch_fits_read_the_right_pixels():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 230, 250)
    centre = DenseCLIPEncoder('ov-eva-tiny', patch_fit='pad_centre')
    padded = F.pad(image, (3, 3, 5, 5))  # 240 x 256: whole patches
    torch.testing.assert_close(centre(image), centre(padded))
    truncate = DenseCLIPEncoder('ov-eva-tiny', patch_fit='truncate')
    truncate.load_state_dict(centre.state_dict())
    torch.testing.assert_close(truncate(image), centre(image[..., :224, :240]))


def test_text_embeddings_normalised():
    encoder = DenseCLIPEncoder('ov-eva-tiny')
    emb = encoder.encode_text(['a cat', 'a dog', 'a brick wall'])
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert not torch.allclose(emb[0], emb[1])


def test_local_weights_file(tmp_path):
    torch.manual_seed(1)
    source = create_clip_model('ov-eva-tiny')
    path = tmp_path / 'tiny.pt'
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    encoder = DenseCLIPEncoder('ov-eva-tiny', pretrained=str(path))
    assert not encoder.weights_loaded  # the architecture only, so far
    encoder.init_weights()  # mmengine's convention
    for key, value in source.state_dict().items():
        torch.testing.assert_close(encoder.model.state_dict()[key], value)
    # or on first use, e.g. through mmseg's init_model
    lazy = DenseCLIPEncoder('ov-eva-tiny', pretrained=str(path))
    assert encoder.text_fingerprint() == lazy.text_fingerprint()
    assert lazy.weights_loaded
    # the eager entry (open_clip's create_model) loads the same weights
    eager = create_clip_model('ov-eva-tiny', str(path))
    for key, value in eager.state_dict().items():
        assert torch.equal(encoder.model.state_dict()[key], value), key


def test_a_cached_tag_loads_without_a_request(tmp_path, monkeypatch):
    """A tag's download already in the hub cache loads through open_clip's
    own resolver without contacting the hub (not even to see if it is
    there), with the tag's QuickGELU setting."""
    import open_clip
    tag = dict(hf_hub='ov-eva/tiny-cached/', quick_gelu=True)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, 'ov-eva-tiny',
                        dict(cached=tag))
    torch.manual_seed(4)
    source = create_clip_model('ov-eva-tiny', quick_gelu=True)
    repo = tmp_path / 'models--ov-eva--tiny-cached'
    snapshot = repo / 'snapshots' / ('0' * 40)
    snapshot.mkdir(parents=True)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text('0' * 40)
    torch.save(source.state_dict(), snapshot / 'open_clip_pytorch_model.bin')
    monkeypatch.setenv('HF_HUB_OFFLINE', '0')
    requests = []

    def no_network(*args, **kwargs):  # name look-ups and connections
        requests.append(args)
        raise OSError('no network in this test')

    monkeypatch.setattr(socket, 'getaddrinfo', no_network)
    monkeypatch.setattr(socket.socket, 'connect', no_network)
    encoder = DenseCLIPEncoder(
        'ov-eva-tiny', pretrained='cached', cache_dir=str(tmp_path))
    gelu = encoder.model.visual.transformer.resblocks[0].mlp.gelu
    assert type(gelu).__name__ == 'QuickGELU'
    encoder.init_weights()
    eager = create_clip_model('ov-eva-tiny', 'cached', str(tmp_path))
    for key, value in source.state_dict().items():
        assert torch.equal(encoder.model.state_dict()[key], value), key
        assert torch.equal(eager.state_dict()[key], value), key
    assert requests == []
    # not cached: the hub is asked (unreachable here), then the message
    with pytest.raises(FileNotFoundError, match='not in the local cache'):
        create_clip_model('ov-eva-tiny', 'cached', str(tmp_path / 'none'))
    assert requests


def test_a_checkpoint_brings_the_weights(tmp_path, monkeypatch):
    """Weights from a checkpoint: the pretrained tag is never fetched, not
    even offline with nothing cached."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'empty_hub'))
    encoder = DenseCLIPEncoder(
        'ViT-B-16', pretrained='openai', cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='not in the local cache'):
        encoder.init_weights()
    torch.manual_seed(3)
    source = DenseCLIPEncoder('ViT-B-16', quick_gelu=True)
    encoder.load_state_dict(source.state_dict())
    encoder.init_weights()  # nothing left to load
    with torch.no_grad():
        torch.testing.assert_close(
            encoder.encode_text(['a cat']), source.encode_text(['a cat']))


def test_quick_gelu_follows_the_weights_file(tmp_path):
    plain = tmp_path / 'weights.pt'
    torch.save({'logit_scale': torch.zeros(())}, plain)
    quick, why = file_quick_gelu('ViT-B-16', str(plain))
    assert quick and 'OpenAI' in why and 'quick_gelu=False' in why
    assert file_quick_gelu('ViT-H-14', str(plain))[0] is False
    assert file_quick_gelu('ov-eva-tiny', str(plain))[0] is False
    # a file from the hub's cache, or named like a tag's download
    laion = tmp_path / 'models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K'
    laion.mkdir()
    (laion / 'open_clip_model.safetensors').write_bytes(b'')
    assert file_quick_gelu(
        'ViT-B-16',
        str(laion / 'open_clip_model.safetensors')) == (False,
                                                        "the download of tag "
                                                        "'laion2b_s34b_b88k'")
    openai = tmp_path / 'ViT-B-16.pt'
    openai.write_bytes(b'')
    assert file_quick_gelu('ViT-B-16',
                           str(openai)) == (True,
                                            "the download of tag 'openai'")
    # OpenAI's own downloads are TorchScript archives
    archive = tmp_path / 'archive.pt'
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), archive)
    assert file_quick_gelu('ov-eva-tiny',
                           str(archive)) == (True,
                                             'an OpenAI TorchScript archive')


def test_openai_weights_are_rounded_as_openais_loader_rounds_them(tmp_path):
    """OpenAI's clip.load (and open_clip's load_openai_model) turn conv,
    linear and attention weights and the projections to float16 before
    loading a checkpoint; LayerNorm, embeddings and the logit scale stay
    float32. A float32 file taken as OpenAI's is rounded the same way."""
    torch.manual_seed(0)
    source = create_clip_model('ov-eva-tiny', quick_gelu=True)
    path = tmp_path / 'float32.pt'
    torch.save(source.state_dict(), path)
    rounded = DenseCLIPEncoder(
        'ov-eva-tiny', pretrained=str(path), fp16_weights=True)
    kept = DenseCLIPEncoder('ov-eva-tiny', pretrained=str(path))
    assert not kept.fp16_weights  # the tiny model has no 'openai' tag
    rounded.init_weights(), kept.init_weights()
    to_fp16 = ('conv1.weight', 'attn.in_proj_weight', 'attn.in_proj_bias',
               'attn.out_proj.weight', 'attn.out_proj.bias', 'c_fc.weight',
               'c_fc.bias', 'c_proj.weight', 'c_proj.bias', 'visual.proj',
               'text_projection')
    for key, value in source.state_dict().items():
        got = rounded.model.state_dict()[key]
        assert got.dtype == torch.float32
        torch.testing.assert_close(kept.model.state_dict()[key], value)
        if key.endswith(to_fp16):
            assert torch.equal(got, value.half().float()), key
        else:  # LayerNorm, embeddings, logit scale
            assert torch.equal(got, value), key
    assert not torch.equal(rounded.model.visual.proj, source.visual.proj)
    eager = create_clip_model('ov-eva-tiny', str(path), fp16_weights=True)
    for key, value in eager.state_dict().items():
        assert torch.equal(rounded.model.state_dict()[key], value), key
    # an OpenAI architecture's state dict is taken as OpenAI's, a LAION
    # download is not
    from ov_eva.clip_encoder import weights_tag
    assert weights_tag('ViT-B-16', str(path)) == 'openai'
    assert weights_tag('ViT-B-16', 'laion2b_s34b_b88k') == 'laion2b_s34b_b88k'
    assert weights_tag('ViT-H-14', str(path)) is None


def test_openai_layout_file_runs_quick_gelu(tmp_path):
    """An OpenAI ViT-B/16 state dict given as model.clip.pretrained=FILE
    builds QuickGELU, and computes what a QuickGELU model computes."""
    torch.manual_seed(0)
    source = create_clip_model('ViT-B-16', quick_gelu=True)
    path = tmp_path / 'ViT-B-16-random.pt'
    torch.save({k: v.half() for k, v in source.state_dict().items()}, path)
    encoder = DenseCLIPEncoder(
        'ViT-B-16', pretrained=str(path), autocast='fp32')
    assert encoder.fp16_weights  # rounded as OpenAI's loader rounds
    activation = encoder.model.visual.transformer.resblocks[0].mlp.gelu
    assert type(activation).__name__ == 'QuickGELU'
    text_act = encoder.model.transformer.resblocks[0].mlp.gelu
    assert type(text_act).__name__ == 'QuickGELU'
    gelu = DenseCLIPEncoder(
        'ViT-B-16', pretrained=str(path), quick_gelu=False, autocast='fp32')
    assert isinstance(gelu.model.visual.transformer.resblocks[0].mlp.gelu,
                      torch.nn.GELU)
    tokens = encoder.tokenizer(['a photo of a cat.'])
    with torch.no_grad():
        quick_text = encoder.model.encode_text(tokens)
        gelu_text = gelu.model.encode_text(tokens)
    assert not torch.allclose(quick_text, gelu_text)


def test_fingerprint_follows_weights():
    torch.manual_seed(1)
    a = DenseCLIPEncoder('ov-eva-tiny')
    torch.manual_seed(2)
    b = DenseCLIPEncoder('ov-eva-tiny')
    assert a.text_fingerprint() != b.text_fingerprint()
    b.model.load_state_dict(a.model.state_dict())
    assert a.text_fingerprint() == b.text_fingerprint()


@pytest.mark.parametrize('env', [{
    'HF_HUB_OFFLINE': '1'
}, {
    'HF_HUB_OFFLINE': '0',
    'HF_ENDPOINT': 'https://127.0.0.1:9'
}])
def test_missing_weights_fail_fast(tmp_path, monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as info:
        create_clip_model('ViT-B-16', 'openai', cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "'ViT-B-16'" in message and "'openai'" in message
    assert 'local weights file' in message


def test_bad_names_fail_clearly():
    with pytest.raises(ValueError, match='unknown open_clip model'):
        DenseCLIPEncoder('ViT-Q-99')
    with pytest.raises(ValueError, match='unknown model.clip.variant'):
        DenseCLIPEncoder('ov-eva-tiny', variant='maskclip++')
    with pytest.raises(FileNotFoundError, match='neither a file nor a known'):
        DenseCLIPEncoder('ViT-B-16', pretrained='no-such-tag')
    with pytest.raises(ValueError, match='plain CLIP ViT'):
        DenseCLIPEncoder('RN50')


def test_short_text_encoding_equals_padded():
    torch.manual_seed(0)
    encoder = DenseCLIPEncoder('ov-eva-tiny')
    texts = [
        'a photo of a cat.', 'wall', 'a very long description of a '
        'red brick wall with white mortar between the bricks'
    ]
    tokens = encoder.tokenizer(texts)
    with torch.no_grad():
        padded = encoder.model.encode_text(tokens, normalize=True)
    torch.testing.assert_close(
        encoder.encode_text(texts), padded, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('mode', ['bf16', 'fp16', 'auto'])
def test_autocast_stays_close_to_float32(mode):
    """Every precision switch gives features within a stated tolerance of
    float32: per-patch cosine similarity >= 0.99 (ViT-B-sized weights are
    checked by tools/benchmark.py; this uses the tiny model)."""
    torch.manual_seed(0)
    encoder = DenseCLIPEncoder('ov-eva-tiny', autocast='fp32')
    image = torch.randn(2, 3, 224, 336)
    with torch.no_grad():
        exact = encoder(image)
        encoder.autocast = mode
        lower = encoder(image)
    assert lower.dtype == torch.float32 and lower.shape == exact.shape
    assert (exact * lower).sum(1).min() >= 0.99


def test_low_precision_tower_follows_the_float32_weights():
    """The bf16 copy of the image tower is made once and reused; loading or
    editing the float32 weights makes it again; checkpoints see only the
    float32 weights."""
    torch.manual_seed(0)
    encoder = DenseCLIPEncoder('ov-eva-tiny', autocast='bf16')
    keys = {k: v.dtype for k, v in encoder.state_dict().items()}
    torch.manual_seed(1)
    other = DenseCLIPEncoder('ov-eva-tiny', autocast='fp32')
    image = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        before = encoder(image)
        tower = encoder.image_tower(torch.bfloat16)
        assert encoder.image_tower(torch.bfloat16) is tower
        assert encoder.image_tower(None) is encoder.model.visual
        assert {p.dtype for p in tower.parameters()} == {torch.bfloat16}
        assert {k: v.dtype for k, v in encoder.state_dict().items()} == keys

        encoder.load_state_dict(other.state_dict())  # a checkpoint loaded
        assert encoder.image_tower(torch.bfloat16) is not tower
        loaded, expected = encoder(image), other(image)
        assert (loaded * expected).sum(1).min() >= 0.99
        assert (before * expected).sum(1).min() < 0.9  # really other weights

        encoder.model.visual.proj.mul_(-1)  # edited in place
        assert (encoder(image) * expected).sum(1).max() <= -0.99


def test_low_precision_tower_under_inference_mode():
    # tensors made under inference_mode keep no version counter
    image = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        torch.manual_seed(0)
        made_inside = DenseCLIPEncoder('ov-eva-tiny', autocast='bf16')
        features = made_inside(image)
    torch.manual_seed(0)
    exact = DenseCLIPEncoder('ov-eva-tiny', autocast='fp32')
    with torch.no_grad():
        assert (features * exact(image)).sum(1).min() >= 0.99


def test_autocast_choice():
    from ov_eva.clip_encoder import autocast_dtype, cpu_has_bf16
    cpu = torch.device('cpu')
    assert autocast_dtype('fp32', cpu) is None
    assert autocast_dtype('bf16', cpu) is torch.bfloat16
    assert autocast_dtype('fp16', cpu) is torch.float16
    assert autocast_dtype('auto',
                          cpu) is (torch.bfloat16 if cpu_has_bf16() else None)
    with pytest.raises(ValueError, match='unknown model.clip.autocast'):
        DenseCLIPEncoder('ov-eva-tiny', autocast='fp8')
