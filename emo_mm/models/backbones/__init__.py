from .emo import EMO, LayerNorm2d, WindowAttention, iRMB

__all__ = ['EMO', 'iRMB', 'WindowAttention', 'LayerNorm2d']
