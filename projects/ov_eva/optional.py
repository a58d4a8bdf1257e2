"""Optional dependencies, imported on first use. A missing one is an
ImportError that names the extra of ``ov-eva`` that brings it (setup.cfg's
``extras_require``), instead of a bare ``No module named ...``."""
import importlib

# top-level module -> the extra that installs it
EXTRAS = {
    'openai': 'openai',
    'transformers': 'hf',
    'gradio': 'app',
    'matplotlib': 'figures',
    'faiss': 'faiss'
}


def require(module: str, purpose: str):
    """``module``, imported; ``purpose`` says what needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = EXTRAS[module.split('.')[0]]
        raise ImportError(f'{purpose} needs {module} ({error}); install it '
                          f'with: pip install "ov-eva[{extra}]"') from None
