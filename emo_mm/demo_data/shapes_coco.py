"""A small synthetic COCO-format detection data set of filled shapes.

The images are meant for a CPU demo: an SSDLite detector (320x320 input,
anchors of 48..304 px) must learn them from scratch in a few minutes, so the
objects are large, few per image and of clearly different shapes, while the
backgrounds (gradients, noise, clutter lines) keep the task from being
trivial.

Every image is drawn from its own ``numpy`` Generator seeded with
``(seed, split, index)``, so the output is byte-for-byte reproducible and an
image does not change when the number of images in either split does.
"""
import json
import os
import os.path as osp

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle', 'cross')
# Fixed, well separated RGB colours for drawing predictions of each class.
PALETTE = [(220, 20, 60), (0, 120, 255), (255, 170, 0), (50, 190, 70)]

_SPLITS = ('train', 'val')
# Object sizes (longest side of the shape's frame) on a 320 px image; scaled
# with ``image_size`` so that they keep matching the SSDLite anchors.
_MIN_SIZE, _MAX_SIZE = 40, 200
_MAX_IOU = 0.1  # objects may touch or overlap a little, never hide each other
_MAX_COVER = 0.3  # share of the smaller box another box may cover


def _background(rng, height, width):
    """A linear colour gradient at a random angle, crossed by clutter lines.

    The lines are thin and unlabelled, so the detector has to learn that
    straight strokes alone are not objects.
    """
    c0, c1 = rng.integers(0, 256, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    t = np.add.outer(
        np.arange(height, dtype=np.float32) * np.float32(np.sin(angle)),
        np.arange(width, dtype=np.float32) * np.float32(np.cos(angle)))
    t -= t.min()
    t /= max(float(t.max()), 1.0)
    # c0 + (c1 - c0) * t per channel, in [0, 255], so the "Abs" of
    # convertScaleAbs changes nothing; it is just OpenCV's fast saturate-cast.
    img = cv2.merge([
        cv2.convertScaleAbs(t, alpha=float(c1[c] - c0[c]), beta=float(c0[c]))
        for c in range(3)
    ])
    for _ in range(int(rng.integers(0, 13))):
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.line(img, p0, p1, color, int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def _rotate(points, angle):
    """Rotate an (N, 2) array of points about the origin by ``angle`` rad."""
    cos, sin = np.cos(angle), np.sin(angle)
    return points @ np.array([[cos, sin], [-sin, cos]])


def _shape_polygon(label, size, rng):
    """Vertices of a polygonal shape of frame ``size``, centred on 0.

    Squares and crosses are tilted by at most 20 degrees, which keeps them
    distinct from diamonds and X marks; triangles turn freely.
    """
    half = size / 2
    if label == 'square':
        points = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        return _rotate(points, np.deg2rad(rng.uniform(-20, 20)))
    if label == 'triangle':
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(angles), np.sin(angles)], axis=1) * half
    if label == 'cross':
        a = 1 / 3  # half the arm width, as a share of half the size
        points = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
                           [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a],
                           [-a, -a]]) * half
        return _rotate(points, np.deg2rad(rng.uniform(-20, 20)))
    raise ValueError(f'no polygon for {label!r}')


def _shape_mask(label, center, size, height, width, rng):
    """A hard (0/1) uint8 mask of one filled shape."""
    mask = np.zeros((height, width), np.uint8)
    if label == 'circle':
        c = (int(round(center[0])), int(round(center[1])))
        cv2.circle(mask, c, int(round(size / 2)), 1, -1, cv2.LINE_8)
    else:
        points = _shape_polygon(label, size, rng) + np.asarray(center)
        cv2.fillPoly(mask,
                     np.round(points).astype(np.int32)[None], 1, cv2.LINE_8)
    return mask


def _overlaps(box, boxes):
    """Whether ``box`` overlaps any of ``boxes`` too much (x0, y0, x1, y1)."""
    for other in boxes:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        area_a = (box[2] - box[0]) * (box[3] - box[1])
        area_b = (other[2] - other[0]) * (other[3] - other[1])
        iou = inter / (area_a + area_b - inter)
        if iou > _MAX_IOU or inter / min(area_a, area_b) > _MAX_COVER:
            return True
    return False


def _contrasting_color(rng, region_mean):
    """A random colour that stands out from the background under a shape."""
    for _ in range(20):
        color = rng.integers(0, 256, size=3)
        if np.linalg.norm(color - region_mean) > 120:
            break
    else:  # fall back to the farthest corner of the colour cube
        color = np.where(region_mean < 128, 255, 0)
    return tuple(int(c) for c in color)


def _make_image(rng, image_size, first_label):
    """Draw one image; returns it (BGR) and its objects.

    Args:
        rng (np.random.Generator): The image's own random generator.
        image_size (int): Nominal side; sides vary in [0.8, 1.2] of it.
        first_label (int): Class index of the first object, so that the
            classes are spread evenly over the images.

    Returns:
        tuple: ``(img, objects)``, each object a dict with ``label``,
        ``bbox`` (x, y, w, h) and ``area`` (pixel count of its mask).
    """
    low, high = round(0.8 * image_size), round(1.2 * image_size)
    height, width = (int(v) for v in rng.integers(low, high + 1, size=2))
    img = _background(rng, height, width)
    scale = image_size / 320
    # A shape reaches at most 0.65 of its size from its centre (a square
    # tilted by 20 degrees), and has to fit inside the image.
    max_size = min(_MAX_SIZE * scale, (min(height, width) - 4) / 1.3)
    objects, boxes = [], []
    for k in range(int(rng.integers(1, 5))):
        label = first_label if k == 0 else int(rng.integers(len(CLASSES)))
        for _ in range(30):  # rejection sampling against heavy overlaps
            size = rng.uniform(_MIN_SIZE * scale, max_size)
            margin = 0.65 * size + 2
            center = (rng.uniform(margin, width - margin),
                      rng.uniform(margin, height - margin))
            mask = _shape_mask(CLASSES[label], center, size, height, width,
                               rng)
            x, y, w, h = cv2.boundingRect(mask)  # of the non-zero pixels
            box = (x, y, x + w, y + h)
            if not _overlaps(box, boxes):
                break
        else:
            continue  # no free place for this object: leave it out
        # Work in the box grown by the blur's reach only: much faster.
        x0, y0 = max(box[0] - 2, 0), max(box[1] - 2, 0)
        x1, y1 = min(box[2] + 2, width), min(box[3] + 2, height)
        patch, patch_mask = img[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        color = _contrasting_color(rng, patch[patch_mask > 0].mean(axis=0))
        # Blend through a slightly blurred mask: soft, anti-aliased edges.
        alpha = cv2.GaussianBlur(patch_mask.astype(np.float32), (3, 3), 0)
        alpha = alpha[..., None]
        blended = np.rint(patch * (1 - alpha) + np.float32(color) * alpha)
        img[y0:y1, x0:x1] = blended.astype(np.uint8)
        boxes.append(box)
        objects.append(
            dict(
                label=label,
                bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
                area=cv2.countNonZero(mask)))
    # Grey sensor-like noise over everything, objects included; one channel
    # shared by all three is cheaper to draw and to compress.
    sigma = np.float32(rng.uniform(1, 6))
    noise = rng.standard_normal(size=(height, width), dtype=np.float32)
    noise *= sigma
    return cv2.add(img, cv2.merge([noise] * 3), dtype=cv2.CV_8U), objects
    return img, objects


def make_shapes_coco(root, num_train=1600, num_val=80, image_size=320, seed=0):
    """Write a synthetic shapes detection data set in COCO format.

    Layout::

        root/train/000000.png ...
        root/val/000000.png ...
        root/annotations/train.json
        root/annotations/val.json

    Each image (sides in 0.8..1.2 ``image_size``) shows 1 to 4 filled shapes
    (one of :data:`CLASSES`, 40 to 200 px at ``image_size=320``, overlapping
    little) in random colours on a gradient background with noise and
    unlabelled clutter lines. Existing files of the same names are
    overwritten; nothing else under ``root`` is touched.

    Args:
        root (str): Output folder, created if missing.
        num_train (int): Number of training images. Defaults to 1600.
        num_val (int): Number of validation images. Defaults to 80.
        image_size (int): Nominal image side in pixels; object sizes scale
            with it. Defaults to 320 (SSDLite's input).
        seed (int): Non-negative seed; the same seed gives the same bytes.
            Defaults to 0.

    Returns:
        dict: The metainfo for mmdet datasets, ``dict(classes=tuple,
        palette=list of RGB tuples)``.
    """
    if seed < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(CLASSES)
    ]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split_index, (split,
                      num) in enumerate(zip(_SPLITS, (num_train, num_val))):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for index in range(num):
            # One generator per image: reproducible, and independent of the
            # split sizes.
            rng = np.random.default_rng([seed, split_index, index])
            img, objects = _make_image(rng, image_size, index % len(CLASSES))
            file_name = f'{index:06d}.png'
            cv2.imwrite(osp.join(root, split, file_name), img)
            image_id = index + 1  # COCO ids start at 1; 0 reads as "none"
            images.append(
                dict(
                    id=image_id,
                    file_name=file_name,
                    width=img.shape[1],
                    height=img.shape[0]))
            for obj in objects:
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        category_id=obj['label'] + 1,
                        bbox=[float(v) for v in obj['bbox']],
                        area=float(obj['area']),
                        iscrowd=0))
        coco = dict(
            info=dict(
                description='emo_mm synthetic shapes',
                version='1.0',
                seed=seed),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        with open(osp.join(root, 'annotations', f'{split}.json'), 'w') as f:
            json.dump(coco, f)
    return dict(classes=CLASSES, palette=list(PALETTE))
