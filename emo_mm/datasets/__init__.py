"""Data set helpers for emo_mm demos."""
from .synthetic_ade20k import make_scenes_ade20k
from .synthetic_coco import make_shapes_coco
from .synthetic_imagenet import make_shapes_imagenet

__all__ = ['make_scenes_ade20k', 'make_shapes_coco', 'make_shapes_imagenet']
