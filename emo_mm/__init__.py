"""emo_mm: EMO backbones for OpenMMLab 2.0 (mmdet 3.x, mmseg 1.x, mmpretrain 1.x).

Importing the package (``custom_imports=dict(imports=['emo_mm'])``) registers
``EMO`` in MMEngine's root ``MODELS`` registry, so every downstream scope finds
it, and makes every checkpoint load (paths and URLs, ``load_from``, ``--resume``,
``init_cfg``) unpickle with ``weights_only=True`` (:mod:`emo_mm.utils.safe_load`).
"""
from . import engine  # noqa: F401  (CPU DDP, RandomStateHook, TimmCosineLR)
from .models import EMO  # noqa: F401  (registers the backbone)
from .utils import secure_checkpoint_loading

try:  # detection add-ons, only where mmdet is installed
    from .models import ssd_head  # noqa: F401
except ImportError:  # pragma: no cover
    pass
try:  # segmentation add-ons, only where mmseg is installed
    from . import visualization  # noqa: F401  (LegendSegVisualizer)
except ImportError:  # pragma: no cover
    pass
try:  # classification add-ons, only where mmpretrain is installed
    from .models import classifier  # noqa: F401
except ImportError:  # pragma: no cover
    pass
from .version import __version__

secure_checkpoint_loading()

__all__ = ['__version__', 'EMO']
