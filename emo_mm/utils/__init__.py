from .safe_load import CheckpointRefused, secure_checkpoint_loading

__all__ = ['CheckpointRefused', 'secure_checkpoint_loading']
