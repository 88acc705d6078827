"""Let ``torch.load(weights_only=True)`` read the checkpoints mmengine saves.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``; mmengine
0.10.7 calls it without the argument, and its checkpoints hold a few
non-tensor objects (the message hub's ``HistoryBuffer`` with NumPy arrays,
NumPy scalars), so test, ``--resume`` and ``load_from`` all fail. Rather than
turning the safety check off, we allow exactly those types.

``HistoryBuffer.__getstate__`` also stores its statistics methods, which
pickle writes as ``getattr(HistoryBuffer, 'min')``, so ``getattr`` is allowed
too. The unpickler still calls only allowed callables, so what ``getattr``
returns stays inert data unless it is itself allowed.
"""
import builtins

import numpy as np
import torch


def _numpy_globals():
    # NumPy 2 moved numpy.core to numpy._core; pickles name whichever wrote
    # them, so allow both spellings where they exist.
    found = [np.ndarray, np.dtype]
    for module_name in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        try:
            module = __import__(module_name, fromlist=['_reconstruct'])
        except ImportError:
            continue
        found += [module._reconstruct, module.scalar]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType')
        ]
    return found


def allow_mmengine_checkpoints() -> None:
    """Register the types of mmengine checkpoints as safe to unpickle."""
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return  # torch < 2.4 does not restrict torch.load by default
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals(
        [HistoryBuffer, builtins.getattr, *_numpy_globals()])
