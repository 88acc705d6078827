"""Detection heads: ``PredictableSSDHead`` (registered by name; mmdet is
imported when a config builds it, see :mod:`emo_mm.utils.lazy`)."""
from ...utils.lazy import register_lazily

__getattr__ = register_lazily(__name__, 'PredictableSSDHead', 'ssd_head')
__all__ = ['PredictableSSDHead']
