r"""A web page for OV-EVA (Gradio): segment a photo in the browser.

    python tools/app.py [--port 7860] [--host 127.0.0.1] [--config C] \
        [--cfg-options model.clip.name=ov-eva-tiny model.clip.pretrained=None]

Upload a photo (previewed) or click a demo photo's thumbnail, type classes
(comma-separated; synonyms of one class in parentheses or after ``|``) or
leave them empty to find what is in the photo (``model.classes='auto'``),
choose the vocabulary source (the offline lexicon, an OpenAI-compatible
server by URL and model, the key from ``$OPENAI_API_KEY``, or none) and the
base, and press Segment. The page shows the overlay with its legend under
it, each class's area, the vocabulary terms with the class each was mapped
to and its refinement weight, and a pixel's top classes when the overlay is
clicked. **Compare with the base** segments the photo twice, with the class
names alone (the base) and with the vocabulary (OV-EVA), and shows the two
overlays side by side with the pixels whose class changed outlined in
magenta, and which class moved to which with the terms of both classes.
Under them, a video (uploaded or recorded with the webcam) is segmented in
stream mode (``ov_eva.stream``: a vocabulary per scene, asked in the
background) into an overlay video.

One model is loaded at start (``configs/oveva_vitb16_ade.py`` unless
``--config``; ``--cfg-options`` applied last) and requests queue for it, one
at a time. Nothing phones home: Gradio's analytics are off, no share link is
made and the page needs no web font. The same functions answer
``gradio_client`` (``api_name='/segment'`` and ``'/compare'``). ``app.py``
at the repository root starts this page as a Hugging Face Space does (see
docs/page.md).
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

    def _prepare(self, path: str, classes, source, progress):
        """The photo, its vocabulary terms ([(term, suggested class)]), the
        classes found in it (None when typed) and notes for the page."""
        from ov_eva.vocabulary import FatalVocabularyError
        from ov_eva.vocabulary.base import read_rgb
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
                found = self.model.class_bank.find_classes(
                    [t for t, _ in terms], path)
            except RuntimeError as error:
                raise UserError(str(error)) from None
        return image, terms, found, notes

    def segment(self, path: str, classes, source, progress) -> dict:
        """Segment one image file; what the page shows."""
        from ov_eva.apis import inference_model
        from ov_eva.visualization import (blend_labels, class_palette,
                                          class_records, present_rows,
                                          share_text)
        model = self.model
        image, terms, found, notes = self._prepare(path, classes, source,
                                                   progress)
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
        return dict(
            overlay=blend_labels(image, label, palette, 0.5),
            legend=legend_html(rows, palette),
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
        return dict(
            video=str(stats.video),
            summary=lines[-1],
            notes=notes,
            frames=stats.frames)

    def compare(self, path: str, classes, source, progress) -> dict:
        """The photo segmented by the base (the class names alone) and by
        OV-EVA (with its vocabulary), on the same classes: both overlays
        with the pixels whose class changed outlined, and the moves."""
        from ov_eva.apis import inference_model
        from ov_eva.figures import changed_outline, mark_changed
        from ov_eva.visualization import blend_labels, class_palette
        if source is None:
            raise UserError('with no vocabulary source OV-EVA is its base: '
                            'choose the lexicon or a server to compare')
        image, terms, found, notes = self._prepare(path, classes, source,
                                                   progress)
        labels, vocabulary = [], []
        for k, request_terms in enumerate(([], terms)):
            progress(0.4 + 0.25 * k, desc='segmenting')
            sample = inference_model(self.model, path, request_terms, found
                                     or classes)
            labels.append(sample.pred_sem_seg.data[0].cpu().numpy())
            vocabulary = list(sample.metainfo.get('ov_eva_vocabulary') or [])
            class_list = sample.ov_eva_classes
            del sample
        base, oveva = labels
        palette = class_palette(len(class_list))
        names = [synonyms[0] for synonyms in class_list]
        outline = changed_outline(base, oveva)
        overlays = [
            mark_changed(blend_labels(image, label, palette, 0.5), outline)
            for label in labels
        ]
        counts = np.bincount(
            np.concatenate([base.ravel(), oveva.ravel()]),
            minlength=len(names))
        shown = sorted(np.flatnonzero(counts), key=lambda c: -counts[c])
        rows = [(int(c), names[c], 50.0 * counts[c] / base.size)
                for c in shown]
        return dict(
            base=overlays[0],
            oveva=overlays[1],
            legend=legend_html(rows, palette),
            changed=100.0 * float(np.mean(base != oveva)),
            moves=moved_pixels(base, oveva, names, vocabulary),
            notes=notes)


def moved_pixels(base, oveva, names, vocabulary, limit: int = 12) -> list:
    """Rows (base class, OV-EVA class, pixels, the terms mapped to each of
    the two classes with their weights) of the pixels whose class changed,
    largest moves first."""
    changed = base != oveva
    pairs = base[changed].astype(np.int64) * len(names) + oveva[changed]
    counts = np.bincount(pairs, minlength=len(names)**2)
    terms = {}
    for row in sorted(vocabulary, key=lambda r: -r['weight']):
        if row['mapped_class'] is not None:
            terms.setdefault(row['mapped_class'],
                             []).append(f'{row["term"]} ({row["weight"]:.2f})')
    rows = []
    for pair in np.argsort(-counts, kind='stable')[:limit]:
        if counts[pair] == 0:
            break
        before, after = names[pair // len(names)], names[pair % len(names)]
        rows.append([
            before, after,
            int(counts[pair]), ', '.join(terms.get(after, [])) or '-',
            ', '.join(terms.get(before, [])) or '-'
        ])
    return rows


def legend_html(rows, palette) -> str:
    """The legend as HTML, shown under the overlay (never under the
    image's toolbar): a swatch, the name and the share of each class."""
    from html import escape

    from ov_eva.visualization import share_text
    items = ''.join(
        '<span class="ov-legend-item" style="display:inline-flex;'
        'align-items:center;margin:2px 12px 2px 0"><span '
        'class="ov-swatch" style="display:inline-block;width:14px;'
        f'height:14px;margin-right:5px;border:1px solid #000;background:'
        f'rgb{tuple(int(c) for c in palette[k])}"></span>'
        f'{escape(name)} {share_text(share)}</span>'
        for k, name, share in rows)
    return f'<div class="ov-legend">{items}</div>'


def pixel_text(state, x: int, y: int) -> str:
    """A pixel's top classes, from the click lookup of the last result."""
    if not state:
        return 'Segment a photo first, then click the overlay.'
    height, width = state['shape']
    if not (0 <= x < width and 0 <= y < height):
        return 'Click inside the overlay.'
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


def upload_path(upload) -> str:
    """The file of the photo input's value: a path, or Gradio's file data
    (the page's events take it unprocessed, so that a file that is not an
    image gets the page's message, not Gradio's)."""
    if upload is None:
        raise UserError('upload a photo or pick a demo photo first')
    if isinstance(upload, str):
        return upload
    return getattr(upload, 'path', None) or upload['path']


def run_request(segmenter: Segmenter, method: str, inputs, progress):
    """``segmenter.segment`` or ``.compare`` on the page's inputs (upload,
    classes, source, server URL, server model, base): (result, seconds,
    None) or (None, seconds, the error line for the status)."""
    upload, class_text, source_kind, server_url, server_model, base = inputs
    start = time.perf_counter()
    try:
        path = upload_path(upload)
        classes = parse_class_text(class_text)
        with segmenter.lock:
            progress(0.05, desc='loading')
            segmenter.use_base(base)
            source = segmenter.source(source_kind, server_url, server_model)
            result = getattr(segmenter, method)(path, classes, source,
                                                progress)
    except UserError as error:
        return None, 0, f'**Error:** {error}'
    except Exception as error:  # noqa: B902 (the page keeps working)
        return None, 0, f'**Error:** {type(error).__name__}: {error}'
    return result, time.perf_counter() - start, None


def segment_status(result: dict, base: str, source_kind: str,
                   seconds: float) -> str:
    """The status line of a segmented photo."""
    height, width = result['image_size']
    found = len(result['classes']) - (1 if result['found'] else 0)
    kind = (f'{found} classes found in the photo (and a background class)'
            if result['found'] else f'{len(result["classes"])} classes')
    return ' '.join([
        f'**Done:** {width}x{height} photo, {kind}, base {base}, '
        f'vocabulary: {source_kind}, {seconds:.1f} s.', *result['notes']
    ])


PAGE_CSS = '.ov-legend {font-size: 14px; line-height: 1.6; padding: 4px 0}'


def build_page(segmenter: Segmenter):
    quiet_gradio()
    import gradio as gr

    def segment(*inputs, progress=gr.Progress()):
        result, seconds, error = run_request(segmenter, 'segment', inputs,
                                             progress)
        if error:
            return None, [], [], error, None, ''
        status = segment_status(result, segmenter.base, inputs[2], seconds)
        return (result['overlay'], result['areas'], result['terms'], status,
                result['pixel'], result['legend'])

    def compare(*inputs, progress=gr.Progress()):
        result, seconds, error = run_request(segmenter, 'compare', inputs,
                                             progress)
        if error:
            return None, None, '', [], error
        status = ' '.join([
            f'**Done:** base {segmenter.base} with the class names alone '
            f'(left) and OV-EVA with the {inputs[2]} vocabulary (right): '
            f'{result["changed"]:.1f}% of the pixels changed class '
            '(outlined in magenta), '
            f'{seconds:.1f} s.', *result['notes']
        ])
        return (result['base'], result['oveva'], result['legend'],
                result['moves'], status)

    def select(state, event: gr.SelectData):
        x, y = event.index[:2]
        return pixel_text(state, int(x), int(y))

    with gr.Blocks(title='OV-EVA', analytics_enabled=False) as page:
        gr.Markdown(
            '# OV-EVA: open-vocabulary segmentation\n'
            'Upload a photo, type classes (comma-separated; synonyms of one '
            'class in parentheses or after `|`) or leave them empty to find '
            'what is in the photo, and press **Segment**; **Compare with the '
            'base** shows what the vocabulary changed.')
        with gr.Row():
            with gr.Column():
                inputs, run_button, compare_button = page_inputs(gr, segmenter)
            with gr.Column():
                out = page_outputs(gr)
        out.update(compare_outputs(gr))
        state = gr.State()
        run_button.click(
            segment,
            inputs=inputs,
            outputs=[
                out['overlay'], out['areas'], out['terms'], out['status'],
                state, out['legend']
            ],
            api_name='segment',
            preprocess=False)
        compare_button.click(
            compare,
            inputs=inputs,
            outputs=[
                out['compare_base'], out['compare_oveva'],
                out['compare_legend'], out['moves'], out['compare_status']
            ],
            api_name='compare',
            preprocess=False)
        out['overlay'].select(select, inputs=[state], outputs=[out['pixel']])
        video_section(segmenter, inputs[1:])
    return page


def page_inputs(gr, segmenter: Segmenter):
    """The left column: the photo (previewed) and the demo photos as
    thumbnails, classes, vocabulary source, base, and the two buttons."""
    demos = [[str(p)] for p in sorted((REPO / 'demo').glob('*.jpg'))]
    upload = gr.Image(
        label='Photo',
        type='filepath',
        sources=['upload'],
        image_mode=None,
        height=320,
        elem_id='photo')
    gr.Examples(
        demos,
        inputs=[upload],
        label='Demo photos (click one)',
        elem_id='demos')
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
        list(BASES), value=segmenter.base, label='Base', elem_id='base')
    with gr.Row():
        run_button = gr.Button('Segment', variant='primary', elem_id='run')
        compare_button = gr.Button(
            'Compare with the base', elem_id='compare-run')
    inputs = [upload, classes, source, server_url, server_model, base]
    return inputs, run_button, compare_button


def page_outputs(gr) -> dict:
    """The right column: status, the overlay with its legend under it (not
    in the picture, where the image toolbar would cover it), the clicked
    pixel's classes, the areas and the vocabulary terms."""
    return dict(
        status=gr.Markdown(elem_id='status'),
        overlay=gr.Image(
            label='Overlay',
            show_label=False,
            type='numpy',
            format='png',
            interactive=False,
            elem_id='overlay'),
        legend=gr.HTML(elem_id='legend'),
        pixel=gr.Textbox(
            label='Pixel (click the overlay for its top classes)',
            lines=4,
            interactive=False,
            elem_id='pixel'),
        areas=gr.Dataframe(
            headers=['class', 'area', 'pixels'],
            label='Area of each class',
            interactive=False,
            elem_id='areas'),
        terms=gr.Dataframe(
            headers=['term', 'mapped to', 'weight'],
            label='Vocabulary terms',
            interactive=False,
            elem_id='terms'))


def compare_outputs(gr) -> dict:
    """Under both columns: the base's overlay and OV-EVA's side by side,
    their legend, and the pixels the vocabulary moved."""
    gr.Markdown('## Compare with the base\n'
                'The base segments with the class names alone; OV-EVA adds '
                'the vocabulary. Pixels whose class changed are outlined in '
                'magenta on both.')
    status = gr.Markdown(elem_id='compare-status')
    with gr.Row():
        base = gr.Image(
            label='Base (class names alone)',
            type='numpy',
            format='png',
            interactive=False,
            elem_id='compare-base')
        oveva = gr.Image(
            label='OV-EVA (with the vocabulary)',
            type='numpy',
            format='png',
            interactive=False,
            elem_id='compare-oveva')
    legend = gr.HTML(elem_id='compare-legend')
    moves = gr.Dataframe(
        headers=[
            'base class', 'OV-EVA class', 'pixels',
            'terms of the OV-EVA class (weight)',
            'terms of the base class (weight)'
        ],
        label='Pixels the vocabulary moved, and the terms of the two classes',
        interactive=False,
        wrap=True,
        elem_id='moves')
    return dict(
        compare_status=status,
        compare_base=base,
        compare_oveva=oveva,
        compare_legend=legend,
        moves=moves)


def video_section(segmenter, settings):
    """A video (upload or webcam) through stream mode, with the classes,
    source, server and base chosen above (``settings``, the page's inputs
    after the photo); inside the page's Blocks."""
    import gradio as gr

    def segment_video(video,
                      class_text,
                      source_kind,
                      url,
                      model_name,
                      base_name,
                      progress=gr.Progress()):
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
                label='Video', sources=['upload', 'webcam'], elem_id='video')
            video_button = gr.Button('Segment video', elem_id='run-video')
        with gr.Column():
            video_status = gr.Markdown(elem_id='video-status')
            video_overlay = gr.Video(
                label='Overlay video',
                interactive=False,
                elem_id='video-overlay')
    video_button.click(
        segment_video,
        inputs=[video, *settings],
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
        css=PAGE_CSS,
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
