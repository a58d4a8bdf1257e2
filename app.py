"""Hugging Face Space entry point: the OV-EVA page (``tools/app.py``) on
every interface, port ``$GRADIO_SERVER_PORT`` (7860 on Spaces). Arguments
pass through, e.g. ``python app.py --cfg-options model.clip.variant=sclip``.
"""
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if __name__ == '__main__':
    sys.path[:0] = [str(ROOT / 'tools'), str(ROOT / 'projects')]
    sys.argv = [
        str(ROOT / 'tools' / 'app.py'), '--host', '0.0.0.0', *sys.argv[1:]
    ]
    runpy.run_path(sys.argv[0], run_name='__main__')
