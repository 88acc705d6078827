"""Generators of the small synthetic data sets the demos train on (shapes
in COCO and ImageNet format, scenes in ADE20K format), seeded and
byte-identical for a seed."""
from .cli import check_output_folder, demo_data_main
from .scenes_ade20k import make_scenes_ade20k
from .shapes_coco import make_shapes_coco
from .shapes_imagenet import make_shapes_imagenet

__all__ = [
    'check_output_folder', 'demo_data_main', 'make_scenes_ade20k',
    'make_shapes_coco', 'make_shapes_imagenet'
]
