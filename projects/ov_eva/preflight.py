"""Checks of a test run before mmengine's Runner prints anything.

mmengine's Runner logs its environment and the whole config (hundreds of
lines), then builds the model, and loads ``load_from`` only in
``runner.test()``, non-strictly: a checkpoint of another model logs its
size mismatches and the run ends with exit 0 on weights never loaded. For an
OV-EVA model config with a checkpoint, ``prepare`` instead

1. reads the checkpoint's shapes and the model settings
   ``tools/export_checkpoint.py`` recorded in its meta, and builds the model
   the checkpoint holds: the recorded CLIP (and VFM / DINO) settings replace
   the config's, unless the command line sets them (``explicit``);
2. builds the model and the test dataset, so that a config mistake (a typo
   in a nested key, a missing class file) is the first thing printed;
3. compares the checkpoint's tensors with the model's and loads them,
   strictly: one that does not fit ends in a ``CheckpointMismatch`` naming
   the tensors, their shapes and the option that fixes it;
4. calls the backend's ``ready()`` where it has one (CorrCLIPv2: its VFM
   and memory bank, opened and checked), so that their mistakes too come
   before the first image.

The log lines of the model's build are held until all checks pass: a
mistake is then the only thing printed. ``build_runner`` hands the built,
loaded model to the Runner. ``tools/test.py`` calls it; ``install`` wraps
``Runner.from_cfg`` so that ``mim test`` (mmseg's own test script, which
imports ``ov_eva`` through the config's ``custom_imports``) gets the same
checks, and there a user mistake ends in one ``error:`` line, exit status 2.
"""
import contextlib
import difflib
import logging
import os
import re
import sys
import warnings
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import MMLogger, print_log

from .data_checks import check_test_data

OV_EVA_SEGMENTORS = ('OVEVASegmentor', )
DEFAULT_BACKEND = 'DenseCLIPEncoder'
# the settings that decide which weights a backend holds (and QuickGELU,
# which no shape shows; CorrCLIPv2's auxiliary CLIP too): taken from the
# checkpoint. The others (variant, precision, masks, bank, protocol windows)
# are the config's: they belong to the benchmark being run, not to the
# weights.
WEIGHT_SETTINGS = ('name', 'pretrained', 'quick_gelu', 'vfm', 'dino',
                   'aux_clip')
# recorded by tools/export_checkpoint.py, not a backend argument
RECORD_ONLY = ('weights_fingerprint', )
SHOWN = 3  # tensors named in an error


class CheckpointMismatch(ValueError):
    """The checkpoint does not fit the model built: a user mistake."""


def segmentor_cfg(cfg) -> Optional[dict]:
    """The OV-EVA segmentor's config in ``cfg`` (inside the TTA wrapper
    with ``--tta``), or None for another model."""
    model = cfg.get('model')
    if isinstance(model, dict) and isinstance(model.get('module'), dict):
        model = model['module']
    if isinstance(model, dict) and model.get('type') in OV_EVA_SEGMENTORS:
        return model
    return None


# --------------------------------------------------------------------------
# the checkpoint


def read_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """(state dict, meta) of a checkpoint, memory-mapped (the tensors are
    read when loaded); keys without DDP's ``module.`` as mmengine loads
    them."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    try:
        ckpt = torch.load(
            path, map_location='cpu', weights_only=True, mmap=True)
    except RuntimeError:  # the legacy format cannot be memory-mapped
        ckpt = _load_plain(path)
    except Exception as error:  # noqa: B902 (pickle and zip errors alike)
        raise ValueError(f'checkpoint {path!r} is not a PyTorch checkpoint '
                         f'({type(error).__name__}: {error})') from None
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'checkpoint {path!r} holds no state dict')
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    return state, meta


def _load_plain(path: str):
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: B902
        raise ValueError(f'checkpoint {path!r} is not a PyTorch checkpoint '
                         f'({type(error).__name__}: {error})') from None


# --------------------------------------------------------------------------
# the model the checkpoint holds

# settings that go together: the weights tag belongs to the model name
PAIRED = {'name': ('name', 'pretrained'), 'pretrained': ('name', 'pretrained')}


def _said(explicit: Iterable[str], key: str) -> bool:
    """Whether a command-line key sets ``model.clip.<key>`` (or its pair,
    a part of it, or all of model.clip)."""
    paths = [f'model.clip.{name}.' for name in PAIRED.get(key, (key, ))]
    return any(
        path.startswith(e + '.') or (e + '.').startswith(path)
        for path in paths for e in explicit)


def apply_recorded(seg_cfg: dict, recorded: Optional[dict],
                   explicit: Sequence[str]) -> List[str]:
    """Set ``seg_cfg.clip`` to the backend ``recorded`` in a checkpoint:
    another backend type replaces the whole block; the same type takes the
    ``WEIGHT_SETTINGS``. Keys the command line sets stay. Returns the
    changes, as ``key: config's -> checkpoint's``."""
    if not isinstance(recorded, dict) or 'name' not in recorded:
        return []
    clip = seg_cfg['clip']
    recorded = {k: v for k, v in recorded.items() if k not in RECORD_ONLY}
    was_type = clip.get('type', DEFAULT_BACKEND)
    new_type = recorded.get('type', DEFAULT_BACKEND)
    if new_type != was_type and _said(explicit, 'type'):
        return []  # another backend, chosen: the fit check tells
    if new_type != was_type:
        kept = {k: v for k, v in clip.items() if _said(explicit, k)}
        seg_cfg['clip'] = dict(recorded, **kept)
        return [f'type: {was_type} -> {new_type} (its whole model.clip)']
    changes = []
    for key in WEIGHT_SETTINGS:
        if key in recorded and not _said(explicit, key) and \
                clip.get(key) != recorded[key]:
            changes.append(f'{key}: {clip.get(key)!r} -> {recorded[key]!r}')
            clip[key] = recorded[key]
    return changes


def fix_options(clip_cfg: dict, recorded: Optional[dict]) -> str:
    """The ``--cfg-options`` that build the recorded model where the model
    built differs from it, or ''."""
    if not isinstance(recorded, dict):
        return ''
    built = dict(clip_cfg)
    built.setdefault('type', DEFAULT_BACKEND)
    options = []
    for key in ('type', ) + WEIGHT_SETTINGS:
        value = recorded.get(key, DEFAULT_BACKEND if key == 'type' else None)
        if key not in recorded and key != 'type' or built.get(key) == value:
            continue
        if isinstance(value, dict):
            options += [
                f'model.clip.{key}.{k}={v}' for k, v in value.items()
                if (built.get(key) or {}).get(k) != v
            ]
        else:
            options.append(f'model.clip.{key}={value}')
    return ' '.join(options)


# --------------------------------------------------------------------------
# the fit


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _listed(keys: List[str], describe) -> str:
    shown = ', '.join(describe(k) for k in keys[:SHOWN])
    more = f' and {len(keys) - SHOWN} more' if len(keys) > SHOWN else ''
    return shown + more


def misfits(model_state: dict, ckpt_state: dict) -> List[str]:
    """What of ``ckpt_state`` does not fit ``model_state``, in phrases
    (empty when every tensor fits)."""
    differ = [
        k for k in model_state
        if k in ckpt_state and _shape(ckpt_state[k]) != _shape(model_state[k])
    ]
    missing = [k for k in model_state if k not in ckpt_state]
    unexpected = [k for k in ckpt_state if k not in model_state]
    found = []
    if differ:
        found.append(f'{len(differ)} of {len(model_state)} tensors differ in '
                     'shape (checkpoint vs model): ' + _listed(
                         differ, lambda k: f'{k} {_shape(ckpt_state[k])} vs '
                         f'{_shape(model_state[k])}'))
    if missing:
        found.append(f'{len(missing)} tensors of the model are not in it: ' +
                     _listed(missing, str))
    if unexpected:
        found.append(f'{len(unexpected)} of its tensors are not in the '
                     'model: ' + _listed(unexpected, str))
    return found


def check_fit(model: torch.nn.Module, ckpt_state: dict, path: str,
              clip_cfg: dict, recorded: Optional[dict]) -> None:
    """A ``CheckpointMismatch`` unless every tensor of the checkpoint fits
    the model and the model has no other one."""
    found = misfits(model.state_dict(), ckpt_state)
    if not found:
        return
    built = f"{clip_cfg.get('type', DEFAULT_BACKEND)} " \
        f"{clip_cfg.get('name')!r}"
    fix = fix_options(clip_cfg, recorded)
    if fix:
        hint = (f'it holds another model: use --cfg-options {fix} (or set '
                'none of these: the checkpoint\'s own settings are used)')
    elif recorded:
        hint = ('it records the settings of the model built, so its tensors '
                'were changed after export: export it again with '
                'tools/export_checkpoint.py')
    else:
        hint = ('it records no OV-EVA model settings (not written by '
                'tools/export_checkpoint.py): give the config (or '
                '--cfg-options model.clip.name=...) of the model it holds, '
                'or export one with tools/export_checkpoint.py')
    raise CheckpointMismatch(f'checkpoint {path} does not fit the model '
                             f'built ({built}): {"; ".join(found)}; {hint}')


# --------------------------------------------------------------------------
# the build, quiet until it is known to be right


@contextlib.contextmanager
def held_output():
    """Hold the log records and Python warnings of the block; show them
    when it succeeds, drop them when it fails (its error is the story)."""
    logger = MMLogger.get_current_instance()
    handlers, held = logger.handlers[:], _Held()
    logger.handlers = [held]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('default')
        try:
            yield
        finally:
            logger.handlers = handlers
    for record in held.records:
        logger.handle(record)
    for warning in caught:
        warnings.showwarning(warning.message, warning.category,
                             warning.filename, warning.lineno)


class _Held(logging.Handler):

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record) -> None:
        self.records.append(record)


def build_model(cfg) -> torch.nn.Module:
    """The model of ``cfg`` as the Runner builds it: in the default scope,
    after seeding (the tiny test models' random weights follow the seed),
    with the top-level data preprocessor where the model has none."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed
    from mmseg.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    set_random_seed(**cfg.get('randomness', dict(seed=None)))
    model_cfg = dict(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def prepare(cfg, explicit: Sequence[str] = ()) -> Optional[torch.nn.Module]:
    """The model of an OV-EVA config, built and checked as the module
    docstring says, with ``cfg.load_from`` loaded; None for another model
    (left to the Runner); without a checkpoint, with the weights the
    config names. ``explicit``: the ``--cfg-options`` keys, which
    win over the checkpoint's settings."""
    seg_cfg = segmentor_cfg(cfg)
    if seg_cfg is None:
        return None
    path = cfg.get('load_from')
    state, meta = read_checkpoint(path) if path else ({}, {})
    recorded = meta.get('clip')
    changes = apply_recorded(seg_cfg, recorded, explicit)
    with held_output():
        model = build_model(cfg)
        check_test_data(cfg, model_built=True)
        segmentor = getattr(model, 'module', model)  # inside SegTTAModel
        if path:
            check_fit(segmentor, state, path, seg_cfg['clip'], recorded)
            segmentor.load_state_dict(state, strict=True)
        else:  # the config's own weights (tag, file), fetched now
            model.init_weights()
        # what a backend loads beside its weights (CorrCLIPv2: its bank)
        ready = getattr(getattr(segmentor, 'clip', None), 'ready', None)
        if callable(ready):
            ready()
    if changes:
        print_log(
            f'checkpoint {path} holds another model than the config: '
            f'model.clip {"; ".join(changes)} (--cfg-options model.clip.'
            '<key>=... keeps the config\'s)',
            logger='current')
    if path:
        print_log(
            f'checkpoint {path} loaded: all {len(state)} tensors fit',
            logger='current')
    return model


def build_runner(cfg, explicit: Sequence[str] = (), runner_cls=None):
    """A Runner of ``cfg`` on the model ``prepare`` built and loaded (the
    Runner's own build and non-strict load skipped); mmengine's plain
    ``Runner.from_cfg`` for other models."""
    from mmengine.runner import Runner
    runner_cls = runner_cls or Runner
    model = prepare(cfg, explicit)
    from_cfg = _ORIGINAL.get('from_cfg') or runner_cls.from_cfg.__func__
    if model is None:
        return from_cfg(runner_cls, cfg)
    loaded = cfg.get('load_from') is not None

    class PreparedRunner(runner_cls):

        def build_model(self, model_cfg):
            return model

        def load_or_resume(self):
            if loaded:
                self._has_loaded = True  # prepare() loaded it, strictly
            super().load_or_resume()

    PreparedRunner.__name__ = runner_cls.__name__
    return from_cfg(PreparedRunner, cfg)


# --------------------------------------------------------------------------
# mim test: mmseg's test script calls Runner.from_cfg

_ORIGINAL: dict = {}
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, TypeError,
               NotADirectoryError, IsADirectoryError, PermissionError)
_UNEXPECTED = re.compile(
    r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")
_NOT_REGISTERED = re.compile(r'(\w+) is not in the (\S+) registry')


def _command_line_keys(argv: Sequence[str]) -> List[str]:
    """The keys of ``--cfg-options k=v ...`` in a command line."""
    keys, inside = [], False
    for arg in argv:
        if arg.startswith('--'):
            inside = arg == '--cfg-options'
        elif inside and '=' in arg:
            keys.append(arg.split('=', 1)[0])
    return keys


def one_line(error: BaseException, cfg=None) -> str:
    """The error in one line, mmengine's registry prefix removed, an
    unknown setting named by its config path with the closest valid ones,
    an unregistered type with the closest registered names."""
    text = re.sub(r'class `\w+` in [^:]+: ', '', ' '.join(str(error).split()))
    unexpected = _UNEXPECTED.search(text)
    if unexpected is not None:
        cls_name, key = unexpected.groups()
        if hasattr(cfg, 'to_dict'):  # an mmengine Config
            cfg = cfg.to_dict()
        where = _key_path(cfg or {}, key)
        return (f'{where or key}: {cls_name} has no setting {key!r}'
                f'{_closest(key, _parameters(cls_name))}')
    registered = _NOT_REGISTERED.search(text)
    if registered is not None:
        name, registry = registered.groups()
        return (f'type {name!r} is not registered in {registry}'
                f'{_closest(name, _registered(registry))}')
    return text


def _closest(word: str, choices: List[str]) -> str:
    close = difflib.get_close_matches(word, choices, 3, 0.6)
    return f' (did you mean {", ".join(close)}?)' if close else ''


def _key_path(tree, key: str, prefix: str = '') -> Optional[str]:
    """The dotted path of ``key`` in nested config dicts."""
    if not isinstance(tree, dict):
        return None
    for name, value in tree.items():
        path = f'{prefix}.{name}' if prefix else str(name)
        found = path if name == key else _key_path(value, key, path)
        if found:
            return found
    return None


def _registries() -> list:
    from mmseg.registry import DATASETS, HOOKS, MODELS, TRANSFORMS

    from .registry import BACKENDS, MASK_SOURCES, VOCABULARIES
    return [
        MODELS, DATASETS, HOOKS, TRANSFORMS, VOCABULARIES, BACKENDS,
        MASK_SOURCES
    ]


def _parameters(cls_name: str) -> List[str]:
    """The settings of the registered class ``cls_name``."""
    import inspect
    for registry in _registries():
        cls = registry.get(cls_name)
        if isinstance(cls, type):
            return [
                p for p in inspect.signature(cls.__init__).parameters
                if p not in ('self', 'args', 'kwargs')
            ]
    return []


def _registered(registry: str) -> List[str]:
    return [
        name for reg in _registries() if registry.endswith(reg.name)
        for name in reg.module_dict
    ]


def _is_mmseg_test_script() -> bool:
    script = os.path.normpath(sys.argv[0]) if sys.argv else ''
    return script.endswith(os.path.join('.mim', 'tools', 'test.py'))


def _from_cfg(cls, cfg):
    """Runner.from_cfg with ``build_runner``'s checks for OV-EVA configs
    with a checkpoint; under mmseg's test script (``mim test``), which has
    no error handling of its own, a user mistake ends in one ``error:``
    line and exit status 2."""
    if segmentor_cfg(cfg) is None or cfg.get('load_from') is None:
        return _ORIGINAL['from_cfg'](cls, cfg)
    if not _is_mmseg_test_script():
        return build_runner(cfg, (), cls)
    try:
        return build_runner(cfg, _command_line_keys(sys.argv), cls)
    except USER_ERRORS as error:
        print(f'error: {one_line(error, cfg)}', file=sys.stderr)
        sys.exit(2)


def install() -> None:
    """Wrap ``Runner.from_cfg`` (once): mmseg's test script, which ``mim
    test`` runs, builds its Runner through it and nothing else of ours
    runs before the Runner logs and loads the checkpoint non-strictly."""
    from mmengine.runner import Runner
    if 'from_cfg' in _ORIGINAL:
        return
    _ORIGINAL['from_cfg'] = Runner.from_cfg.__func__
    Runner.from_cfg = classmethod(_from_cfg)
