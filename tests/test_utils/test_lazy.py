"""emo_mm.utils.lazy: ``import emo_mm`` leaves mmdet's and mmpretrain's
models unimported, and configs still build emo_mm's classes by name."""
import sys

from conftest import run_python
from mmengine.registry import MODELS, DefaultScope


def test_import_emo_mm_does_not_import_mmdet_or_mmpretrain_models():
    code = ('import sys, emo_mm; '
            "print(sorted(m for m in ('mmdet.models', 'mmpretrain.models') "
            'if m in sys.modules))')
    assert run_python('-c', code).stdout.strip().endswith('[]')


def test_registered_builders_make_the_classes():
    import emo_mm  # noqa: F401
    from emo_mm.models.classifiers import EMOImageClassifier
    from emo_mm.models.dense_heads import PredictableSSDHead

    # Each in its codebase's scope, as a config of that codebase builds it.
    with DefaultScope.overwrite_default_scope('mmdet'):
        head = MODELS.build(
            dict(
                type='PredictableSSDHead',
                num_classes=3,
                in_channels=(8, 8),
                anchor_generator=dict(
                    type='SSDAnchorGenerator',
                    scale_major=False,
                    strides=[16, 32],
                    ratios=[[2], [2]],
                    min_sizes=[16, 32],
                    max_sizes=[32, 64])))
    assert type(head) is PredictableSSDHead
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(
            dict(
                type='EMOImageClassifier',
                backbone=dict(type='EMO', arch='1m', final_norm=True),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead', num_classes=5, in_channels=168)))
    assert type(classifier) is EMOImageClassifier
    assert 'mmdet.models' in sys.modules  # imported on use
