"""Runner hooks: fill the vocabulary cache before the test loop."""
from typing import Optional

from mmengine.dist import (all_gather_object, barrier, get_dist_info,
                           is_distributed)
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from .vocabulary.prefetch import PrefetchSummary, prefetch


def find_segmentor(model):
    """The OVEVASegmentor inside DDP and TTA wrappers."""
    while is_model_wrapper(model) or (hasattr(model, 'module')
                                      and not hasattr(model, 'vocabulary')):
        model = model.module
    return model


@HOOKS.register_module()
class VocabularyPrefetchHook(Hook):
    """Before testing, fetch every test image's vocabulary into the cache,
    ``concurrency`` requests in flight, and log a summary. Under distributed
    launchers each rank fetches its own shard of the images and the ranks
    meet at a barrier, so the test loop then only reads the cache.

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
        summary = prefetch(
            source,
            paths,
            segmentor.classes,
            self.concurrency,
            progress=rank == 0)
        if is_distributed():
            parts = all_gather_object(summary)
            summary = parts[0]
            for part in parts[1:]:
                summary = summary.merge(part)
            barrier()
        self.summary = summary
        print_log(summary.format(), logger='current')
