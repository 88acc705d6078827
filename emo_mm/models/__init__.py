from .backbones import (EMO, FAMILIES, I2RMB, EMOv2, SpanningWindowAttention,
                        WindowAttention, iRMB)
from .checkpoint import (authors_to_classifier, authors_to_ours,
                         classifier_to_authors, load_backbone_checkpoint,
                         ours_to_authors)
from .deploy import deploy
from .layers import LayerNorm2d

__all__ = [
    'EMO', 'iRMB', 'WindowAttention', 'EMOv2', 'I2RMB', 'FAMILIES',
    'SpanningWindowAttention', 'LayerNorm2d', 'authors_to_ours',
    'ours_to_authors', 'authors_to_classifier', 'classifier_to_authors',
    'load_backbone_checkpoint', 'deploy'
]
