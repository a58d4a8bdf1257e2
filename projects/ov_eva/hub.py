"""Is the Hugging Face hub (or GitHub, for torch.hub) there? Asked before
any download, so that a machine without network fails in seconds instead of
retrying for a minute, with a message that says what to do. Used by the CLIP
weights (open_clip), the VFMs and local MLLMs (transformers) and RADIO
(``torch.hub``). Downloads run under ``socket_timeout``: a network that
vanishes midway fails instead of hanging."""
import contextlib
import os
import socket
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

_TRUE = ('1', 'on', 'true', 'yes')
HUB_TIMEOUT = 3.0  # seconds to reach the hub before calling it unreachable
# seconds a download's socket may wait for data (Python's default: forever)
DOWNLOAD_TIMEOUT = 30.0
GITHUB = 'https://github.com'


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now: the
    environment is read at call time, since ``huggingface_hub`` freezes it
    when first imported."""
    for name in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE'):
        if os.environ.get(name, '').strip().lower() in _TRUE:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, 'HF_HUB_OFFLINE', False))


@contextlib.contextmanager
def hub_cache_only():
    """``huggingface_hub`` offline for the duration: a download answers from
    the local cache, or fails at once, without a request. (It reads
    ``HF_HUB_OFFLINE`` once, at import, so setting the variable later does
    nothing.)"""
    from huggingface_hub import constants
    previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def hub_reachable(timeout: float = HUB_TIMEOUT) -> bool:
    """Whether a TCP connection to the hub (``HF_ENDPOINT`` as set now, or the
    proxy when one is set) opens within ``timeout`` seconds."""
    endpoint = os.environ.get('HF_ENDPOINT')
    if not endpoint:
        from huggingface_hub import constants
        endpoint = constants.ENDPOINT
    return reachable(endpoint, timeout)


def reachable(url: str, timeout: float = HUB_TIMEOUT) -> bool:
    """Whether a TCP connection to the host of ``url`` (or to the proxy of
    its scheme when one is set) opens within ``timeout`` seconds."""
    target = urlparse(url)
    proxy_name = f'{target.scheme}_proxy'
    proxy = os.environ.get(proxy_name) or os.environ.get(proxy_name.upper())
    if proxy:
        target = urlparse(proxy if '://' in proxy else f'http://{proxy}')
    if not target.hostname:
        return False
    port = target.port or (443 if target.scheme == 'https' else 80)
    try:
        socket.create_connection((target.hostname, port),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def socket_timeout(seconds: float = DOWNLOAD_TIMEOUT):
    """Sockets opened in the block without a timeout of their own give up
    after ``seconds`` of silence (``socket.setdefaulttimeout``, restored
    after): torch.hub's ``urlopen`` has none."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def is_local(name: str) -> bool:
    """Whether a torch.hub ``name`` means a folder (it exists, or reads as
    a path) rather than a GitHub ``owner/repo[:ref]``."""
    return os.path.isdir(os.path.expanduser(name)) or \
        name.startswith(('/', '.', '~')) or name.count('/') != 1


def torch_hub_cached(repo: str) -> Optional[Path]:
    """The torch.hub cache's copy of GitHub ``owner/repo[:ref]``, or None."""
    import torch
    owner_name, _, ref = repo.partition(':')
    folder = Path(torch.hub.get_dir())
    stem = owner_name.replace('/', '_')
    found = sorted(folder.glob(f'{stem}_{ref}' if ref else f'{stem}_*'))
    return next((p for p in found if p.is_dir()), None)


def torch_hub_load(name: str, entry: str, what: str, fix: str, **kwargs):
    """``torch.hub.load(name, entry, **kwargs)`` from a local clone
    (``source='local'``) or GitHub (trusted, as the official code loads it),
    failing at once, with ``what`` and the ``fix`` in one line, when the
    folder is no torch.hub repository or GitHub is unreachable without a
    cached copy; downloads run under ``socket_timeout``."""
    import torch
    if is_local(name):
        folder = Path(name).expanduser()
        if not (folder / 'hubconf.py').is_file():
            state = 'has no hubconf.py' if folder.is_dir() else \
                'does not exist'
            raise FileNotFoundError(f'{what}: folder {str(folder)!r} {state} '
                                    f'(not a torch.hub repository); {fix}')
        kwargs.update(source='local')
        name = str(folder)
    else:
        if torch_hub_cached(name) is None and (hub_offline()
                                               or not reachable(GITHUB)):
            raise FileNotFoundError(
                f'{what}: {name!r} is not in the torch.hub cache '
                f'({torch.hub.get_dir()}) and GitHub is unreachable (or '
                f'HF_HUB_OFFLINE=1); {fix}')
        kwargs.update(trust_repo=True)
    try:
        with socket_timeout():
            return torch.hub.load(name, entry, **kwargs)
    except Exception as error:  # noqa: B902 (the hub code's own errors)
        raise FileNotFoundError(
            f'{what}: torch.hub could not load {entry}() from {name!r} '
            f'({type(error).__name__}: {" ".join(str(error).split())}); '
            f'{fix}') from None
