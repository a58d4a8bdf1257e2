"""HFVocabulary on a tiny, randomly initialised LLaVA that is built here and
saved to a folder: the real ``from_pretrained``, chat template, image
processor and ``generate`` path, with no download."""
import shutil
import socket
import time

import numpy as np
import pytest
import torch
from conftest import shared_data

import ov_eva  # noqa: F401  (makes torchvision importable first)
from ov_eva.registry import VOCABULARIES
from ov_eva.vocabulary.base import FatalVocabularyError, VocabularyFailure
from ov_eva.vocabulary.cache import Term
from ov_eva.vocabulary.hf_source import HFVocabulary, hub_offline
from ov_eva.vocabulary.prompts import SYSTEM

transformers = pytest.importorskip('transformers')

CLASSES = [['wall', 'brick wall'], ['floor'], ['sky']]
IMAGE_SIDE, PATCH = 16, 8
IMAGE_TOKENS = (IMAGE_SIDE // PATCH)**2
NEW_TOKENS = 16
# A LLaVA-style template; the explicit '\n' survive the trim_blocks of
# transformers' Jinja environment.
TEMPLATE = ("{% for m in messages %}{{ m['role'] | upper }}: "
            "{% if m['content'] is string %}{{ m['content'] }}"
            "{% else %}{% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<image>{{ '\\n' }}"
            "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
            "{{ '\\n' }}{% endfor %}"
            '{% if add_generation_prompt %}ASSISTANT:{% endif %}')
NO_SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}" + TEMPLATE)


@pytest.fixture(scope='module')
def tiny_llava(tmp_path_factory):
    """A folder holding a tiny random LLaVA and its processor: a byte-level
    tokenizer (every text encodes and decodes exactly), a 16-pixel CLIP
    image processor and the template above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig,
                              LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor,
                              PreTrainedTokenizerFast)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(
        models.BPE(vocab={
            c: i
            for i, c in enumerate(alphabet)
        }, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token='<s>',
        eos_token='</s>',
        pad_token='<pad>',
        extra_special_tokens=dict(image_token='<image>'))
    image_processor = CLIPImageProcessor(
        size=dict(shortest_edge=IMAGE_SIDE),
        crop_size=dict(height=IMAGE_SIDE, width=IMAGE_SIDE))
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy='default',
        num_additional_image_tokens=1,  # the CLS token, dropped again
        chat_template=TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=IMAGE_SIDE,
            patch_size=PATCH),
        text_config=LlamaConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=len(tokenizer),
            max_position_embeddings=4096,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids('<image>'),
        vision_feature_select_strategy='default',
        vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    folder = tmp_path_factory.mktemp('hf') / 'tiny-llava'
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope='module')
def no_system_llava(tiny_llava):
    """The same model with a template that refuses system messages."""
    folder = tiny_llava.parent / 'tiny-llava-no-system'
    shutil.copytree(tiny_llava, folder)
    (folder / 'chat_template.jinja').write_text(NO_SYSTEM_TEMPLATE)
    return folder


@pytest.fixture
def ade_image():
    path = (
        shared_data('ADEChallengeData2016') / 'images' / 'validation' /
        'ADE_val_00000001.jpg')
    if not path.is_file():
        pytest.skip(f'{path} is absent: a real ADE20K validation image is '
                    'needed')
    return path


def never(*args, **kwargs):
    raise AssertionError('must not be called')


def make(folder, tmp_path, **kwargs):
    return HFVocabulary(
        model=str(folder),
        cache_file=tmp_path / 'v.sqlite',
        max_new_tokens=NEW_TOKENS,
        **kwargs)


def rgb(seed=0):
    return np.random.default_rng(seed).integers(
        0, 256, (48, 64, 3), dtype=np.uint8)


def answer_with(source, answers, calls):
    """A ``generate`` that answers ``answers`` in turn through the real
    tokenizer: the prompt's ids, then the answer's and EOS."""
    tokenizer = source.load().processor.tokenizer

    def generate(input_ids=None, **kwargs):
        calls.append(dict(kwargs, input_ids=input_ids))
        ids = tokenizer.encode(
            answers[len(calls) - 1], add_special_tokens=False)
        new = torch.tensor([ids + [tokenizer.eos_token_id]])
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)

    return generate


def test_defaults_resolve_and_nothing_loads(monkeypatch):
    monkeypatch.setattr(transformers.AutoProcessor, 'from_pretrained', never)
    source = VOCABULARIES.build(
        dict(
            type='HFVocabulary',
            model='llava-hf/llava-1.5-7b-hf',
            cache_file=False))
    assert isinstance(source, HFVocabulary)
    assert source.source_name == 'hf' and source.max_concurrency == 1
    assert source.model_id == 'llava-hf/llava-1.5-7b-hf'
    assert not source.is_local
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert source.device == expected
    if expected == 'cpu':
        assert source.dtype == torch.float32
    assert source.params() == dict(
        k=5,
        rounds=2,
        max_terms=64,
        max_new_tokens=512,
        do_sample=False,
        max_image_side=768)
    assert HFVocabulary('m', device='cpu').dtype == torch.float32
    assert HFVocabulary('m', device='cuda').dtype == torch.bfloat16
    assert HFVocabulary('m', dtype='bf16').dtype == torch.bfloat16
    assert HFVocabulary('m', dtype='torch.float16').dtype == torch.float16
    assert HFVocabulary('m', dtype=torch.float64).dtype == torch.float64
    for bad in ('int8', 'nonsense', torch.int32):
        with pytest.raises(ValueError, match='dtype'):
            HFVocabulary('m', dtype=bad)
    with pytest.raises(ValueError, match='model'):
        HFVocabulary('')


def test_ask_returns_text_and_counts_usage(tiny_llava, tmp_path):
    source = make(tiny_llava, tmp_path)
    assert source.model_id == 'tiny-llava' and source.is_local
    usage = {}
    answer = source.ask(rgb(), 'List the objects.', usage)
    assert isinstance(answer, str)
    assert usage['requests'] == 1
    assert usage['prompt_tokens'] > len('List the objects.') + IMAGE_TOKENS
    assert 0 < usage['completion_tokens'] <= NEW_TOKENS
    first = dict(usage)
    assert source.ask(rgb(), 'List the objects.', usage) == answer  # greedy
    assert usage == {k: 2 * v for k, v in first.items()}
    loaded = source.load()
    assert loaded.model.device.type == source.device.split(':')[0]
    assert loaded.model.dtype == source.dtype
    assert loaded.system_form == 'list'
    # loaded once per process: another source of the same folder shares it
    assert make(tiny_llava, tmp_path).load() is loaded


def test_bfloat16_and_threads(tiny_llava, tmp_path):
    """Pixels follow the weights' dtype; concurrent askers take turns."""
    from concurrent.futures import ThreadPoolExecutor
    source = make(tiny_llava, tmp_path, dtype='bfloat16')
    assert source.load().model.dtype == torch.bfloat16
    usages = [{} for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        answers = list(
            pool.map(lambda u: source.ask(rgb(), 'Objects?', u), usages))
    assert len(set(answers)) == 1 and all(u['requests'] == 1 for u in usages)


def test_prompt_holds_system_image_and_inert_text(tiny_llava, tmp_path,
                                                  monkeypatch):
    source = make(tiny_llava, tmp_path, max_image_side=32)
    calls = []
    monkeypatch.setattr(source.load().model, 'generate',
                        answer_with(source, [''], calls))
    usage = {}
    # a stage-1 term may hold a control token: it must stay plain text
    prompt = 'Seen in the image: ["<image>", "</s>"]'
    assert source.ask(rgb(), prompt, usage) == ''
    assert usage['completion_tokens'] == 1  # EOS alone
    assert calls[0]['max_new_tokens'] == NEW_TOKENS
    assert calls[0]['do_sample'] is False
    assert calls[0]['pixel_values'].shape == (1, 3, IMAGE_SIDE, IMAGE_SIDE)
    ids = calls[0]['input_ids'][0]
    processor = source.load().processor
    assert int((ids == processor.image_token_id).sum()) == IMAGE_TOKENS
    text = processor.tokenizer.decode(ids, skip_special_tokens=False)
    assert text.startswith(f'SYSTEM: {SYSTEM}\nUSER: <image>')
    assert text.endswith(f'{prompt}\nASSISTANT:')


def test_template_without_system_gets_it_in_the_prompt(no_system_llava,
                                                       tmp_path, monkeypatch):
    source = make(no_system_llava, tmp_path)
    assert source.load().system_form is None
    calls = []
    monkeypatch.setattr(source.load().model, 'generate',
                        answer_with(source, ['{}'], calls))
    assert source.ask(rgb(), 'Name the things.', {}) == '{}'
    text = source.load().processor.tokenizer.decode(calls[0]['input_ids'][0])
    assert text.startswith('USER: ')
    assert f'{SYSTEM}\n\nName the things.' in text


def test_fetch_with_random_weights_is_a_recorded_failure(
        tiny_llava, ade_image, tmp_path):
    source = make(tiny_llava, tmp_path)
    result = source.fetch(ade_image, CLASSES)
    assert result.status == 'failed' and result.entry is None
    assert 'AnswerError' in result.error
    assert result.usage['requests'] >= 2
    assert len(source.cache.failures()) == 1 and len(source.cache) == 0
    strict = make(tiny_llava, tmp_path / 'strict', strict=True)
    with pytest.raises(VocabularyFailure, match='AnswerError'):
        strict.fetch(ade_image, CLASSES)


def test_fetch_with_fixed_answers_then_hit(tiny_llava, ade_image, tmp_path,
                                           monkeypatch):
    source = make(tiny_llava, tmp_path)
    answers = [
        'Sure! {"terms": ["Brick Wall", "wooden floor", "blue sky", '
        '"lamp"]}',
        '```json\n{"wall": ["red brick wall", "Brick Wall"], '
        '"floor": ["parquet"], "sky": ["cloudy sky"], "cat": ["tabby"]}\n```',
        '{}',
    ]
    calls = []
    monkeypatch.setattr(source.load().model, 'generate',
                        answer_with(source, answers, calls))
    result = source.fetch(ade_image, CLASSES)
    assert result.status == 'new', result.error
    assert result.terms == [
        Term('red brick wall', 'wall'),
        Term('brick wall', 'wall'),
        Term('parquet', 'floor'),
        Term('cloudy sky', 'sky'),
        Term('tabby', None),
        Term('wooden floor', None),
        Term('blue sky', None),
        Term('lamp', None),
    ]
    assert len(calls) == 3 and result.entry.raw_answers == answers
    assert result.entry.model == 'tiny-llava'
    tokenizer = source.load().processor.tokenizer
    assert result.usage['requests'] == 3
    assert result.usage['completion_tokens'] == sum(
        len(tokenizer.encode(a, add_special_tokens=False)) + 1
        for a in answers)
    assert result.usage['prompt_tokens'] == sum(c['input_ids'].shape[1]
                                                for c in calls)

    monkeypatch.setattr(source.load().model, 'generate', never)
    again = make(tiny_llava, tmp_path).fetch(ade_image, CLASSES)
    assert again.status == 'hit' and again.terms == result.terms


def test_missing_model_folder_is_fatal_and_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(transformers.AutoProcessor, 'from_pretrained', never)
    missing = tmp_path / 'models' / 'no-such-llava'
    source = HFVocabulary(model=str(missing), cache_file=tmp_path / 'v.sqlite')
    assert source.model_id == 'no-such-llava'
    start = time.monotonic()
    with pytest.raises(FatalVocabularyError, match='no-such-llava.*not '):
        source.fetch(rgb(), CLASSES)
    assert time.monotonic() - start < 10
    assert source.cache.failures() == []  # the run stops, no image failed


def test_missing_hub_model_offline_is_fatal_and_fast(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    assert hub_offline()
    name = 'ov-eva-tests/no-such-vlm'
    source = HFVocabulary(model=name, cache_file=False)
    start = time.monotonic()
    with pytest.raises(FatalVocabularyError) as info:
        source.ask(rgb(), 'List the objects.', {})
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert f"'{name}' are not in the local Hugging Face cache" in message
    assert 'HF_HUB_OFFLINE' in message
    assert f'hf download {name}' in message
    assert f'huggingface-cli download {name}' in message
    assert 'local folder' in message


def test_unreachable_hub_fails_before_from_pretrained(monkeypatch):
    from huggingface_hub import constants
    for name in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'http_proxy',
                 'HTTP_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, 'ENDPOINT', f'http://127.0.0.1:{port}')
    monkeypatch.setattr(transformers.AutoProcessor, 'from_pretrained', never)
    assert not hub_offline()
    source = HFVocabulary(model='ov-eva-tests/no-such-vlm', cache_file=False)
    start = time.monotonic()
    with pytest.raises(FatalVocabularyError, match='could not be reached'):
        source.ask(rgb(), 'List the objects.', {})
    assert time.monotonic() - start < 10
