"""The text side of the segmentor: the classes it scores and their text
embeddings.

A ``ClassBank`` owns the classes, fixed (a class file, a list, the test
dataset's through ``DatasetClassesHook``) or found per image (``'auto'``).
``set_classes`` is the one way to change them, for hooks, tools and the page
alike. What is scored for a batch is a ``QuerySet``: every synonym of every
class is a query with its own score map.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import Tensor

from . import scoring
from .class_lists import ClassSpec, load_classes
from .text_bank import TextBank


@dataclass(frozen=True)
class QuerySet:
    """The classes of one scoring pass and their queries.

    Attributes:
        classes: each class as its list of synonyms.
        query_class: (Q,) class index of every query (synonym).
        embeddings: (Q, D) L2-normalised query embeddings.
    """
    classes: List[List[str]]
    query_class: Tensor
    embeddings: Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> List[str]:
        return [synonyms[0] for synonyms in self.classes]

    @property
    def queries(self) -> List[str]:
        return [s for synonyms in self.classes for s in synonyms]


def check_classes(classes: List[List[str]], bg_idx: int) -> None:
    if len(classes) < 2:
        raise ValueError(
            f'model.classes has {len(classes)} class; segmentation '
            "picks one of several, so add e.g. 'background'")
    if not 0 <= bg_idx < len(classes):
        raise ValueError(f'bg_idx={bg_idx} is outside the '
                         f'{len(classes)} classes')


class ClassBank:
    """Classes and their template-averaged text embeddings.

    Args:
        encoder: the backend (``encode_text``, ``text_fingerprint``).
        classes: a ``ClassSpec`` (file, shipped name, list), None (set
            later, e.g. by ``DatasetClassesHook``) or ``'auto'`` (found per
            image by ``find_classes``).
        templates / term_templates: prompt template sets of classes and of
            vocabulary terms.
        cache_dir: the text-embedding disk cache (see ``TextBank``).
        bg_idx: index of the background class.
        max_auto_classes / auto_merge_thr / auto_background: how
            ``find_classes`` groups an image's terms (see the segmentor).
    """

    def __init__(self,
                 encoder,
                 classes: Optional[ClassSpec] = None,
                 templates='imagenet80',
                 term_templates='simple7',
                 cache_dir=None,
                 bg_idx: int = 0,
                 max_auto_classes: int = 10,
                 auto_merge_thr: float = 0.9,
                 auto_background: Optional[str] = 'background'):
        if not isinstance(max_auto_classes, int) or max_auto_classes < 1:
            raise ValueError(f'model.max_auto_classes={max_auto_classes!r}: '
                             'give a whole number >= 1')
        self.auto = isinstance(classes, str) and classes == 'auto'
        self.bg_idx = bg_idx
        self.max_auto_classes = max_auto_classes
        self.auto_merge_thr = auto_merge_thr
        self.auto_background = auto_background
        self.text_bank = TextBank(encoder, templates, cache_dir)
        self.term_bank = TextBank(encoder, term_templates, cache_dir)
        self.classes: Optional[List[List[str]]] = None
        # classes='auto' on a dataset: its classes, to match found names to
        self.target_classes: Optional[List[List[str]]] = None
        self._fixed: Optional[QuerySet] = None  # embeddings of ``classes``
        if classes is not None:
            self.set_classes(classes)

    def set_classes(self, classes: Union[str, ClassSpec]) -> None:
        """The classes to score: a ``ClassSpec`` (each class a list of
        synonyms once read, see ``load_classes``), or ``'auto'``: each
        image's classes are found in its vocabulary from now on."""
        self._fixed = None
        self.auto = isinstance(classes, str) and classes == 'auto'
        if self.auto:
            self.classes = None
            return
        parsed = isinstance(classes, (list, tuple)) and classes and all(
            isinstance(c, (list, tuple)) for c in classes)
        classes = [list(c) for c in classes] if parsed else load_classes(
            classes)
        check_classes(classes, self.bg_idx)
        self.classes = classes

    def set_target_classes(self, classes: Sequence[Sequence[str]]) -> None:
        """With ``'auto'`` on a dataset: the dataset's classes, which every
        found class is scored as (``match_targets``)."""
        self.target_classes = [list(synonyms) for synonyms in classes]

    @property
    def fetch_classes(self) -> Optional[List[List[str]]]:
        """The classes a vocabulary source is asked about: none with
        ``'auto'`` (the source says what the image holds)."""
        return [] if self.auto else self.classes

    def query_set(self,
                  classes: Optional[List[List[str]]] = None) -> QuerySet:
        """The queries of ``classes`` (an image's found classes), or of the
        bank's classes, encoded on first use and kept."""
        if classes is not None:
            return self._encode(classes)
        if self.classes is None:
            raise ValueError(
                'model.classes is not set: give a class file, a shipped '
                "name (e.g. 'ade20k') or a list, or test on a dataset, "
                'whose classes are then taken')
        if self._fixed is None:
            self._fixed = self._encode(self.classes)
        return self._fixed

    def _encode(self, classes: List[List[str]]) -> QuerySet:
        queries = [s for synonyms in classes for s in synonyms]
        embeddings = self.text_bank.embed(queries)
        query_class = torch.tensor(
            [k for k, synonyms in enumerate(classes) for _ in synonyms],
            device=embeddings.device)
        return QuerySet(classes, query_class, embeddings)

    def embed_terms(self, terms: Sequence[str]) -> Tensor:
        """(T, D) embeddings of vocabulary terms (their own templates)."""
        return self.term_bank.embed(list(terms))

    def find_classes(self, terms: Sequence[str],
                     image: str) -> List[List[str]]:
        """``'auto'``: one image's classes from its vocabulary terms (best
        first), grouped into synonyms by CLIP text similarity
        (``auto_merge_thr``, at most ``max_auto_classes`` groups), after
        the ``auto_background`` class."""
        background = self.auto_background
        terms = [t for t in terms if t != background]
        if not terms:
            raise RuntimeError(
                "model.classes='auto': the vocabulary source named nothing "
                f'in {image!r}; check the source, or give a class list')
        groups = scoring.group_terms(
            self.embed_terms(terms), self.auto_merge_thr,
            self.max_auto_classes)
        classes = [[terms[i] for i in group] for group in groups]
        if background:
            classes.insert(0, [background])
        if len(classes) < 2:
            raise RuntimeError(
                f"model.classes='auto': only {classes[0][0]!r} was found in "
                f'{image!r} and model.auto_background is None; set a '
                'background name or give a class list')
        return classes

    def match_targets(self, class_names: Sequence[str]) -> Tensor:
        """(K,) the nearest target (dataset) class of each found class by
        text similarity against every synonym of every target class."""
        targets = self.query_set(self.target_classes)
        found = self.text_bank.embed(list(class_names))
        similarity = scoring.term_class_similarity(
            found.float(), targets.embeddings.float(), targets.query_class,
            targets.num_classes)
        return scoring.match_names(similarity).cpu()


def to_target_classes(sample: SegDataSample, matched: Tensor,
                      queries: QuerySet, targets: List[List[str]]) -> None:
    """``classes='auto'`` on a dataset: found classes -> their nearest
    dataset classes (``matched``), ``pred_sem_seg`` and ``seg_logits`` in
    dataset classes, the found labels kept as ``auto_sem_seg``."""
    pred, scores = sample.pred_sem_seg.data, sample.seg_logits.data
    index = matched.to(scores.device)[:, None, None].expand_as(scores)
    target_scores = scores.new_full((len(targets), *scores.shape[1:]),
                                    -torch.inf)
    target_scores.scatter_reduce_(0, index, scores, reduce='amax')
    sample.set_data(
        dict(
            auto_sem_seg=PixelData(data=pred),
            pred_sem_seg=PixelData(data=matched.to(pred.device)[pred]),
            seg_logits=PixelData(data=target_scores)))
    sample.set_metainfo(
        dict(ov_eva_class_match=[
            dict(found=name, dataset_class=targets[int(k)][0])
            for name, k in zip(queries.class_names, matched)
        ]))
