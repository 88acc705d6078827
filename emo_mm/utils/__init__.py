from .safe_load import (check_checkpoint, read_checkpoint,
                        secure_checkpoint_loading)

__all__ = ['check_checkpoint', 'read_checkpoint', 'secure_checkpoint_loading']
