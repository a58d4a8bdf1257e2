"""Is the Hugging Face hub there? Asked before any download, so that a
machine without network fails in seconds instead of retrying for a minute.
Used by the CLIP weights (open_clip) and the local MLLMs (transformers)."""
import contextlib
import os
import socket
from urllib.parse import urlparse

_TRUE = ('1', 'on', 'true', 'yes')
HUB_TIMEOUT = 3.0  # seconds to reach the hub before calling it unreachable


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
    target = urlparse(endpoint)
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
