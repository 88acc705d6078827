"""Data set helpers for emo_mm demos."""
from .synthetic_coco import make_shapes_coco

__all__ = ['make_shapes_coco']
