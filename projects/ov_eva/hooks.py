"""Runner hooks: the model's classes against the test dataset's, and the
vocabulary cache filled before the test loop."""
import json
import logging
import os
from typing import Optional

import cv2
import numpy as np
from mmengine.dist import (all_gather_object, barrier, get_dist_info,
                           is_distributed)
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from .data_checks import check_labels
from .text_bank import read_class_file
from .vocabulary.prefetch import PrefetchSummary, prefetch


def find_segmentor(model):
    """The OVEVASegmentor inside DDP and TTA wrappers."""
    while is_model_wrapper(model) or (hasattr(model, 'module')
                                      and not hasattr(model, 'vocabulary')):
        model = model.module
    return model


def _names(classes, count=4) -> str:
    names = [c[0] if isinstance(c, (list, tuple)) else c for c in classes]
    more = f', ... ({len(names)} in all)' if len(names) > count else ''
    return ', '.join(repr(n) for n in names[:count]) + more


def _ignore_index(runner) -> int:
    """The label value the test metric ignores (IoUMetric: 255)."""
    for metric in getattr(runner.test_evaluator, 'metrics', []):
        if hasattr(metric, 'ignore_index'):
            return metric.ignore_index
    return 255


@HOOKS.register_module()
class DatasetClassesHook(Hook):
    """Before testing, the model's classes against the test dataset's:
    ``model.classes=None`` takes the dataset's (all synonyms of its class
    file for ``ClassFileSegDataset``, else the names in its metainfo), and
    a different number of classes stops the run before the first image,
    naming both (the metric would score class k of the model against class
    k of the labels), and so does a label value that is no class of the
    dataset (``data_checks.check_labels``). After the table, the files a
    dataset left out (``skip_corrupt``) are listed."""
    priority = 'HIGHEST'  # before the vocabulary prefetch, which needs them

    def before_test(self, runner) -> None:
        self._match_classes(runner)
        dataset = runner.test_dataloader.dataset
        check_labels(dataset, _ignore_index(runner))
        ignored = getattr(dataset, 'ignore_values', None)
        if ignored:
            print_log(
                f'ignore_values: label values {ignored} mean "unlabelled" '
                'in the test dataset: read as 255, not scored',
                logger='current')

    def after_test_epoch(self, runner, metrics=None) -> None:
        skipped = getattr(runner.test_dataloader.dataset, 'skipped_files',
                          None)
        if skipped:
            files = '; '.join(f'{p} ({why})' for p, why in skipped.items())
            print_log(
                f'skip_corrupt: {len(skipped)} file(s) left out, the '
                f'metrics above are without them: {files}',
                logger='current',
                level=logging.WARNING)

    def _match_classes(self, runner) -> None:
        segmentor = find_segmentor(runner.model)
        bank = getattr(segmentor, 'class_bank', None)
        if bank is None:
            return
        dataset = runner.test_dataloader.dataset
        names = list(dataset.metainfo.get('classes') or [])
        kind = type(dataset).__name__
        if bank.auto:
            if names:  # found names are scored as their nearest classes
                class_file = getattr(dataset, 'class_file', None)
                bank.set_target_classes(
                    read_class_file(class_file
                                    ) if class_file else [[n] for n in names])
                print_log(
                    "model.classes='auto': each image's found classes are "
                    f'scored as their nearest of the {len(names)} classes '
                    f'of the test dataset ({kind}) by text similarity',
                    logger='current')
            return
        if bank.classes is None:
            if not names:
                raise ValueError(
                    f'model.classes is None and the test dataset ({kind}) '
                    'names no classes in its metainfo: set model.classes to '
                    'a class file or list')
            class_file = getattr(dataset, 'class_file', None)
            classes = read_class_file(class_file) if class_file else [
                [name] for name in names
            ]
            bank.set_classes(classes)
            print_log(
                f'model.classes: the {len(classes)} classes of the test '
                f'dataset ({kind}{f", {class_file}" if class_file else ""})',
                logger='current')
        elif names and len(names) != len(bank.classes):
            raise ValueError(
                f'model.classes has {len(bank.classes)} classes '
                f'({_names(bank.classes)}) but the test dataset '
                f'({kind}) has {len(names)} ({_names(names)}): give '
                'model.classes the dataset\'s classes in its label order, or '
                'model.classes=None to take them from the dataset')


@HOOKS.register_module()
class VocabularyPrefetchHook(Hook):
    """Before testing, fetch every test image's vocabulary into the cache,
    ``concurrency`` requests in flight (or through the Batch API when the
    source is in batch mode), and log a summary. Its first line is the
    source's estimate of calls, tokens and dollars (``OpenAIVocabulary``);
    the summary puts the estimate beside what the server reported. Under
    distributed launchers each rank fetches its own shard of the images and
    the ranks meet at a barrier, so the test loop then only reads the
    cache; a budget (``max_cost``, ``max_total_tokens``) is split evenly
    between the ranks.

    Args:
        concurrency: requests in flight; None uses the source's limit
            (16 for ``OpenAIVocabulary``, 1 for local models).
    """
    priority = 'VERY_HIGH'

    def __init__(self, concurrency: Optional[int] = None):
        self.concurrency = concurrency
        self.summary: Optional[PrefetchSummary] = None

    def before_test(self, runner) -> None:
        segmentor = find_segmentor(runner.model)
        source = getattr(segmentor, 'vocabulary', None)
        if source is None:
            print_log(
                'VocabularyPrefetchHook: the model has no vocabulary '
                'source; nothing to prefetch',
                logger='current')
            return
        dataset = runner.test_dataloader.dataset
        rank, world_size = get_dist_info()
        paths = [
            dataset.get_data_info(i)['img_path']
            for i in range(rank, len(dataset), world_size)
        ]
        budget = getattr(source, 'budget', None)
        if world_size > 1 and budget is not None and budget.active:
            budget.share(world_size)  # the ranks' shares add up to the cap
        summary = prefetch(
            source,
            paths,
            segmentor.class_bank.fetch_classes,
            self.concurrency,
            progress=rank == 0,
            report=lambda line: print_log(line, logger='current'))
        if is_distributed():
            parts = all_gather_object(summary)
            summary = parts[0]
            for part in parts[1:]:
                summary = summary.merge(part)
            barrier()
        self.summary = summary
        print_log(summary.format(), logger='current')


@HOOKS.register_module()
class SavePredictionsHook(Hook):
    """Each test image's predicted class indices and its ground truth as
    label PNGs (uint8; uint16 beyond 255 classes or a wide ignore index),
    in the model's class order with no offset: ``<out_dir>/pred/<name>.png``
    and ``<out_dir>/gt/<name>.png``, where ``<name>`` is the image's path
    under the dataset's image folder, ``/`` as ``__``, without suffix. After
    the loop ``<out_dir>/index.json`` lists the classes, the ignore index
    and each image (``name``, ``image``: its path). ``tools/test.py
    --save-predictions DIR`` adds it; ``tools/compare.py --figures`` reads
    it. mmseg's ``--out`` (``IoUMetric.output_dir``) writes the dataset's
    own label format instead (+1 with ``reduce_zero_label``, uint8 only).

    Args:
        out_dir: the folder (made if missing).
    """
    priority = 'LOW'

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.images = []

    def before_test(self, runner) -> None:
        for sub in ('pred', 'gt'):
            os.makedirs(os.path.join(self.out_dir, sub), exist_ok=True)
        self.images = []
        dataset = runner.test_dataloader.dataset
        self.image_root = dataset.data_prefix.get('img_path', '')

    def _name(self, image_path: str) -> str:
        relative = os.path.relpath(image_path, self.image_root) \
            if self.image_root else os.path.basename(image_path)
        if relative.startswith('..'):
            relative = os.path.basename(image_path)
        return os.path.splitext(relative)[0].replace(os.sep, '__')

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch=None,
                        outputs=None) -> None:
        for sample in outputs or []:
            name = self._name(sample.img_path)
            pred = sample.pred_sem_seg.data[0].cpu().numpy()
            files = [('pred', pred)]
            if 'gt_sem_seg' in sample:
                files.append(('gt', sample.gt_sem_seg.data[0].cpu().numpy()))
            for sub, label in files:
                dtype = np.uint8 if label.max(initial=0) < 256 else np.uint16
                cv2.imwrite(
                    os.path.join(self.out_dir, sub, f'{name}.png'),
                    label.astype(dtype))
            self.images.append(dict(name=name, image=sample.img_path))

    def after_test_epoch(self, runner, metrics=None) -> None:
        images = self.images
        if is_distributed():
            images = [i for part in all_gather_object(images) for i in part]
        if get_dist_info()[0] != 0:
            return
        dataset = runner.test_dataloader.dataset
        index = dict(
            classes=list(dataset.metainfo.get('classes') or []),
            ignore_index=_ignore_index(runner),
            images=sorted(images, key=lambda i: i['name']))
        with open(os.path.join(self.out_dir, 'index.json'), 'w') as f:
            json.dump(index, f, indent=1)
