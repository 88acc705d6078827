"""A small synthetic ImageNet-format classification set: one shape per image.

For the classification demo and tests: eight shape classes, each image one
filled shape in a random colour, size, place and rotation over a colour
gradient, with noise.

Layout, as ImageNet in mmpretrain (``data/imagenet``)::

    root/train/<class>/<class>_XXXXX.JPEG
    root/val/ILSVRC2012_val_XXXXXXXX.JPEG
    root/meta/train.txt   # "<class>/<file> <label>" per line
    root/meta/val.txt     # "<file> <label>" per line

so mmpretrain's ``ImageNet`` dataset reads it with ``split='train'`` or
``'val'``; the labels 0..7 are also valid ImageNet-1K labels, so a
1000-class model can be tested on it (top-1/top-5), as
``tools/test.py configs/imagenet/emo_5m_in1k.py CKPT`` does.
Each image is drawn from its own ``numpy`` Generator seeded with
``(seed, split, index)``: the same seed gives the same bytes.
"""
import os
import os.path as osp

import cv2
import numpy as np

from .shapes_coco import _contrasting_color

CLASSES = ('circle', 'ring', 'square', 'bar', 'triangle', 'cross', 'star',
           'hexagon')


def _polygon(label, half, angle):
    """Vertices (N, 2) of a shape of half-size ``half`` centred on 0."""
    if label == 'square':
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    elif label == 'bar':
        corners = np.array([[-1, -0.3], [1, -0.3], [1, 0.3], [-1, 0.3]]) * half
    elif label == 'cross':
        a = 1 / 3
        corners = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [
            a, a
        ], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]]) * half
    else:
        count, inner = {
            'triangle': (3, None),
            'hexagon': (6, None),
            'star': (5, 0.45)
        }[label]
        steps = count * (2 if inner else 1)
        angles = np.arange(steps) * 2 * np.pi / steps
        radii = np.ones(steps)
        if inner:
            radii[1::2] = inner
        corners = np.stack([np.cos(angles), np.sin(angles)], 1) * \
            radii[:, None] * half
    cos, sin = np.cos(angle), np.sin(angle)
    return corners @ np.array([[cos, sin], [-sin, cos]])


def _background(rng, size):
    """A smooth two-colour gradient at a random angle (no clutter: the demo
    has to learn shapes from scratch in a few hundred steps)."""
    c0, c1 = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.arange(size, dtype=np.float32)
    t = np.add.outer(ramp * np.sin(angle), ramp * np.cos(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    return (c0 + (c1 - c0) * t[..., None]).astype(np.uint8)


def _draw(rng, label, size):
    """One BGR image of side ``size`` showing one ``label`` shape."""
    img = _background(rng, size)
    half = rng.uniform(0.25, 0.42) * size
    center = rng.uniform(half + 2, size - half - 2, size=2)
    mask = np.zeros((size, size), np.uint8)
    c = tuple(int(round(v)) for v in center)
    if label in ('circle', 'ring'):
        cv2.circle(mask, c, int(round(half)), 1, -1)
        if label == 'ring':
            cv2.circle(mask, c, int(round(half * 0.55)), 0, -1)
    else:
        points = _polygon(label, half, rng.uniform(0, 2 * np.pi)) + center
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    region = img[mask > 0].mean(axis=0)
    img[mask > 0] = _contrasting_color(rng, region)
    noise = rng.normal(0, rng.uniform(1, 6), size=(size, size, 1))
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def make_shapes_imagenet(root,
                         num_train_per_class=100,
                         num_val_per_class=20,
                         image_size=64,
                         seed=0):
    """Write the synthetic shapes classification set in ImageNet's layout.

    Existing files of the same names are overwritten; nothing else under
    ``root`` is touched.

    Args:
        root (str): Output folder, created if missing.
        num_train_per_class (int): Training images per class. Defaults to
            100.
        num_val_per_class (int): Validation images per class. Defaults to 20.
        image_size (int): Side of the square images. Defaults to 64.
        seed (int): Non-negative seed. Defaults to 0.

    Returns:
        tuple[str]: The class names, in label order.
    """
    if seed < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    if image_size < 16:
        raise ValueError(f'image_size must be at least 16, got {image_size}')
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    splits = (('train', num_train_per_class), ('val', num_val_per_class))
    for split_index, (split, per_class) in enumerate(splits):
        lines = []
        for index in range(per_class * len(CLASSES)):
            label = index % len(CLASSES)
            rng = np.random.default_rng([seed, split_index, index])
            img = _draw(rng, CLASSES[label], image_size)
            if split == 'train':
                name = f'{CLASSES[label]}/{CLASSES[label]}_{index:05d}.JPEG'
            else:
                name = f'ILSVRC2012_val_{index + 1:08d}.JPEG'
            path = osp.join(root, split, name)
            os.makedirs(osp.dirname(path), exist_ok=True)
            cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            lines.append(f'{name} {label}\n')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return CLASSES
