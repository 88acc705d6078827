"""An SSDHead that can predict under mmdet 3.3.0.

mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` reads
``self.loss_cls.custom_cls_channels``, but ``SSDHead`` skips
``AnchorHead.__init__`` and never has a ``loss_cls`` (it computes its loss
itself), so every SSD prediction fails with ``AttributeError: 'SSDHead'
object has no attribute 'loss_cls'`` (mmdetection issues 11063, 11305, 11780;
the fix, PR 11524, is unmerged).

:class:`PredictableSSDHead` declares that SSD has no loss module, which makes
the check fall through to SSD's softmax scores, as in mmdet 3.0. It is a
subclass registered under its own name (through
:mod:`emo_mm.utils.lazy`): ``SSDHead``
and every other mmdet head are left as they are.
"""
from mmdet.models.dense_heads import SSDHead


class PredictableSSDHead(SSDHead):
    """``SSDHead`` with the mmdet 3.3.0 prediction bug fixed.

    Takes exactly ``SSDHead``'s arguments and holds the same parameters, so
    checkpoints of either load into the other.
    """
    # SSD's loss is computed in loss_by_feat without a loss module.
    loss_cls = None
