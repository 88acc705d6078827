"""emo_mm: EMO and EMOv2 backbones for OpenMMLab 2.0 (mmdet 3.x, mmseg 1.x,
mmpretrain 1.x).

Importing the package (``custom_imports=dict(imports=['emo_mm'])``)
registers ``EMO`` and ``EMOv2`` in MMEngine's root ``MODELS`` registry, so
every downstream scope finds them, and makes every checkpoint load (paths
and URLs, ``load_from``, ``--resume``, ``init_cfg``) unpickle with
``weights_only=True`` (:mod:`emo_mm.utils.safe_load`).

Where things are: the blocks and the backbones in ``models/backbones/``
(``emo.py``, ``emov2.py``; what they share in ``base.py`` and
``models/layers.py``), checkpoint key layouts in ``models/checkpoint.py``,
per-codebase behaviour in ``codebases.py``, config reading in ``config.py``,
the runner, hooks and CPU distributed training in ``engine/``, counting and
timing in ``analysis/``, BN folding and ONNX export in ``deployment.py``.
"""
from . import engine  # noqa: F401  (runner hooks, CPU DDP, TimmCosineLR)
from .errors import CheckpointRefused, UserError
# The backbones register on import; the classifier and the SSD head are
# registered by name, mmdet and mmpretrain imported when they are built.
from .models import EMO, EMOv2, classifiers, dense_heads  # noqa: F401
from .utils import secure_checkpoint_loading
from .version import __version__

try:  # segmentation add-ons, only where mmseg is installed
    from . import visualization  # noqa: F401  (LegendSegVisualizer)
except ImportError:  # pragma: no cover
    pass

secure_checkpoint_loading()

__all__ = ['__version__', 'EMO', 'EMOv2', 'UserError', 'CheckpointRefused']
