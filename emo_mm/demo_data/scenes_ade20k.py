"""A small synthetic ADE20K-format segmentation data set of outdoor scenes.

It is made for a CPU demo: DeepLabV3-EMO-1M has to learn it from scratch in
minutes, so the regions are large and their classes differ in colour, texture
and place (sky above the horizon, ground below, things standing on it), while
random colours, sizes, noise and unlabelled clutter keep it from being
trivial.

The files follow ADE20K (``ADEChallengeData2016``) exactly, so mmseg's
``ADE20KDataset`` reads them unchanged:

- ``images/{training,validation}/ADE_{train,val}_XXXXXXXX.jpg``;
- ``annotations/{training,validation}/...png``: one uint8 channel holding the
  ADE20K class id (1 = wall ... 150 = flag) or 0 for "other", which
  ``reduce_zero_label=True`` turns into the ignore index 255 and moves every
  id down by one.

Only the nine classes in :data:`CLASSES` occur. Each image is drawn from its
own ``numpy`` Generator seeded with ``(seed, split, index)``: the same seed
gives the same bytes, and an image does not depend on how many are written.
"""
import os
import os.path as osp

import cv2
import numpy as np

# ADE20K class ids (1-based, as stored in the label PNGs) of the classes drawn.
CLASS_IDS = {
    'building': 2,
    'sky': 3,
    'tree': 5,
    'road': 7,
    'grass': 10,
    'person': 13,
    'mountain': 17,
    'car': 21,
    'water': 22,
}
CLASSES = tuple(CLASS_IDS)
OTHER = 0  # ADE20K's "other" label: ignored in training and evaluation

_SPLITS = (('training', 'train'), ('validation', 'val'))


def _jitter(rng, color, amount=25):
    """``color`` (BGR) moved by up to ``amount`` per channel."""
    shifted = np.asarray(color) + rng.integers(-amount, amount + 1, size=3)
    return tuple(int(c) for c in np.clip(shifted, 0, 255))


def _fill(img, label, mask, color, class_id):
    """Paint ``color`` and ``class_id`` where ``mask`` is set."""
    img[mask] = color
    label[mask] = class_id


def _sky(rng, img, label, horizon):
    """A vertical gradient from a deep to a pale sky colour."""
    top = _jitter(rng, (200, 130, 60), 40)  # BGR: blue
    bottom = _jitter(rng, (235, 210, 190), 20)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    img[:horizon] = (np.float32(top) * (1 - t) + np.float32(bottom) * t)
    label[:horizon] = CLASS_IDS['sky']


def _ground(rng, img, label, horizon):
    """Grass, road or water from the horizon down, each with its texture."""
    height, width = label.shape
    kind = rng.choice(['grass', 'road', 'water'])
    rows = slice(horizon, height)
    if kind == 'grass':
        base = np.float32(_jitter(rng, (40, 150, 60), 30))
        texture = rng.normal(0, 18, size=(height - horizon, width, 1))
        img[rows] = np.clip(base + texture, 0, 255)
    elif kind == 'road':
        grey = int(rng.integers(70, 130))
        img[rows] = (grey, grey, grey + int(rng.integers(-10, 11)))
        lane_y = int(rng.integers(horizon + 4, height - 2))
        for x in range(int(rng.integers(0, 20)), width, 40):
            cv2.line(img, (x, lane_y), (x + 20, lane_y), (230, 230, 230), 2)
    else:
        base = np.float32(_jitter(rng, (150, 90, 20), 30))
        img[rows] = base
        for y in range(horizon + 2, height, int(rng.integers(5, 9))):
            cv2.line(img, (0, y), (width - 1, y + int(rng.integers(-2, 3))),
                     _jitter(rng, (200, 150, 90), 20), 1)
    label[rows] = CLASS_IDS[kind]
    return kind


def _mountain(rng, img, label, horizon):
    """A jagged ridge rising from the horizon into the sky."""
    height, width = label.shape
    xs = np.sort(rng.uniform(0, width, size=int(rng.integers(3, 7))))
    peaks = horizon - rng.uniform(0.1, 0.6, size=len(xs)) * horizon
    points = [(0, horizon)] + [(x, y) for x, y in zip(xs, peaks)]
    points += [(width - 1, horizon)]
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    _fill(img, label, mask > 0, _jitter(rng, (110, 100, 115), 25),
          CLASS_IDS['mountain'])


def _building(rng, img, label, horizon):
    """A block standing on the horizon, with a grid of darker windows."""
    height, width = label.shape
    w = int(rng.uniform(0.12, 0.3) * width)
    h = int(rng.uniform(0.3, 0.9) * horizon)
    x = int(rng.integers(0, max(width - w, 1)))
    y = horizon - h
    mask = np.zeros((height, width), bool)
    mask[y:horizon + 2, x:x + w] = True
    _fill(img, label, mask, _jitter(rng, (90, 110, 160), 40),
          CLASS_IDS['building'])
    window = _jitter(rng, (60, 50, 40), 20)
    for wy in range(y + 4, horizon - 6, 10):
        for wx in range(x + 3, x + w - 6, 9):
            img[wy:wy + 5, wx:wx + 4] = window  # part of the building


def _tree(rng, img, label, base_y):
    """A brown trunk under a round dark green crown."""
    height, width = label.shape
    r = int(rng.uniform(0.05, 0.12) * height) + 3
    x = int(rng.integers(r, max(width - r, r + 1)))
    trunk_h = int(rng.uniform(0.6, 1.2) * r)
    mask = np.zeros((height, width), np.uint8)
    cv2.rectangle(mask, (x - r // 5, base_y - trunk_h), (x + r // 5, base_y),
                  1, -1)
    trunk = mask > 0
    _fill(img, label, trunk, _jitter(rng, (30, 60, 100), 15),
          CLASS_IDS['tree'])
    mask[:] = 0
    cv2.circle(mask, (x, base_y - trunk_h - r // 2), r, 1, -1)
    crown = mask > 0
    _fill(img, label, crown, _jitter(rng, (30, 100, 30), 20),
          CLASS_IDS['tree'])
    speckle = crown & (rng.random(crown.shape) < 0.15)
    img[speckle] = _jitter(rng, (20, 70, 20), 10)


def _car(rng, img, label, base_y):
    """A body, a cabin and two black wheels."""
    height, width = label.shape
    w = int(rng.uniform(0.12, 0.22) * width)
    h = max(int(w * 0.3), 4)
    x = int(rng.integers(0, max(width - w, 1)))
    mask = np.zeros((height, width), np.uint8)
    cv2.rectangle(mask, (x, base_y - h), (x + w, base_y - h // 3), 1, -1)
    cv2.rectangle(mask, (x + w // 4, base_y - h - h // 2),
                  (x + 3 * w // 4, base_y - h), 1, -1)
    _fill(img, label, mask > 0, _jitter(rng, rng.integers(0, 256, 3), 0),
          CLASS_IDS['car'])
    mask[:] = 0
    r = max(h // 3, 2)
    for cx in (x + w // 5, x + 4 * w // 5):
        cv2.circle(mask, (cx, base_y - r), r, 1, -1)
    _fill(img, label, mask > 0, (20, 20, 20), CLASS_IDS['car'])


def _person(rng, img, label, base_y):
    """A standing figure: legs, torso in random clothes, a round head."""
    height, width = label.shape
    h = int(rng.uniform(0.15, 0.3) * height) + 6
    x = int(rng.integers(4, max(width - 4, 5)))
    w = max(h // 5, 2)
    mask = np.zeros((height, width), np.uint8)
    cv2.rectangle(mask, (x - w // 2, base_y - h // 2), (x + w // 2, base_y), 1,
                  -1)
    _fill(img, label, mask > 0, _jitter(rng, (90, 60, 40), 20),
          CLASS_IDS['person'])
    mask[:] = 0
    cv2.rectangle(mask, (x - w // 2 - 1, base_y - h + h // 6),
                  (x + w // 2 + 1, base_y - h // 2), 1, -1)
    _fill(img, label, mask > 0, _jitter(rng, rng.integers(0, 256, 3), 0),
          CLASS_IDS['person'])
    mask[:] = 0
    cv2.circle(mask, (x, base_y - h + h // 12), max(h // 10, 2), 1, -1)
    _fill(img, label, mask > 0, _jitter(rng, (120, 160, 210), 30),
          CLASS_IDS['person'])


def _clutter(rng, img, label):
    """Small blobs of random colour labelled "other" (ignored)."""
    height, width = label.shape
    mask = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        mask[:] = 0
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1,
                    -1)
        _fill(img, label, mask > 0, _jitter(rng, rng.integers(0, 256, 3), 0),
              OTHER)


def _make_scene(rng, image_size):
    """Draw one scene; returns ``(img, label)`` (BGR uint8, uint8 ids)."""
    base_h, base_w = image_size
    height = int(round(base_h * rng.uniform(0.85, 1.15)))
    width = int(round(base_w * rng.uniform(0.85, 1.15)))
    img = np.zeros((height, width, 3), np.uint8)
    label = np.zeros((height, width), np.uint8)
    horizon = int(rng.uniform(0.3, 0.6) * height)
    _sky(rng, img, label, horizon)
    if rng.random() < 0.5:
        _mountain(rng, img, label, horizon)
    ground = _ground(rng, img, label, horizon)
    for _ in range(int(rng.integers(0, 3))):
        _building(rng, img, label, horizon)
    if ground != 'water':
        # Things stand on the ground, lower ones nearer: drawn far to near.
        things = [_tree] * int(rng.integers(0, 3)) + \
            [_car] * int(rng.integers(0, 3)) + \
            [_person] * int(rng.integers(0, 3))
        bases = np.sort(rng.integers(horizon + 2, height, size=len(things)))
        for index in rng.permutation(len(things)):
            things[index](rng, img, label, int(bases[index]))
    _clutter(rng, img, label)
    img = cv2.GaussianBlur(img, (3, 3), 0)  # soften the drawn edges
    noise = rng.normal(0, rng.uniform(2, 8), size=(height, width, 1))
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, label


def ade20k_metainfo():
    """The ``metainfo`` that selects :data:`CLASSES` from mmseg's
    ``ADE20KDataset`` (which then maps their ids to 0..8), with ADE20K's own
    colours for them."""
    from mmseg.datasets import ADE20KDataset
    palette = ADE20KDataset.METAINFO['palette']
    return dict(
        classes=CLASSES,
        palette=[tuple(palette[CLASS_IDS[name] - 1]) for name in CLASSES])


def make_scenes_ade20k(root,
                       num_train=300,
                       num_val=50,
                       image_size=(180, 240),
                       seed=0):
    """Write the synthetic outdoor scenes in ADE20K's folder layout.

    Layout (as ``ADEChallengeData2016``)::

        root/images/training/ADE_train_00000001.jpg ...
        root/images/validation/ADE_val_00000001.jpg ...
        root/annotations/training/ADE_train_00000001.png ...
        root/annotations/validation/ADE_val_00000001.png ...

    Existing files of the same names are overwritten; nothing else under
    ``root`` is touched.

    Args:
        root (str): Output folder, created if missing.
        num_train (int): Number of training images. Defaults to 300.
        num_val (int): Number of validation images. Defaults to 50.
        image_size (tuple[int, int]): Nominal (height, width); each image's
            sides vary in [0.85, 1.15] of it. Defaults to (180, 240).
        seed (int): Non-negative seed; the same seed gives the same bytes.
            Defaults to 0.

    Returns:
        dict: Per split (``'training'``, ``'validation'``), the number of
        labelled pixels of each ADE20K class id drawn, plus ``0`` for "other".
    """
    if seed < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    if min(image_size) < 32:
        raise ValueError(f'image_size must be at least 32x32, got '
                         f'{tuple(image_size)}')
    counts = {}
    for split_index, (folder, prefix) in enumerate(_SPLITS):
        num = (num_train, num_val)[split_index]
        img_dir = osp.join(root, 'images', folder)
        ann_dir = osp.join(root, 'annotations', folder)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        pixels = np.zeros(256, np.int64)
        for index in range(num):
            rng = np.random.default_rng([seed, split_index, index])
            img, label = _make_scene(rng, image_size)
            name = f'ADE_{prefix}_{index + 1:08d}'
            cv2.imwrite(
                osp.join(img_dir, name + '.jpg'), img,
                [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), label)
            pixels += np.bincount(label.ravel(), minlength=256)
        counts[folder] = {int(i): int(n) for i, n in enumerate(pixels) if n}
    return counts
