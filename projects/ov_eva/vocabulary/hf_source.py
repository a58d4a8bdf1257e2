"""Vocabularies from a local ``transformers`` image-text-to-text model
(LLaVA, Janus-Pro, Qwen2.5-VL, ...), run in this process.

Nothing is imported or loaded until the first question, so building a config
that names this source costs nothing. Weights come from a local folder or the
Hugging Face cache; without network (``HF_HUB_OFFLINE=1``, or the hub out of
reach) a model that is not cached stops the run within seconds with a
``FatalVocabularyError`` that says how to get it.
"""
import inspect
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..hub import HUB_TIMEOUT, hub_offline, hub_reachable
from ..registry import VOCABULARIES
from .base import FatalVocabularyError, MLLMVocabulary, shrink
from .prompts import SYSTEM

_DTYPE_ALIASES = {
    'bf16': 'bfloat16',
    'fp16': 'float16',
    'half': 'float16',
    'fp32': 'float32',
    'float': 'float32',
}


def resolve_device(device: Optional[str]) -> str:
    if device is not None:
        return str(device)
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def resolve_dtype(dtype: Any, device: str):
    """A floating torch dtype: ``'auto'`` is bfloat16 on CUDA and float32
    elsewhere; otherwise a torch dtype or its name (``'float16'``,
    ``'torch.bfloat16'``, ``'bf16'``)."""
    import torch
    if isinstance(dtype, torch.dtype):
        found = dtype
    elif dtype == 'auto':
        return torch.bfloat16 if device.startswith('cuda') else torch.float32
    else:
        name = str(dtype).strip().lower()
        name = name[len('torch.'):] if name.startswith('torch.') else name
        found = getattr(torch, _DTYPE_ALIASES.get(name, name), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ValueError(f"HFVocabulary: dtype {dtype!r} is not 'auto' nor "
                         'a floating torch dtype (bfloat16, float16, '
                         'float32)')
    return found


def _looks_local(model: str) -> bool:
    """A path rather than a hub id (``name`` or ``org/name``)."""
    if Path(model).expanduser().exists() or os.path.isabs(model):
        return True
    if model.startswith(('.', '~')) or '\\' in model:
        return True
    return model.count('/') > 1


class LoadedModel:
    """A processor and model pair, shared by every source of the process
    that asks for the same weights, with the lock that serialises its
    use."""

    def __init__(self, processor, model):
        self.processor, self.model = processor, model
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.system_form = self._system_form()
        try:
            parameters = inspect.signature(
                processor.apply_chat_template).parameters
        except (TypeError, ValueError):
            parameters = {}
        # transformers >= 5: the prompt's text (class names, stage-1 terms)
        # then cannot write control tokens such as ``<image>``
        self.sanitize = 'sanitize_control_tokens' in parameters

    def _system_form(self) -> Optional[str]:
        """How the chat template takes a system message: ``'list'`` (typed
        content parts), ``'str'`` (plain content) or None (it refuses or
        drops one: the system text then goes in front of the prompt)."""
        user = dict(role='user', content=[dict(type='text', text='?')])
        forms = (('list', [dict(type='text', text=SYSTEM)]), ('str', SYSTEM))
        for form, content in forms:
            try:
                text = self.processor.apply_chat_template(
                    [dict(role='system', content=content), user],
                    add_generation_prompt=True,
                    tokenize=False)
            except Exception:
                continue
            if isinstance(text, str) and SYSTEM in text and (
                    "'type'" not in text and '"type"' not in text):
                return form
        return None

    def messages(self, image, prompt: str) -> List[Dict]:
        if self.system_form is None:
            prompt = f'{SYSTEM}\n\n{prompt}'
        messages = [
            dict(
                role='user',
                content=[
                    dict(type='image', image=image),
                    dict(type='text', text=prompt)
                ])
        ]
        if self.system_form == 'list':
            messages.insert(
                0,
                dict(role='system', content=[dict(type='text', text=SYSTEM)]))
        elif self.system_form == 'str':
            messages.insert(0, dict(role='system', content=SYSTEM))
        return messages


_LOADED: Dict[Tuple, LoadedModel] = {}
_LOADED_LOCK = threading.Lock()


@VOCABULARIES.register_module()
class HFVocabulary(MLLMVocabulary):
    """A local ``transformers`` image-text-to-text model, through
    ``AutoProcessor`` + ``AutoModelForImageTextToText`` and the processor's
    chat template.

    Loaded on the first question, once per process (sources naming the same
    weights, device and dtype share it) and used by one thread at a time.

    Args:
        model: hub id (``'llava-hf/llava-1.5-7b-hf'``,
            ``'Qwen/Qwen2.5-VL-7B-Instruct'``,
            ``'deepseek-community/Janus-Pro-7B'``) or a local folder holding
            a model saved with ``save_pretrained``.
        device: ``'cuda'``, ``'cuda:1'``, ``'cpu'``...; None is CUDA when
            available, else the CPU.
        dtype: ``'auto'`` (bfloat16 on CUDA, float32 elsewhere), a torch
            dtype or its name.
        max_new_tokens: tokens generated per answer at most.
        do_sample: sample instead of greedy decoding.
        max_image_side: long side of the image given to the processor, in
            pixels (None keeps the image as it is).
        local_files_only: never contact the hub; None follows
            ``HF_HUB_OFFLINE``.
        model_kwargs: more ``from_pretrained`` arguments for the model
            (``attn_implementation``, ``revision``...).
        **kwargs: ``MLLMVocabulary``'s (``k``, ``rounds``, ``max_terms``,
            ``cache_file``, ``strict``).
    """
    source_name = 'hf'
    max_concurrency = 1

    def __init__(self,
                 model: str,
                 device: Optional[str] = None,
                 dtype: Any = 'auto',
                 max_new_tokens: int = 512,
                 do_sample: bool = False,
                 max_image_side: Optional[int] = 768,
                 local_files_only: Optional[bool] = None,
                 model_kwargs: Optional[Dict] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, (str, Path)) or not str(model).strip():
            raise ValueError('HFVocabulary needs model: a hub id or a local '
                             'folder')
        if max_new_tokens < 1:
            raise ValueError('max_new_tokens must be >= 1')
        self.model = str(model).strip()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_new_tokens, self.do_sample = max_new_tokens, do_sample
        self.max_image_side = max_image_side
        self.local_files_only = local_files_only
        self.model_kwargs = dict(model_kwargs or {})
        self._loaded: Optional[LoadedModel] = None
        self._load_lock = threading.Lock()

    @property
    def is_local(self) -> bool:
        return _looks_local(self.model)

    @property
    def model_id(self) -> str:
        if self.is_local:
            return Path(self.model).expanduser().resolve().name
        return self.model

    def params(self) -> Dict:
        return dict(
            super().params(),
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            max_image_side=self.max_image_side)

    # loading

    def load(self) -> LoadedModel:
        """The processor and model, loaded on first use."""
        loaded = self._loaded
        if loaded is not None and loaded.pid == os.getpid():
            return loaded
        with self._load_lock:
            if self._loaded is None or self._loaded.pid != os.getpid():
                key = (str(Path(self.model).expanduser().resolve())
                       if self.is_local else self.model, self.device,
                       str(self.dtype),
                       repr(sorted(self.model_kwargs.items())))
                with _LOADED_LOCK:
                    shared = _LOADED.get(key)
                    if shared is None or shared.pid != os.getpid():
                        shared = _LOADED[key] = self._from_pretrained()
                self._loaded = shared
            return self._loaded

    def _missing(self, reason: str) -> FatalVocabularyError:
        return FatalVocabularyError(
            f'HFVocabulary: the weights of {self.model!r} are not in the '
            f'local Hugging Face cache and {reason}. Download them where '
            f'there is network with `hf download {self.model}` (older '
            f'huggingface_hub: `huggingface-cli download {self.model}`) and '
            'copy the cache (HF_HOME, ~/.cache/huggingface) here, or set '
            "the vocabulary's model to a local folder holding the model "
            '(no such folder exists here either).')

    def _from_pretrained(self) -> LoadedModel:
        try:
            import transformers
        except ImportError as error:
            raise FatalVocabularyError(
                f'HFVocabulary needs transformers ({error}); '
                'pip install "ov-eva[hf]"') from None
        local_only, reason = self.local_files_only, 'local_files_only=True'
        if self.is_local:
            path = Path(self.model).expanduser()
            if not path.is_dir():
                raise FatalVocabularyError(
                    f'HFVocabulary: the model folder {self.model!r} does not '
                    'exist; set model to a folder saved with save_pretrained '
                    'or to a hub id')
            source = str(path)
        else:
            source = self.model
            if local_only is None:
                local_only, reason = hub_offline(), 'HF_HUB_OFFLINE is set'
            if not local_only and not hub_reachable():
                reason = (f'the hub could not be reached within '
                          f'{HUB_TIMEOUT:g} s')
                if not self._cached():
                    raise self._missing(reason)
                local_only = True  # no network: the cache alone, no retries
        common = dict(local_files_only=bool(local_only))
        options = dict(common, dtype=self.dtype)
        options.update(self.model_kwargs)
        try:
            processor = transformers.AutoProcessor.from_pretrained(
                source, **common)
            auto_model = transformers.AutoModelForImageTextToText
            model = auto_model.from_pretrained(source, **options)
        except OSError as error:
            if self.is_local or not local_only:
                raise FatalVocabularyError(
                    f'HFVocabulary: cannot load {self.model!r}: {error}'
                ) from None
            if self._cached():  # the config is there, other files are not
                reason += f' ({str(error).splitlines()[0][:200]})'
            raise self._missing(reason) from None
        except Exception as error:
            raise FatalVocabularyError(
                f'HFVocabulary: cannot load {self.model!r} as an '
                f'image-text-to-text model: {type(error).__name__}: {error}'
            ) from None
        if 'device_map' not in options:
            model.to(self.device)
        model.eval()
        loaded = LoadedModel(processor, model)
        if loaded.system_form is None:
            try:
                loaded.processor.apply_chat_template(
                    loaded.messages(None, '?')[-1:],
                    add_generation_prompt=True,
                    tokenize=False)
            except Exception as error:
                raise FatalVocabularyError(
                    f'HFVocabulary: the processor of {self.model!r} has no '
                    f'usable chat template ({type(error).__name__}: '
                    f'{error})') from None
        return loaded

    def _cached(self) -> bool:
        """Whether the hub model's config is in the local cache."""
        try:
            from huggingface_hub import try_to_load_from_cache
            found = try_to_load_from_cache(self.model, 'config.json')
        except Exception:
            return False
        return isinstance(found, str)

    # asking

    def ask(self, rgb, prompt, usage):
        import torch
        from PIL import Image
        loaded = self.load()
        image = Image.fromarray(shrink(rgb, self.max_image_side))
        with loaded.lock:
            inputs = self._inputs(loaded, image, prompt)
            model = loaded.model
            inputs = inputs.to(model.device, dtype=model.dtype)
            options = dict(
                max_new_tokens=self.max_new_tokens, do_sample=self.do_sample)
            if getattr(model.generation_config, 'pad_token_id', None) is None:
                tokenizer = getattr(loaded.processor, 'tokenizer', None)
                pad = getattr(tokenizer, 'pad_token_id', None)
                if pad is None:
                    pad = getattr(tokenizer, 'eos_token_id', None)
                if pad is not None:
                    options['pad_token_id'] = pad
            with torch.inference_mode():
                output = model.generate(**inputs, **options)
        prompt_ids = inputs['input_ids'][0]
        output = output[0] if output.ndim == 2 else output
        new = output
        if output.shape[-1] >= prompt_ids.shape[-1] and torch.equal(
                output[:prompt_ids.shape[-1]].to(prompt_ids.device),
                prompt_ids):
            new = output[prompt_ids.shape[-1]:]
        usage['requests'] = usage.get('requests', 0) + 1
        usage['prompt_tokens'] = usage.get('prompt_tokens', 0) + int(
            prompt_ids.shape[-1])
        usage['completion_tokens'] = usage.get('completion_tokens', 0) + int(
            new.shape[-1])
        decoder = loaded.processor if hasattr(
            loaded.processor, 'decode') else loaded.processor.tokenizer
        return decoder.decode(new, skip_special_tokens=True).strip()

    @staticmethod
    def _inputs(loaded: LoadedModel, image, prompt: str):
        options = dict(
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors='pt')
        if loaded.sanitize:
            options['sanitize_control_tokens'] = True
        return loaded.processor.apply_chat_template(
            loaded.messages(image, prompt), **options)

    def release(self) -> None:
        """Drop this process's copy of the model (frees its memory once no
        other source holds it)."""
        with self._load_lock, _LOADED_LOCK:
            for key in [k for k, v in _LOADED.items() if v is self._loaded]:
                del _LOADED[key]
            self._loaded = None
