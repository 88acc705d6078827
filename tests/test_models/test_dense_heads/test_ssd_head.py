"""emo_mm.models.dense_heads.PredictableSSDHead: mmdet 3.3.0's SSDHead
cannot predict; ours, with the same parameters, can, and no mmdet head is
changed."""
import pytest
import torch
from mmdet.models.dense_heads import RetinaHead, SSDHead
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope

from emo_mm.models.dense_heads import PredictableSSDHead


def test_stock_ssd_head_still_fails_to_predict():
    """Shows the mmdet 3.3.0 bug our head works around (when a future mmdet
    fixes it, this test tells us the workaround can go)."""
    init_default_scope('mmdet')
    cfg = dict(
        type='SSDHead',
        num_classes=4,
        in_channels=(8, 8),
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            strides=[16, 32],
            ratios=[[2], [2]],
            min_sizes=[16, 32],
            max_sizes=[32, 64]))
    feats = (torch.rand(1, 8, 4, 4), torch.rand(1, 8, 2, 2))
    meta = [dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))]
    test_cfg = ConfigDict(
        nms_pre=100,
        score_thr=0.0,
        max_per_img=10,
        nms=dict(type='nms', iou_threshold=0.45))
    stock = MODELS.build(cfg)
    with pytest.raises(AttributeError, match='loss_cls'):
        stock.predict_by_feat(
            *stock(feats), batch_img_metas=meta, cfg=test_cfg, rescale=False)
    fixed = MODELS.build(dict(cfg, type='PredictableSSDHead'))
    fixed.load_state_dict(stock.state_dict())  # same parameters
    result = fixed.predict_by_feat(
        *fixed(feats), batch_img_metas=meta, cfg=test_cfg, rescale=False)
    assert len(result[0].bboxes) > 0
    assert (result[0].labels < 4).all()  # background column dropped


def test_fix_leaves_mmdet_heads_untouched():
    assert 'loss_cls' not in vars(SSDHead)
    assert 'loss_cls' not in vars(RetinaHead)
    assert issubclass(PredictableSSDHead, SSDHead)
    assert vars(PredictableSSDHead)['loss_cls'] is None
