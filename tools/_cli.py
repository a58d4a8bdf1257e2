"""What the tools share: a user mistake ends in one ``error:`` line and
exit status 2 (the traceback only with ``--debug``), and whatever can be
checked without torch is checked before the heavy imports.

Standard library only at import time: ``--help`` and bad arguments answer
in a fraction of a second.
"""
import argparse
import difflib
import sys
import traceback
from pathlib import Path
from typing import Callable, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]


class UserError(Exception):
    """A mistake in what the user gave: its message is the whole story."""


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--debug',
        action='store_true',
        help='show the full traceback of an error')


def closest(word: str, choices: Sequence[str], count: int = 3) -> str:
    """' (did you mean a, b?)' for the choices closest to ``word``, or
    ''."""
    found = difflib.get_close_matches(word, list(choices), count, 0.6)
    return f' (did you mean {", ".join(found)}?)' if found else ''


def check_config_file(path: str, flag: str = 'config') -> Path:
    """The config file, or a UserError naming the closest configs."""
    config = Path(path).expanduser()
    if config.is_file():
        return config
    known = [
        str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py')
        if '_base_' not in p.parts
    ]
    guess = closest(str(path), known) or closest(config.name, known)
    raise UserError(f'{flag} {str(path)!r} does not exist{guess}')


# top-level keys that mmengine's Runner (or a tool) reads itself: an
# override of one of them acts
RUNTIME_KEYS = frozenset({
    'work_dir', 'load_from', 'resume', 'launcher', 'randomness',
    'default_scope', 'log_level', 'env_cfg', 'experiment_name',
    'custom_imports', 'model_wrapper_cfg', 'log_processor', 'visualizer',
    'default_hooks', 'custom_hooks', 'auto_scale_lr', 'cudnn_benchmark',
    'data_preprocessor', 'model', 'test_cfg', 'val_cfg', 'test_evaluator',
    'val_evaluator', 'test_dataloader', 'val_dataloader', 'tta_model',
    'tta_pipeline', 'train_cfg', 'train_dataloader', 'optim_wrapper',
    'param_scheduler'
})
PLAIN = (str, int, float, bool, type(None))


def check_options(options: Optional[dict], config: Path) -> None:
    """Each ``--cfg-options`` key must start with a key of the config
    (a typo such as ``modle.classes`` would otherwise be ignored), and
    must not name a top-level variable the config has already used (such
    as ``class_file``: its copies in the settings would keep the old
    value)."""
    if not options:
        return
    from mmengine.config import Config  # no torch
    cfg = Config.fromfile(str(config), import_custom_modules=False)
    for key in options:
        top = key.split('.')[0]
        if top not in cfg and top not in RUNTIME_KEYS:
            raise UserError(f'--cfg-options {key}: the config has no key '
                            f'{top!r}{closest(top, list(cfg.keys()))}')
        uses = consumed_variable(cfg, key)
        if uses:
            raise UserError(
                f'--cfg-options {key}: {key!r} is a variable of the config, '
                'already copied into its settings when the config was read, '
                'so changing it changes nothing; set '
                f'{" and ".join(f"{use}=..." for use in uses)} instead')


def consumed_variable(cfg, key: str) -> List[str]:
    """The settings that took the value of the top-level plain variable
    ``key`` (e.g. ``test_dataloader.dataset.class_file`` for
    ``class_file``): those named alike, else those holding the same
    string; [] for anything else."""
    if '.' in key or key in RUNTIME_KEYS or \
            not isinstance(cfg.get(key), PLAIN):
        return []
    value = cfg[key]
    tree = {k: v for k, v in cfg.to_dict().items() if k != key}
    same = [
        p for p, v in _leaves(tree) if v == value and type(v) is type(value)
    ]
    named = [p for p in same if p.rsplit('.', 1)[-1] == key]
    uses = named or (same if isinstance(value, str) and value else [])
    # val_dataloader is test_dataloader's copy; protocol, the table the
    # model settings were taken from
    first = [u for u in uses if not u.startswith(('val_', 'protocol.'))]
    return first or uses


def _leaves(tree, prefix: str = ''):
    """(dotted path, value) of every plain value in nested dicts."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            yield from _leaves(value, f'{prefix}.{name}' if prefix else name)
    elif isinstance(tree, PLAIN):
        yield prefix, tree


def explain(error: BaseException, cfg=None) -> str:
    """A one-line account of ``error``: once ``ov_eva`` is imported (a
    model or dataset may have been built), ``ov_eva.preflight.one_line``
    (registry prefixes removed, an unknown setting named by its config path
    with the closest valid ones); the type name for what is not a user
    mistake."""
    if 'ov_eva' in sys.modules:
        from ov_eva.preflight import one_line
        text = one_line(error, cfg)
    else:  # before torch: nothing was built
        text = ' '.join(str(error).split())
    return text if isinstance(error, USER_ERRORS) else \
        f'{type(error).__name__}: {text}'


# what a user can get wrong: bad values, missing files, unknown settings
USER_ERRORS = (UserError, ValueError, FileNotFoundError, KeyError, TypeError,
               NotADirectoryError, IsADirectoryError, PermissionError)


class Context:
    """What the running tool knows so far (e.g. its config), for
    ``explain``."""
    cfg = None


def run(main: Callable[[], Optional[int]],
        argv: Optional[List[str]] = None) -> None:
    """Run a tool's ``main``: errors become one ``error:`` line on stderr,
    exit status 2 for user mistakes and 1 for the rest, the traceback only
    with ``--debug``."""
    argv = sys.argv[1:] if argv is None else argv
    debug = '--debug' in argv
    try:
        status = main()
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException as error:  # noqa: B902 (every error, one line)
        if debug:
            traceback.print_exc()
        user = isinstance(error, USER_ERRORS)
        hint = '' if debug else ' (--debug shows the traceback)'
        message = explain(error, Context.cfg)
        print(f'error: {message}{hint if not user else ""}', file=sys.stderr)
        sys.exit(2 if user else 1)
    sys.exit(status or 0)


def class_lists():
    """``ov_eva.class_lists`` (parsing of class names and files), loaded
    by path: importing ``ov_eva`` would import torch and mmseg first."""
    import importlib.util
    name = '_ov_eva_class_lists'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, REPO / 'projects' / 'ov_eva' / 'class_lists.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def check_classes(names: Optional[Sequence[str]] = None,
                  class_file: Optional[str] = None,
                  flag: str = '--classes') -> list:
    """Classes from names or a class file, as the model will read them; a
    UserError for an empty list, an empty name, a class named twice, an
    unreadable file, or a single class."""
    parse = class_lists()
    try:
        if class_file is not None:
            classes = parse.read_class_file(class_file)
        else:
            classes = parse.parse_class_lines(list(names or []), flag)
    except ValueError as error:
        raise UserError(str(error)) from None
    if len(classes) < 2:
        raise UserError(f'{class_file or flag}: only one class '
                        f'({classes[0][0]!r}); segmentation picks one of '
                        "several classes per pixel, so add another (e.g. "
                        "'background' or 'other')")
    return classes


# the model config of the demo, the page and the benchmarks by default
DEFAULT_CONFIG = REPO / 'configs' / 'oveva_vitb16_ade.py'
OPTIONS_HELP = 'override config settings, key=value (mmengine DictAction)'


def add_cfg_options(parser: argparse.ArgumentParser,
                    help: str = OPTIONS_HELP,
                    **kwargs) -> None:
    """``--cfg-options key=value ...``, read by mmengine's ``DictAction``
    (imported here: mmengine.config needs no torch)."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help=help, **kwargs)


def load_config(path, options: Optional[dict] = None):
    """The config file with ``--cfg-options`` merged, kept in ``Context``
    so that ``explain`` can name the config key of an error."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    Context.cfg = cfg
    if options:
        cfg.merge_from_dict(options)
    return cfg
