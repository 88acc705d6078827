"""Registering a class whose codebase is slow to import, imported on use.

``mmdet.models`` takes about 2 s to import (``mmpretrain.models`` imports it
too where mmdet is installed). Importing it in ``import emo_mm`` would make
every tool and every process of a segmentation or classification run pay
for it, so emo_mm's mmdet and mmpretrain classes are registered in the root
``MODELS`` as builders that import them when a config builds one.
"""
import importlib

from mmengine.registry import MODELS


def register_lazily(package: str, name: str, submodule: str):
    """Register class ``name`` of ``<package>.<submodule>`` in the root
    ``MODELS`` without importing it.

    Returns:
        callable: A module ``__getattr__`` for ``package``, so that
        ``from <package> import <name>`` gives the class itself.
    """
    path = f'{package}.{submodule}'

    def load():
        return getattr(importlib.import_module(path), name)

    def build(*args, **kwargs):
        return load()(*args, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f'Build ``{path}.{name}`` (imported on first use).'
    MODELS.register_module(name=name, module=build)

    def module_getattr(attr):
        if attr == name:
            return load()
        raise AttributeError(f'module {package!r} has no attribute {attr!r}')

    return module_getattr
