from .base import EMOBackbone
from .emo import EMO, WindowAttention, iRMB
from .emov2 import EMOv2, I2RMB, SpanningWindowAttention

__all__ = [
    'EMOBackbone', 'EMO', 'iRMB', 'WindowAttention', 'EMOv2', 'I2RMB',
    'SpanningWindowAttention'
]
