from .base import EMOBackbone
from .emo import EMO, WindowAttention, iRMB
from .emov2 import I2RMB, EMOv2, SpanningWindowAttention

# The backbone classes by family name, the name each registers under.
FAMILIES = {cls.family: cls for cls in (EMO, EMOv2)}

__all__ = [
    'EMOBackbone', 'EMO', 'iRMB', 'WindowAttention', 'EMOv2', 'I2RMB',
    'SpanningWindowAttention', 'FAMILIES'
]
