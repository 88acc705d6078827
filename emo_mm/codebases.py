"""What differs between mmdet, mmseg and mmpretrain, in one table.

The tools and the library work alike for the three codebases; wherever one
of them needs its own handling (drawing results, test-time augmentation,
the inferencer, dumping predictions, naming exported outputs, the input size
to count at), the entry of :data:`CODEBASES` for the config's
``default_scope`` says how. Each codebase is imported only when its entry is
used, so emo_mm works where only some of them are installed.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .errors import UserError


# ---------------------------------------------------------------- drawing
def _show_mmdet(cfg, hook, show, show_dir, wait_time):
    hook.update(draw=True, show=show, wait_time=wait_time)
    if show_dir:
        hook.test_out_dir = show_dir  # absolute: not under work_dir/timestamp


def _show_mmseg(cfg, hook, show, show_dir, wait_time):
    hook.update(draw=True, show=show, wait_time=wait_time)
    if show_dir:  # mmseg's hook saves through the visualizer's backend
        cfg.visualizer.save_dir = show_dir
        hook.interval = 1


def _show_mmpretrain(cfg, hook, show, show_dir, wait_time):
    # Every image: the hook's default interval draws one in 5000.
    hook.update(enable=True, show=show, wait_time=wait_time, interval=1)
    if show_dir:
        hook.out_dir = show_dir


# ------------------------------------------------------------------- TTA
def _mmdet_tta(cfg, test_pipeline) -> None:
    """mmdet's test-time augmentation when the config has none: box fusion
    by NMS over a horizontal flip of the config's own test pipeline. (The
    stock mmdet test.py default has only the flips and the packing: without
    the config's Resize, predictions have no scale factor and mmdet fails.)
    """
    cfg.setdefault(
        'tta_model',
        dict(
            type='DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))
    if 'tta_pipeline' in cfg:
        return
    load, *middle, pack = [dict(t) for t in test_pipeline]
    keys = tuple(
        pack.get(
            'meta_keys',
            ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')))
    pack['meta_keys'] = keys + tuple(
        k for k in ('flip', 'flip_direction') if k not in keys)
    flips = [
        dict(type='RandomFlip', prob=1.),
        dict(type='RandomFlip', prob=0.)
    ]
    cfg.tta_pipeline = [
        load,
        dict(
            type='TestTimeAug',
            transforms=[[t] for t in middle] + [flips, [pack]])
    ]


# ------------------------------------------------------------ inferencers
def _mmdet_inferencer(cfg, checkpoint, device):
    from mmdet.apis import DetInferencer
    return DetInferencer(
        model=cfg, weights=checkpoint, device=device, show_progress=False)


def _mmseg_inferencer(cfg, checkpoint, device):
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(model=cfg, weights=checkpoint, device=device)
    inferencer.show_progress = False  # no such argument in mmseg 1.2
    return inferencer


def _mmpretrain_inferencer(cfg, checkpoint, device):
    from mmpretrain.apis import ImageClassificationInferencer
    return ImageClassificationInferencer(
        model=cfg, pretrained=checkpoint, device=device)


def _draw_mmdet(inferencer, image, score_thr):
    # no_save_vis: the inferencer would keep the input's extension (and
    # JPEG-compress the drawing); the caller saves the drawing as PNG.
    return inferencer(
        image, return_vis=True, no_save_vis=True,
        pred_score_thr=score_thr)['visualization'][0], None


def _draw_mmseg(inferencer, image, score_thr):
    return inferencer(image, return_vis=True)['visualization'], None


CLS_MIN_SIZE = 256  # shorter side of classification drawings, at least


def _draw_mmpretrain(inferencer, image, score_thr):
    """Classify one image; draw its top class and score, and name them.

    mmpretrain's inferencer only draws into files named after the input's
    stem, so its visualizer is called here instead.
    """
    import cv2
    from mmpretrain.visualization import UniversalVisualizer
    sample, = inferencer(image, return_datasamples=True)
    classes = inferencer.classes
    label = int(sample.pred_label)
    name = classes[label] if classes else str(label)
    caption = f'{name} ({float(sample.pred_score[label]):.3f})'
    picture = cv2.imread(image)[..., ::-1]
    visualizer = UniversalVisualizer()
    # The text has a fixed pixel size: on a small image (the demo's are
    # 64x64) it would cover the picture and be unreadable, so small images
    # are drawn on a copy enlarged to CLS_MIN_SIZE on the shorter side.
    resize = CLS_MIN_SIZE if min(picture.shape[:2]) < CLS_MIN_SIZE else None
    visualizer.visualize_cls(
        picture,
        sample,
        classes=classes,
        draw_gt=False,
        draw_pred=True,
        draw_score=True,
        resize=resize)
    return visualizer.get_image(), caption


# --------------------------------------------------- predictions to a file
def _mmdet_dump(out_file):
    from mmdet.evaluation import DumpDetResults
    return DumpDetResults(out_file_path=out_file)


def _mmengine_dump(out_file):
    from mmengine.evaluator import DumpResults
    return DumpResults(out_file_path=out_file)


# ---------------------------------------------------------- export names
def flatten_outputs(outputs) -> list:
    """The tensors of a model's nested tensor-mode outputs, in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [t for item in outputs for t in flatten_outputs(item)]


def _generic_names(nested) -> list:
    return [f'output{i}' for i in range(len(flatten_outputs(nested)))]


def _mmdet_names(nested) -> list:
    """(class scores, box deltas) per level."""
    if (isinstance(nested, (tuple, list)) and len(nested) == 2
            and all(isinstance(part, (tuple, list)) for part in nested)):
        return ([f'cls_score_{i}' for i in range(len(nested[0]))] +
                [f'bbox_pred_{i}' for i in range(len(nested[1]))])
    return _generic_names(nested)


def _single_name(name):

    def names(nested) -> list:
        if isinstance(nested, torch.Tensor):
            return [name]
        return _generic_names(nested)

    return names


# ---------------------------------------------- training samples (benchmark)
def _mmdet_samples(model, batch, h, w, gen):
    """Per image 3 random boxes of the head's classes, as a loaded COCO
    batch gives them (no masks: one-stage detectors)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    head = getattr(model, 'bbox_head', None) or model.rpn_head
    samples = []
    for _ in range(batch):
        xy = torch.rand(3, 2, generator=gen) * torch.tensor([w, h]) * 0.6
        wh = (torch.rand(3, 2, generator=gen) * 0.3 + 0.1) * torch.tensor(
            [w, h])
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                ori_shape=(h, w),
                pad_shape=(h, w),
                batch_input_shape=(h, w),
                scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(head.num_classes, (3, ), generator=gen))
        samples.append(sample)
    return samples


def _mmseg_samples(model, batch, h, w, gen):
    """Per image a random label map of the decode head's classes."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(
                model.decode_head.num_classes, (1, h, w), generator=gen))
        samples.append(sample)
    return samples


def _mmpretrain_samples(model, batch, h, w, gen):
    """Per image a random label of the head's classes."""
    from mmpretrain.structures import DataSample
    labels = torch.randint(model.head.num_classes, (batch, ), generator=gen)
    return [DataSample().set_gt_label(int(label)) for label in labels]


@dataclass(frozen=True)
class Codebase:
    """How one codebase does what the tools need.

    Attributes:
        show_results: ``(cfg, hook, show, show_dir, wait_time)``: turn on
            the config's visualization hook (``tools/test.py --show-dir``).
        default_tta: ``(cfg, test_pipeline)``: add test-time augmentation
            to a config that has none, or None when the codebase has no
            default.
        build_inferencer: ``(cfg, checkpoint, device)`` -> inferencer.
        draw: ``(inferencer, image_path, score_thr)`` -> ``(RGB drawing,
            caption)``: the caption names the prediction in words, or is
            None.
        dump_metric: ``(out_file)`` -> the metric that pickles predictions.
        output_names: the names of a model's flattened tensor-mode outputs.
        train_samples: ``(model, batch, h, w, generator)`` -> random
            ground truth for one batch, for timing a whole training step.
        size_from_crop_size: the model's input size is the config's
            ``crop_size`` (mmseg).
    """
    show_results: Callable
    default_tta: Optional[Callable]
    build_inferencer: Callable
    draw: Callable
    dump_metric: Callable
    output_names: Callable
    train_samples: Callable
    size_from_crop_size: bool = False


CODEBASES = {
    'mmdet':
    Codebase(_show_mmdet, _mmdet_tta, _mmdet_inferencer, _draw_mmdet,
             _mmdet_dump, _mmdet_names, _mmdet_samples),
    'mmseg':
    Codebase(
        _show_mmseg,
        None,
        _mmseg_inferencer,
        _draw_mmseg,
        _mmengine_dump,
        _single_name('seg_logits'),
        _mmseg_samples,
        size_from_crop_size=True),
    'mmpretrain':
    Codebase(_show_mmpretrain, None, _mmpretrain_inferencer, _draw_mmpretrain,
             _mmengine_dump, _single_name('cls_score'), _mmpretrain_samples),
}


def get_codebase(scope, source: str = 'the config') -> Codebase:
    """The :data:`CODEBASES` entry of a ``default_scope``.

    Raises:
        UserError: ``scope`` is not one of them; ``source`` names where it
            came from.
    """
    if scope not in CODEBASES:
        raise UserError(f'{source} has default_scope={scope!r}; allowed: '
                        f'{list(CODEBASES)}')
    return CODEBASES[scope]
