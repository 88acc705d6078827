"""LegendSegVisualizer (emo_mm/visualization.py): built from the mmseg
scope, it draws small images enlarged, with every class in a legend."""
import itertools

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import VISUALIZERS
from mmseg.structures import SegDataSample

import emo_mm  # noqa: F401  (registers the visualizer)

CLASSES = ('building', 'sky', 'tree', 'road', 'grass', 'person', 'mountain',
           'car', 'water')
PALETTE = [(180, 120, 120), (6, 230, 230), (4, 200, 3), (140, 140, 140),
           (4, 250, 7), (150, 5, 61), (143, 255, 140), (0, 102, 200),
           (61, 230, 250)]
# Visualizers are named instances (ManagerMixin): a name seen before returns
# that instance unbuilt, so each build takes a new one (an id() could be
# reused once its object is freed).
NAMES = (f'legend{i}' for i in itertools.count())


def build(**kwargs):
    init_default_scope('mmseg')
    visualizer = VISUALIZERS.build(
        dict(type='LegendSegVisualizer', name=next(NAMES), **kwargs))
    visualizer.set_dataset_meta(classes=CLASSES, palette=PALETTE)
    return visualizer


def sample(height, width):
    gt = torch.zeros(1, height, width, dtype=torch.long)
    gt[:, :, width // 2:] = 3  # building | road
    pred = torch.zeros_like(gt)
    pred[:, height // 2:] = 7  # building over car: 'road' missed
    data = SegDataSample()
    data.gt_sem_seg = PixelData(data=gt)
    data.pred_sem_seg = PixelData(data=pred)
    return data


def test_small_image_enlarged_with_a_legend_of_every_class(tmp_path):
    visualizer = build(alpha=1.0)  # pure class colours: checkable
    image = np.full((45, 60, 3), 128, np.uint8)
    out = tmp_path / 'drawn.png'
    visualizer.add_datasample('x', image, sample(45, 60), out_file=str(out))
    drawn = cv2.imread(str(out))[..., ::-1]
    factor = 8  # the smallest integer reaching 360 from 45
    # Ground truth | prediction, each enlarged and given its legend.
    assert drawn.shape[1] == 2 * 60 * factor
    assert drawn.shape[0] > 45 * factor
    top = drawn[:45 * factor]
    legend = drawn[45 * factor:]
    # The label maps were enlarged by nearest neighbour: the gt border at
    # column 30 lands at 240 and the prediction's at row 22.5 -> 180.
    # (Points away from the names mmseg writes on each region.)
    assert tuple(top[5, 240 - 3]) == PALETTE[0]
    assert tuple(top[5, 240 + 3]) == PALETTE[3]
    assert tuple(top[5, 480 + 3]) == PALETTE[0]
    assert tuple(top[45 * factor - 5, 480 + 3]) == PALETTE[7]
    # Every class has its swatch, including those absent from both maps.
    for color in PALETTE:
        assert np.all(legend == color, axis=-1).sum() >= 100, color
    # Names are written in black beside the swatches.
    assert (legend.sum(-1) == 0).sum() > 500


def test_large_image_kept_and_shapes_agree(tmp_path):
    visualizer = build()
    image = np.zeros((400, 500, 3), np.uint8)
    drawn = visualizer._draw_sem_seg(image,
                                     sample(400, 500).gt_sem_seg, CLASSES,
                                     PALETTE)
    assert drawn.shape[1] == 500 and drawn.shape[0] > 400
    assert np.array_equal(visualizer.get_image(), drawn)


def test_min_size_checked():
    with pytest.raises(
            ValueError, match='min_size must be a positive int, '
            'got 0'):
        build(min_size=0)
