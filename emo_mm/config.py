"""Reading configs: the one loader every tool uses, and what is read from a
config (its data sets, its input size) or built from it (its model).

The tools work for mmdet, mmseg and mmpretrain configs alike; the codebase is
told by the config's ``default_scope`` (:mod:`emo_mm.codebases`).
"""
import importlib
import os.path as osp
from typing import Optional, Tuple

import torch.nn as nn
from mmengine.config import Config

from .codebases import get_codebase
from .errors import UserError

# A keep-ratio resize such as mmdet's (1333, 800) gives each image its own
# size; count a 16:10 landscape image instead, as mmdet's get_flops default
# of 1280x800 does.
KEEP_RATIO_ASPECT = 1.6


def load_config(path: str,
                cfg_options: Optional[dict] = None,
                inference: bool = False) -> Config:
    """Read a config, apply ``--cfg-options`` and check what can be checked.

    ``data_root`` given in ``--cfg-options`` replaces the old root everywhere
    it was already expanded into (dataset roots, annotation files of the
    evaluators), so ``--cfg-options data_root=/data/coco/`` just works.

    Args:
        path (str): Config file; its ``custom_imports`` register emo_mm.
        cfg_options (dict, optional): Overrides merged into the config.
        inference (bool): Prepare the model for single-process inference
            on weights given separately: the backbone's ``init_cfg`` (a
            pretrained-weights URL in the EMO configs) is dropped, so nothing
            is downloaded, and SyncBN becomes BN. Defaults to False.

    Raises:
        UserError: The file does not exist, or its ``default_scope`` is not
            one of :data:`emo_mm.codebases.CODEBASES`.
    """
    if not osp.isfile(path):
        raise UserError(f'config {path} does not exist')
    cfg = Config.fromfile(path)
    old_root = cfg.get('data_root')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    new_root = cfg.get('data_root')
    if old_root and new_root and new_root != old_root:
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                    'val_evaluator', 'test_evaluator'):
            if cfg.get(key) is not None:
                cfg[key] = _replace_root(cfg[key], old_root, new_root)
    get_codebase(cfg.get('default_scope'), f'config {path}')
    if inference:
        backbone = cfg.model.get('backbone')
        if backbone is not None:
            backbone.init_cfg = None
        cfg.model.pop('pretrained', None)  # mmseg's older way to name them
        sync_bn_to_bn(cfg.model)
    return cfg


def _replace_root(node, old: str, new: str):
    if isinstance(node, str):
        return new + node[len(old):] if node.startswith(old) else node
    if isinstance(node, dict):
        return type(node)({
            k: _replace_root(v, old, new)
            for k, v in node.items()
        })
    if isinstance(node, (list, tuple)):
        return type(node)(_replace_root(v, old, new) for v in node)
    return node


def innermost_dataset(dataset):
    """The data set a wrapper config holds (RepeatDataset and friends: its
    ``dataset``; ConcatDataset: the first of its ``datasets``)."""
    while isinstance(dataset, dict):
        if isinstance(dataset.get('dataset'), dict):
            dataset = dataset['dataset']
        elif 'pipeline' not in dataset and dataset.get('datasets'):
            dataset = dataset['datasets'][0]
        else:
            break
    return dataset


def sync_bn_to_bn(cfg) -> None:
    """Replace, in place, every ``norm_cfg`` of type SyncBN in ``cfg`` (a
    config dict, list or tuple, searched at any depth) by plain BN.

    SyncBN needs a distributed process group; a single process has none, and
    the two layers hold the same parameters and buffers.
    """
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if (key == 'norm_cfg' and isinstance(value, dict)
                    and value.get('type') in ('SyncBN', 'MMSyncBN')):
                value['type'] = 'BN'
            else:
                sync_bn_to_bn(value)
    elif isinstance(cfg, (list, tuple)):
        for item in cfg:
            sync_bn_to_bn(item)


def _find(pipeline: list, name: str, key: str) -> Optional[dict]:
    """The first transform of type ``name`` (any scope) that sets ``key``."""
    for transform in pipeline:
        kind = transform.get('type', '').split('.')[-1]
        if kind == name and key in transform:
            return transform
    return None


def _pair(size) -> Tuple[int, int]:
    """An int or a 2-sequence as a pair of ints (order kept)."""
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def input_shape(cfg: Config) -> Tuple[Tuple[int, int], str]:
    """The (H, W) at which a config's model sees an image, and whence.

    Order: mmseg's ``crop_size`` (h, w); a test-pipeline ``CenterCrop``
    ``crop_size`` (w, h, mmpretrain); a test-pipeline ``Resize`` ``scale``
    (w, h): used as is without ``keep_ratio``, and with it the short side
    with a 16:10 landscape width capped by the long side and rounded down to
    a multiple of 32 (1333x800 -> 1280x800). The result is padded up to the
    data preprocessor's ``pad_size_divisor`` (mmdet) as the model would see.

    Returns:
        tuple: ``((H, W), description)``.

    Raises:
        UserError: No input size can be found (pass one explicitly).
    """
    dataset = innermost_dataset(
        cfg.get('test_dataloader', {}).get('dataset', {}))
    pipeline = (dataset
                or {}).get('pipeline') or cfg.get('test_pipeline') or []
    center_crop = _find(pipeline, 'CenterCrop', 'crop_size')
    resize = _find(pipeline, 'Resize', 'scale')
    codebase = get_codebase(cfg.get('default_scope'))
    if codebase.size_from_crop_size and cfg.get('crop_size'):
        shape = _pair(cfg.crop_size)
        source = f'crop_size={shape}'
    elif center_crop:
        w, h = _pair(center_crop['crop_size'])
        shape = (h, w)
        source = f'test pipeline CenterCrop crop_size={(w, h)}'
    elif resize:
        w, h = _pair(resize['scale'])
        source = f'test pipeline Resize scale={(w, h)}'
        if resize.get('keep_ratio', False):
            short, long = min(w, h), max(w, h)
            width = min(long, int(short * KEEP_RATIO_ASPECT)) // 32 * 32
            shape = (short, width)
            source += (" keep_ratio=True: a 16:10 image, as mmdet's "
                       'get_flops 1280x800')
        else:
            shape = (h, w)
    else:
        raise UserError(
            'no input size found in the config (crop_size, test pipeline '
            'CenterCrop/Resize); give shape=(H, W)')
    divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1)
    padded = tuple(-(-s // divisor) * divisor for s in shape)
    if padded != shape:
        source += f', padded to a multiple of {divisor}'
    return padded, source


def build_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in the config's scope, in eval mode.

    The weights stay random: ``init_weights`` is never called, so the
    backbone's ``Pretrained`` init_cfg downloads nothing. SyncBN layers
    become BN (they need a process group to run; the two hold the same
    parameters).
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    scope = cfg.get('default_scope')
    get_codebase(scope)
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry')
    model = registry.MODELS.build(cfg.model)
    return revert_sync_batchnorm(model).eval()
