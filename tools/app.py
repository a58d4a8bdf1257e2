r"""A web page for OV-EVA (Gradio): segment a photo in the browser.

    python tools/app.py [--port 7860] [--host 127.0.0.1] [--config C] \
        [--cfg-options model.clip.name=ov-eva-tiny model.clip.pretrained=None]

Upload a photo (or pick a shipped demo photo), type classes (comma-separated;
synonyms of one class in parentheses or after ``|``) or leave them empty to
find what is in the photo (``model.classes='auto'``), choose the vocabulary
source (the offline lexicon, an OpenAI-compatible server by URL and model,
the key from ``$OPENAI_API_KEY``, or none) and the base, and press Segment.
The page shows the overlay with its legend, each class's area, the vocabulary
terms with the class each was mapped to and its refinement weight, and a
pixel's top classes when the overlay is clicked. Under the photo part, a
video (uploaded or recorded with the webcam) is segmented in stream mode
(``ov_eva.stream``: a vocabulary per scene, asked in the background) into
an overlay video.

One model is loaded at start (``configs/oveva_vitb16_ade.py`` unless
``--config``; ``--cfg-options`` applied last) and requests queue for it, one
at a time. Nothing phones home: Gradio's analytics are off, no share link is
made and the page needs no web font. The same function answers
``gradio_client`` (``api_name='/segment'``). ``app.py`` at the repository
root starts this page as a Hugging Face Space does (see docs/page.md).
"""
import argparse
import os
import tempfile
import threading
import time

import numpy as np
from _cli import (DEFAULT_CONFIG, REPO, Context, UserError, add_cfg_options,
                  add_debug_flag, check_classes, check_config_file,
                  check_options, run)

SOURCES = ('lexicon', 'openai-compatible server', 'none')
# The bases the page offers: a name -> the ``model.clip`` settings it
# changes on the loaded model. A base that needs another model (a new
# dense-feature backend) is added here with the settings it needs; settings
# other than ``variant`` rebuild the model when it is chosen.
BASES = {
    'naclip': dict(variant='naclip'),
    'sclip': dict(variant='sclip'),
    'clearclip': dict(variant='clearclip'),
    'maskclip (vanilla)': dict(variant='vanilla'),
}
RUNTIME_CLIP_KEYS = {'variant'}  # switched on the loaded model
MAX_STATE_PIXELS = 2**20  # the click lookup keeps at most this many pixels
TOP_K = 3
MAX_VIDEO_FRAMES = 300  # a page request segments at most this many frames


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    parser.add_argument(
        '--port',
        type=int,
        default=int(os.environ.get('GRADIO_SERVER_PORT', 7860)),
        help='port (default: $GRADIO_SERVER_PORT or %(default)s)')
    parser.add_argument(
        '--host',
        default=os.environ.get('GRADIO_SERVER_NAME', '127.0.0.1'),
        help='address to listen on (default: %(default)s; 0.0.0.0 for '
        'every interface, as a Space needs)')
    parser.add_argument(
        '--config',
        default=str(DEFAULT_CONFIG),
        help='model config (default: %(default)s)')
    add_cfg_options(parser,
                    'override config settings, key=value (applied last)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def split_top_level(text: str) -> list:
    """Split at commas, ``;`` and new lines outside parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += {'(': 1, ')': -1}.get(char, 0)
        if char in ',;\n' and depth <= 0:
            parts.append(''.join(current))
            current = []
        else:
            current.append(char)
    return parts + [''.join(current)]


def synonyms_of(part: str) -> list:
    """``wall (brick wall, stone wall)`` or ``wall | brick wall`` to the
    names of one class, the first being its display name."""
    names = part.replace('(', '|').replace(')', '').replace(',', '|')
    return [name.strip() for name in names.split('|') if name.strip()]


def parse_class_text(text: str):
    """Classes typed in the page: separated by commas, ``;`` or new lines
    (``sky, road, tree`` is three classes, as in the peer demos); synonyms of
    one class in parentheses or after ``|``: ``wall (brick wall)`` or
    ``wall | brick wall``. None when empty (classes are found per image)."""
    lines = [
        ', '.join(synonyms_of(part)) for part in split_top_level(text or '')
        if part.strip()
    ]
    if not lines:
        return None
    return check_classes(lines, flag='classes')


class Segmenter:
    """The one loaded model and what a request changes on it (classes,
    vocabulary source, base), used by one request at a time."""

    def __init__(self, cfg):
        import ov_eva  # noqa: F401  (registers OV-EVA; compat first)
        from ov_eva.apis import init_model
        self.cfg = cfg
        self.lock = threading.Lock()
        from mmengine.device import get_device
        self.model = init_model(cfg, get_device())  # an accelerator if any
        self.base = self._base_of(cfg)
        self.default_source = self.model.vocabulary  # the config's (lexicon)
        self.sources = {}

    @staticmethod
    def _base_of(cfg) -> str:
        variant = cfg.model.clip.get('variant', 'naclip')
        return next((name for name, settings in BASES.items()
                     if settings.get('variant') == variant), variant)

    def use_base(self, name: str) -> None:
        if name not in BASES:
            raise UserError(f'base {name!r} is unknown; choose one of '
                            f'{", ".join(BASES)}')
        settings = BASES[name]
        if set(settings) - RUNTIME_CLIP_KEYS:  # another model: rebuild
            from ov_eva.apis import init_model
            cfg = self.cfg.copy()
            cfg.model.clip.update(settings)
            self.model = init_model(cfg,
                                    next(self.model.parameters()).device.type)
            self.default_source = self.model.vocabulary
            self.sources = {}
        if 'variant' in settings:
            self.model.clip.set_variant(settings['variant'])
        self.base = name

    def source(self, kind: str, url: str, model_name: str):
        """The vocabulary source: built once per (kind, URL, model)."""
        from ov_eva.registry import build_vocabulary
        if kind == 'none':
            return None
        if kind == 'lexicon':
            key = ('lexicon', )
            spec = dict(type='LexiconVocabulary')
        elif kind == SOURCES[1]:
            url, model_name = (url or '').strip(), (model_name or '').strip()
            if not url.startswith(('http://', 'https://')):
                raise UserError(
                    f'server URL {url!r}: give the address of an '
                    'OpenAI-compatible server, e.g. http://localhost:8000/v1')
            if not model_name:
                raise UserError('give the model name the server serves, '
                                'e.g. gpt-4o or llava-1.5-7b')
            key = ('openai', url, model_name)
            # a dead server must answer in seconds, not minutes: one retry,
            # and the first unreachable image stops the request
            spec = dict(
                type='OpenAIVocabulary',
                base_url=url,
                model=model_name,
                timeout=30.0,
                max_retries=1,
                max_consecutive_failures=1)
        else:
            raise UserError(f'vocabulary source {kind!r} is unknown; choose '
                            f'one of {", ".join(SOURCES)}')
        if key == ('lexicon', ) and self.default_source is not None and type(
                self.default_source).__name__ == 'LexiconVocabulary':
            return self.default_source
        if key not in self.sources:
            try:
                source = build_vocabulary(spec)
            except ValueError as error:
                raise UserError(str(error)) from None
            source.bind(self.model.clip)
            self.sources[key] = source
        return self.sources[key]

    def segment(self, path: str, classes, source, progress) -> dict:
        """Segment one image file; what the page shows."""
        from ov_eva.apis import inference_model
        from ov_eva.visualization import (class_palette, class_records,
                                          draw_overlay, present_rows,
                                          share_text)
        from ov_eva.vocabulary import FatalVocabularyError
        from ov_eva.vocabulary.base import read_rgb
        model = self.model
        try:
            image = read_rgb(path)
        except ValueError as error:
            raise UserError(f'the upload is not an image we can read '
                            f'({error}); upload a JPEG, PNG, BMP, WebP or '
                            'TIFF photo') from None
        notes = []
        if classes is None and source is None:
            raise UserError('with no classes typed, the classes are found '
                            'in the vocabulary: choose a vocabulary source '
                            '(the lexicon works offline) or type classes')
        terms = []  # per request, in the data sample: the model keeps none
        if source is not None:
            progress(0.2, desc='vocabulary')
            try:
                result = source.fetch(path, [] if classes is None else classes)
            except FatalVocabularyError as error:
                result = None
                failure = str(error)
            else:
                failure = result.error if result.status == 'failed' else None
            if failure is not None:
                if classes is None:
                    raise UserError(
                        f'the vocabulary source failed ({failure}); check '
                        'the server, choose the lexicon, or type classes')
                notes.append(f'The vocabulary source failed ({failure}); '
                             'segmented with the class names alone.')
            else:
                terms = [(t.text, t.suggested_class) for t in result.terms]
        found = None
        if classes is None:
            try:
                found = model.class_bank.find_classes([t for t, _ in terms],
                                                      path)
            except RuntimeError as error:
                raise UserError(str(error)) from None
        progress(0.5, desc='segmenting')
        sample = inference_model(model, path, terms, found or classes)
        progress(0.9, desc='drawing')
        label = sample.pred_sem_seg.data[0].cpu().numpy()
        class_list = sample.ov_eva_classes
        vocabulary = list(sample.metainfo.get('ov_eva_vocabulary') or [])
        scores = sample.seg_logits.data.float()
        k = min(TOP_K, scores.shape[0])
        top = scores.topk(k, dim=0)
        step = max(1, int(np.ceil(np.sqrt(label.size / MAX_STATE_PIXELS))))
        probabilities = top.values[:, ::step, ::step].exp().numpy()
        top_classes = top.indices[:, ::step, ::step].numpy().astype(np.int32)
        del sample, scores, top
        palette = class_palette(len(class_list))
        names = [synonyms[0] for synonyms in class_list]
        counts, rows = present_rows(label, names, len(class_list))
        overlay = draw_overlay(image, label, palette, rows, 0.5)
        return dict(
            overlay=overlay,
            image_size=image.shape[:2],
            classes=class_records(class_list, palette),
            found=found is not None,
            areas=[[name, share_text(share),
                    int(counts[c])] for c, name, share in rows],
            # mapped terms first, heaviest first; then the dropped ones
            terms=[[
                row['term'], row['mapped_class'] or '(not mapped)',
                row['weight']
            ] for row in sorted(
                vocabulary,
                key=lambda r: (r['mapped_class'] is None, -r['weight']))],
            pixel=dict(
                names=names,
                step=step,
                shape=list(label.shape),
                probabilities=probabilities,
                classes=top_classes),
            notes=notes)

    def segment_video(self, path: str, classes, source, progress) -> dict:
        """Segment the frames of one video in stream mode (a vocabulary per
        scene, the frames never waiting for it); what the page shows."""
        from ov_eva.stream import check_stream_input, segment_stream
        from ov_eva.visualization import class_palette
        if classes is None:
            raise UserError('a video needs classes: type them (stream mode '
                            'does not find classes per frame)')
        try:
            check_stream_input(path)
        except (ValueError, ImportError) as error:
            raise UserError(f'the upload is not a video we can read '
                            f'({error}); upload an mp4, webm or mkv video')
        out = tempfile.mkdtemp(prefix='ov-eva-video-')
        lines = []
        stats = segment_stream(
            self.model,
            path,
            out,
            class_palette(len(classes)),
            say=lines.append,
            classes=classes,
            source=source,
            progress=lambda n: progress((n, None), desc='frames'),
            max_frames=MAX_VIDEO_FRAMES,
            video_name='overlay.webm')  # VP9: every browser plays it
        notes = [line for line in lines if line.startswith('note:')]
        return dict(video=str(stats.video), summary=lines[-1], notes=notes,
                    frames=stats.frames)


def pixel_text(state, x: int, y: int) -> str:
    """A pixel's top classes, from the click lookup of the last result."""
    if not state:
        return 'Segment a photo first, then click the overlay.'
    height, width = state['shape']
    if not (0 <= x < width and 0 <= y < height):
        return 'That is the legend: click the photo part of the overlay.'
    step = state['step']
    i, j = y // step, x // step
    lines = [f'Pixel ({x}, {y}):']
    for rank in range(state['classes'].shape[0]):
        k = int(state['classes'][rank, i, j])
        p = float(state['probabilities'][rank, i, j])
        lines.append(f'{rank + 1}. {state["names"][k]}: {100 * p:.1f}%')
    return '\n'.join(lines)


def quiet_gradio() -> None:
    """Before gradio is imported: no analytics, no version check, no
    telemetry (the page works with no network)."""
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
    os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')


def build_page(segmenter: Segmenter):
    quiet_gradio()
    import gradio as gr

    def segment(upload,
                class_text,
                source_kind,
                server_url,
                server_model,
                base,
                progress=gr.Progress()):
        empty = (None, [], [], '', None)
        start = time.perf_counter()
        try:
            if upload is None:
                raise UserError('upload a photo or pick a demo photo first')
            path = upload if isinstance(upload, str) else getattr(
                upload, 'name', None) or upload['path']
            classes = parse_class_text(class_text)
            with segmenter.lock:
                progress(0.05, desc='loading')
                segmenter.use_base(base)
                source = segmenter.source(source_kind, server_url,
                                          server_model)
                result = segmenter.segment(path, classes, source, progress)
        except UserError as error:
            return (*empty[:3], f'**Error:** {error}', None)
        except Exception as error:  # noqa: B902 (the page keeps working)
            return (*empty[:3], f'**Error:** {type(error).__name__}: '
                    f'{error}', None)
        height, width = result['image_size']
        found = len(result['classes']) - (1 if result['found'] else 0)
        kind = (f'{found} classes found in the photo (and a background '
                'class)'
                if result['found'] else f'{len(result["classes"])} classes')
        status = ' '.join([
            f'**Done:** {width}x{height} photo, {kind}, base '
            f'{segmenter.base}, vocabulary: {source_kind}, '
            f'{time.perf_counter() - start:.1f} s.', *result['notes']
        ])
        return (result['overlay'], result['areas'], result['terms'], status,
                result['pixel'])

    def select(state, event: gr.SelectData):
        x, y = event.index[:2]
        return pixel_text(state, int(x), int(y))

    demos = [[str(p)] for p in sorted((REPO / 'demo').glob('*.jpg'))]
    with gr.Blocks(title='OV-EVA', analytics_enabled=False) as page:
        gr.Markdown(
            '# OV-EVA: open-vocabulary segmentation\n'
            'Upload a photo, type classes (comma-separated; synonyms of one '
            'class in parentheses or after `|`) or leave them empty to find '
            'what is '
            'in the photo, and press **Segment**.')
        with gr.Row():
            with gr.Column():
                upload = gr.File(
                    label='Photo',
                    file_types=['image'],
                    type='filepath',
                    elem_id='photo')
                gr.Examples(demos, inputs=[upload], label='Demo photos')
                classes = gr.Textbox(
                    label='Classes (empty: found in the photo)',
                    placeholder='cat, sofa, wall (brick wall)',
                    lines=3,
                    elem_id='classes')
                source = gr.Radio(
                    list(SOURCES),
                    value='lexicon',
                    label='Vocabulary source',
                    elem_id='source')
                with gr.Row():
                    server_url = gr.Textbox(
                        label='Server URL (OpenAI-compatible)',
                        placeholder='http://localhost:8000/v1',
                        elem_id='server-url')
                    server_model = gr.Textbox(
                        label='Model', value='gpt-4o', elem_id='server-model')
                base = gr.Dropdown(
                    list(BASES),
                    value=segmenter.base,
                    label='Base',
                    elem_id='base')
                run_button = gr.Button(
                    'Segment', variant='primary', elem_id='run')
            with gr.Column():
                status = gr.Markdown(elem_id='status')
                overlay = gr.Image(
                    label='Overlay',
                    show_label=False,
                    type='pil',
                    format='png',
                    interactive=False,
                    elem_id='overlay')
                pixel = gr.Textbox(
                    label='Pixel (click the overlay for its top classes)',
                    lines=4,
                    interactive=False,
                    elem_id='pixel')
                areas = gr.Dataframe(
                    headers=['class', 'area', 'pixels'],
                    label='Area of each class',
                    interactive=False,
                    elem_id='areas')
                terms = gr.Dataframe(
                    headers=['term', 'mapped to', 'weight'],
                    label='Vocabulary terms',
                    interactive=False,
                    elem_id='terms')
        state = gr.State()
        run_button.click(
            segment,
            inputs=[upload, classes, source, server_url, server_model, base],
            outputs=[overlay, areas, terms, status, state],
            api_name='segment')
        overlay.select(select, inputs=[state], outputs=[pixel])
        video_section(segmenter, classes, source, server_url, server_model,
                      base)
    return page


def video_section(segmenter, classes, source, server_url, server_model,
                  base):
    """A video (upload or webcam) through stream mode, with the classes,
    source and base chosen above; inside the page's Blocks."""
    import gradio as gr

    def segment_video(video, class_text, source_kind, url, model_name,
                      base_name, progress=gr.Progress()):
        try:
            if not video:
                raise UserError('upload or record a video first')
            classes = parse_class_text(class_text)
            with segmenter.lock:
                segmenter.use_base(base_name)
                vocabulary = segmenter.source(source_kind, url, model_name)
                result = segmenter.segment_video(video, classes, vocabulary,
                                                 progress)
        except UserError as error:
            return None, f'**Error:** {error}'
        except Exception as error:  # noqa: B902 (the page keeps working)
            return None, f'**Error:** {type(error).__name__}: {error}'
        capped = (f' (the first {MAX_VIDEO_FRAMES} frames)'
                  if result['frames'] >= MAX_VIDEO_FRAMES else '')
        status = ' '.join([
            f'**Done:** {result["summary"].split(";")[0]}{capped}.',
            *result['notes']
        ])
        return result['video'], status

    gr.Markdown('## Video\nA video file or a webcam recording, with the '
                'classes, vocabulary source and base above: a vocabulary '
                'per scene, asked in the background while the frames go on '
                '(stream mode).')
    with gr.Row():
        with gr.Column():
            video = gr.Video(
                label='Video',
                sources=['upload', 'webcam'],
                elem_id='video')
            video_button = gr.Button('Segment video', elem_id='run-video')
        with gr.Column():
            video_status = gr.Markdown(elem_id='video-status')
            video_overlay = gr.Video(
                label='Overlay video', interactive=False,
                elem_id='video-overlay')
    video_button.click(
        segment_video,
        inputs=[video, classes, source, server_url, server_model, base],
        outputs=[video_overlay, video_status],
        api_name='segment_video')


def main(argv=None):
    args = parse_args(argv)
    check_config_file(args.config, '--config')
    check_options(args.cfg_options, args.config)
    if not 0 < args.port < 65536:
        raise UserError(f'--port {args.port} is outside 1..65535')
    import ov_eva  # noqa: F401
    from ov_eva.apis import image_config
    from ov_eva.memory import reuse_freed_memory
    # classes='auto' until a request
    cfg = image_config(args.config, cfg_options=args.cfg_options)
    Context.cfg = cfg
    segmenter = Segmenter(cfg)  # missing weights: one line, before the page
    reuse_freed_memory()  # for the requests' buffers
    lexicon = segmenter.default_source
    if hasattr(lexicon, 'lexicon_embeddings'):  # before the first request
        print(
            'embedding the lexicon (once: cached on disk afterwards)',
            flush=True)
        lexicon.lexicon_embeddings()
    page = build_page(segmenter)
    page.queue(default_concurrency_limit=1, max_size=32)
    print(
        f'OV-EVA page on http://{args.host}:{args.port} (Ctrl-C stops)',
        flush=True)
    import gradio as gr

    # system fonts: the default theme would fetch web fonts from a CDN
    theme = gr.themes.Default(
        font=['ui-sans-serif', 'system-ui', 'sans-serif'],
        font_mono=['ui-monospace', 'monospace'])
    page.launch(
        theme=theme,
        server_name=args.host,
        server_port=args.port,
        share=False,
        ssr_mode=False,
        show_error=True,
        allowed_paths=[str(REPO / 'demo'),
                       tempfile.gettempdir()],
        quiet=True)
    return 0


if __name__ == '__main__':
    run(main)
