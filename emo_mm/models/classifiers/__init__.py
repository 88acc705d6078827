"""Classifiers: ``EMOImageClassifier`` (registered by name; mmpretrain is
imported when a config builds it, see :mod:`emo_mm.utils.lazy`)."""
from ...utils.lazy import register_lazily

__getattr__ = register_lazily(__name__, 'EMOImageClassifier', 'emo_classifier')
__all__ = ['EMOImageClassifier']
