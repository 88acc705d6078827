"""A segmentation visualizer whose pictures can be read without the config.

mmseg's ``SegLocalVisualizer`` tints each class and writes its name at one
point of the region, sized to the image: on the demo's 240x180 scenes the
names are a few pixels high, and a class that is missed or hallucinated has
no key at all. :class:`LegendSegVisualizer` draws on a copy upscaled to a
readable size and appends a legend of every class (colour and name), so a
reader can tell a missed class from an absent one. Select it in a config with
``visualizer = dict(type='LegendSegVisualizer', ...)``; tools/test.py
``--show-dir`` and tools/infer.py then draw with it.
"""
import math

import cv2
import numpy as np
import torch
from mmengine.registry import VISUALIZERS
from mmengine.structures import PixelData
from mmseg.visualization import SegLocalVisualizer

_FONT = cv2.FONT_HERSHEY_SIMPLEX


@VISUALIZERS.register_module()
class LegendSegVisualizer(SegLocalVisualizer):
    """``SegLocalVisualizer`` that upscales small images and adds a legend.

    Args:
        name (str): The instance's name. Defaults to 'visualizer'.
        min_size (int): Images whose shorter side is below this are drawn on
            a copy enlarged by the smallest integer factor that reaches it
            (the label map by nearest neighbour, so class borders stay
            exact). Defaults to 360.
        **kwargs: ``SegLocalVisualizer``'s arguments.
    """

    # ``name`` is spelled out: mmengine's ManagerMeta requires it in the
    # signature of every visualizer class.
    def __init__(self,
                 name: str = 'visualizer',
                 min_size: int = 360,
                 **kwargs):
        if not (isinstance(min_size, int) and min_size > 0):
            raise ValueError(
                f'min_size must be a positive int, got {min_size!r}')
        super().__init__(name=name, **kwargs)
        self.min_size = min_size

    def _draw_sem_seg(self,
                      image,
                      sem_seg,
                      classes,
                      palette,
                      with_labels=True):
        # mmseg calls this once for the ground truth and once for the
        # prediction and places the two side by side: each panel gets the
        # same enlargement and legend, so they stay aligned.
        factor = math.ceil(self.min_size / min(image.shape[:2]))
        if factor > 1:
            image = cv2.resize(
                image,
                None,
                fx=factor,
                fy=factor,
                interpolation=cv2.INTER_CUBIC)
            data = sem_seg.cpu().data
            data = torch.as_tensor(data).repeat_interleave(
                factor, -2).repeat_interleave(factor, -1)
            sem_seg = PixelData(data=data)
        drawn = super()._draw_sem_seg(image, sem_seg, classes, palette,
                                      with_labels)
        drawn = np.concatenate(
            [drawn, legend(classes, palette, drawn.shape[1])], axis=0)
        self.set_image(drawn)
        return drawn


def legend(classes, palette, width):
    """A white RGB strip ``width`` wide: a swatch and the name of each class,
    in as many columns as fit."""
    scale, thickness, swatch, pad, row = 0.5, 1, 14, 6, 22
    text_width = max(
        cv2.getTextSize(str(name), _FONT, scale, thickness)[0][0]
        for name in classes)
    cell = swatch + 2 * pad + text_width
    cols = max(1, min(len(classes), width // cell))
    rows = math.ceil(len(classes) / cols)
    strip = np.full((rows * row + pad, width, 3), 255, np.uint8)
    for i, (name, color) in enumerate(zip(classes, palette)):
        x, y = (i % cols) * cell + pad, (i // cols) * row + pad
        cv2.rectangle(strip, (x, y), (x + swatch, y + swatch),
                      tuple(int(c) for c in color), -1)
        cv2.rectangle(strip, (x, y), (x + swatch, y + swatch), (0, 0, 0), 1)
        cv2.putText(strip, str(name), (x + swatch + pad, y + swatch - 2),
                    _FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return strip
