from .backbones import EMO, LayerNorm2d, WindowAttention, iRMB
from .checkpoint import (authors_to_classifier, authors_to_ours,
                         classifier_to_authors, load_backbone_checkpoint,
                         ours_to_authors)

__all__ = [
    'EMO', 'iRMB', 'WindowAttention', 'LayerNorm2d', 'authors_to_ours',
    'ours_to_authors', 'authors_to_classifier', 'classifier_to_authors',
    'load_backbone_checkpoint'
]
