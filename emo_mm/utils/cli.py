"""What tools/train.py and tools/test.py share: loading and checking configs.

The tools work for mmdet, mmseg and mmpretrain configs alike; the codebase is
told by the config's ``default_scope``.
"""
import glob
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, ConfigDict
from mmengine.dist import master_only
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .safe_load import CheckpointRefused

SCOPES = ('mmdet', 'mmseg', 'mmpretrain')


class ToolError(Exception):
    """A bad command line or config: printed as one line, no traceback."""


# What the tools print as one `error:` line instead of a traceback.
USER_ERRORS = (ToolError, CheckpointRefused)


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config, apply ``--cfg-options`` and check what can be checked.

    ``data_root`` given in ``--cfg-options`` replaces the old root everywhere
    it was already expanded into (dataset roots, annotation files of the
    evaluators), so ``--cfg-options data_root=/data/coco/`` just works.
    """
    if not osp.isfile(path):
        raise ToolError(f'config {path} does not exist')
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
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ToolError(f'config {path} has default_scope={scope!r}; '
                        f'allowed: {list(SCOPES)}')
    return cfg


class ToolRunner(Runner):
    """mmengine's Runner with the tools' two safeguards.

    * A resumed run writes its config dump beside its own log
      (``work_dir/<timestamp>/``) when ``work_dir`` already holds the first
      run's dump, instead of overwriting it.
    * A data set that cannot be built, or that is built but cannot be
      loaded (empty; images or segmentation maps missing or not label maps)
      stops the run with a :class:`ToolError` naming the data set and files,
      not a traceback from a data loader worker.
    """

    @master_only
    def dump_config(self) -> None:
        name = (osp.basename(self.cfg.filename) if self.cfg.filename else
                f'{self.timestamp}.py')
        path = osp.join(self.work_dir, name)
        if osp.exists(path):
            os.makedirs(self.log_dir, exist_ok=True)
            path = osp.join(self.log_dir, name)
        self.cfg.dump(path)

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        where = _describe_dataset(dataloader)
        try:
            loader = Runner.build_dataloader(
                dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        except (OSError, ValueError, KeyError, TypeError, IndexError,
                AssertionError) as err:
            if _builds_empty(dataloader):  # samplers fail on empty sets
                raise ToolError(_empty_message(where)) from err
            raise ToolError(f'cannot read the data set {where}: '
                            f'{type(err).__name__}: {err}') from err
        check_dataset(loader.dataset, where)
        return loader


def build_runner(cfg: Config) -> Runner:
    """The config's runner: :class:`ToolRunner`, or its own ``runner_type``."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return ToolRunner.from_cfg(cfg)


def _innermost(dataset):
    """The data set a wrapper config (RepeatDataset and friends) holds."""
    while isinstance(dataset, dict) and isinstance(dataset.get('dataset'),
                                                   dict):
        dataset = dataset['dataset']
    return dataset


def _builds_empty(dataloader) -> bool:
    """Whether the loader's data set builds, with no samples."""
    import copy

    from mmengine.registry import DATASETS
    if not isinstance(dataloader, dict) or not isinstance(
            dataloader.get('dataset'), dict):
        return False
    dataset = copy.deepcopy(dataloader['dataset'])
    # mmengine's serialisation is what fails (np.concatenate of nothing).
    _innermost(dataset)['serialize_data'] = False
    try:
        return len(DATASETS.build(dataset)) == 0
    except Exception:  # it does not build: report the original error
        return False


def _empty_message(where: str) -> str:
    return (f'the data set {where} is empty: check data_root and that the '
            'annotations are in the expected format (COCO: a JSON object '
            'with "images", "annotations" and "categories"; ADE20K: '
            'images/<split>/*.jpg with annotations/<split>/*.png)')


def _describe_dataset(dataloader) -> str:
    if not isinstance(dataloader, dict):
        return type(dataloader.dataset).__name__
    dataset = _innermost(dataloader.get('dataset', {}))
    if not isinstance(dataset, dict):
        return repr(dataset)
    parts = [f'{key} {dataset[key]!r}'
             for key in ('data_root', 'ann_file', 'data_prefix')
             if dataset.get(key)]
    return f'{dataset.get("type", "?")} ({", ".join(parts)})'


def check_dataset(dataset, where: str, samples: int = 3) -> None:
    """The first samples' files exist and segmentation maps are label maps.

    Raises:
        ToolError: the data set is empty, an image or segmentation map of
            the first ``samples`` is missing, or a segmentation map has
            colour channels (ADE20K's hold one class index per pixel).
    """
    if len(dataset) == 0:
        raise ToolError(_empty_message(where))
    if not hasattr(dataset, 'get_data_info'):
        return
    from PIL import Image
    for index in range(min(samples, len(dataset))):
        info = dataset.get_data_info(index)
        for key in ('img_path', 'seg_map_path'):
            path = info.get(key)
            if isinstance(path, str) and '://' not in path and \
                    not osp.isfile(path):
                raise ToolError(f'{key} {path} of sample {index} of {where} '
                                'does not exist')
        seg_map = info.get('seg_map_path')
        if isinstance(seg_map, str) and osp.isfile(seg_map):
            try:
                with Image.open(seg_map) as image:
                    mode = image.mode
            except OSError as err:
                raise ToolError(f'segmentation map {seg_map} of {where} is '
                                f'not an image: {err}') from err
            if mode not in ('L', 'P', 'I', 'I;16'):
                raise ToolError(
                    f'segmentation map {seg_map} of {where} has mode {mode};'
                    ' ADE20K-format maps are single-channel PNGs of class '
                    'indices (0 = ignore), not colour pictures')


def _replace_root(node, old: str, new: str):
    if isinstance(node, str):
        return new + node[len(old):] if node.startswith(old) else node
    if isinstance(node, dict):
        return type(node)(
            {k: _replace_root(v, old, new)
             for k, v in node.items()})
    if isinstance(node, (list, tuple)):
        return type(node)(_replace_root(v, old, new) for v in node)
    return node


def check_data_root(cfg: Config, *loaders: str) -> None:
    """Fail early, with the path, when a local data root does not exist."""
    for loader in loaders:
        dataset = _innermost((cfg.get(loader) or {}).get('dataset'))
        root = dataset.get('data_root') if isinstance(dataset, dict) else None
        if root and '://' not in root and not osp.isdir(root):
            raise ToolError(
                f'data_root {root!r} of {loader} does not exist; point the '
                f'config at your data, e.g. --cfg-options data_root=/path/')


def check_checkpoint(path: str, what: str = 'checkpoint') -> None:
    """Fail with one line when a checkpoint is missing, unreadable, or
    refused by weights-only loading.

    Local zip-format files (everything torch.save wrote since 1.6) are opened
    memory-mapped, so only their index is read here. A URL is downloaded into
    torch.hub's cache (where the run then finds it), verified where its
    digest is known, and loaded weights-only.
    """
    import pickle
    from urllib.error import URLError

    from mmengine.runner import CheckpointLoader

    from .safe_load import load
    if '://' in path:
        try:
            CheckpointLoader.load_checkpoint(path, map_location='cpu')
        except CheckpointRefused as err:
            raise ToolError(str(err)) from err
        except (URLError, OSError, KeyError) as err:
            raise ToolError(f'{what} {path} could not be fetched '
                            f'({type(err).__name__}: {err})') from err
        return
    if not osp.isfile(path):
        raise ToolError(f'{what} {path} does not exist')
    try:
        load(path, path, mmap=True)
    except CheckpointRefused as err:
        raise ToolError(str(err)) from err
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError,
            OSError) as err:
        if 'mmap' in str(err):  # an old, non-zip file: read it whole
            try:
                load(path, path)
                return
            except CheckpointRefused as refused:
                raise ToolError(str(refused)) from refused
            except Exception as whole:  # noqa: BLE001  (reported below)
                err = whole
        lines = [line.strip() for line in str(err).splitlines()
                 if line.strip()]
        # The weights-only unpickler gives its reason after this marker.
        marker = next((i for i, line in enumerate(lines)
                       if 'Unpickler error:' in line), None)
        if marker is not None:
            tail = ' '.join(lines[marker:marker + 2])
            reason = tail.split('Unpickler error:', 1)[1].strip()
        else:
            reason = lines[0].split('. ')[0] if lines else ''
        reason = reason[:200]
        raise ToolError(f'{what} {path} is corrupt, truncated or not a '
                        f'PyTorch checkpoint ({type(err).__name__}: '
                        f'{reason})') from err


def default_work_dir(config_path: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def refuse_to_overwrite(work_dir: str, resume: Optional[str]) -> None:
    """A new run would overwrite the checkpoints of an earlier one."""
    if resume:
        return
    found = sorted(glob.glob(osp.join(work_dir, '*.pth')))
    if found:
        names = ', '.join(osp.basename(f) for f in found[:3])
        raise ToolError(
            f'work dir {work_dir} already holds checkpoints ({names}'
            f'{", ..." if len(found) > 3 else ""}); continue it with '
            '--resume, or choose another --work-dir')


def enable_amp(cfg: Config) -> None:
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)

    # mmengine's AmpOptimWrapper asserts one of these devices.
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        raise ToolError('--amp needs a GPU (mmengine\'s AmpOptimWrapper runs '
                        'on CUDA, NPU, MLU or MUSA devices); on the CPU, '
                        'train without --amp (fp32)')
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_wrapper == 'AmpOptimWrapper':
        return
    if optim_wrapper != 'OptimWrapper':
        raise ToolError(f'--amp needs optim_wrapper type OptimWrapper, the '
                        f'config has {optim_wrapper}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
        raise ToolError('--auto-scale-lr needs auto_scale_lr.base_batch_size '
                        'in the config')
    cfg.auto_scale_lr.enable = True


def enable_visualization(cfg: Config, show: bool, show_dir: Optional[str],
                         wait_time: float) -> None:
    """Turn on each codebase's visualization hook for tools/test.py."""
    scope = cfg.default_scope
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ToolError('--show/--show-dir need default_hooks.visualization '
                        'in the config')
    show_dir = osp.abspath(show_dir) if show_dir else None
    if scope == 'mmpretrain':
        # Every image: the hook's default interval draws one in 5000.
        hook.update(enable=True, show=show, wait_time=wait_time, interval=1)
        if show_dir:
            hook.out_dir = show_dir
        return
    hook.update(draw=True, show=show, wait_time=wait_time)
    if show_dir and scope == 'mmdet':
        hook.test_out_dir = show_dir  # absolute: not under work_dir/timestamp
    elif show_dir:  # mmseg's hook saves through the visualizer's backend
        cfg.visualizer.save_dir = show_dir
        hook.interval = 1


def _flip_tta_pipeline(test_pipeline) -> list:
    """The config's own test pipeline with a horizontal flip and no flip
    branch after its transforms. (The stock mmdet test.py default has only
    the flips and the packing: without the config's Resize, predictions have
    no scale factor and mmdet fails.)"""
    load, *middle, pack = [dict(t) for t in test_pipeline]
    keys = tuple(pack.get('meta_keys', ('img_id', 'img_path', 'ori_shape',
                                        'img_shape', 'scale_factor')))
    pack['meta_keys'] = keys + tuple(k for k in ('flip', 'flip_direction')
                                     if k not in keys)
    flips = [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip',
                                                    prob=0.)]
    return [load, dict(type='TestTimeAug',
                       transforms=[[t] for t in middle] + [flips, [pack]])]


def enable_tta(cfg: Config) -> None:
    """Wrap the model in its test-time-augmentation model, as the stock
    test tools do; for an mmdet config without one, flip TTA over its own
    test pipeline."""
    if cfg.default_scope == 'mmdet':
        cfg.setdefault(
            'tta_model',
            dict(type='DetTTAModel',
                 tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                              max_per_img=100)))
        if 'tta_pipeline' not in cfg:
            cfg.tta_pipeline = _flip_tta_pipeline(
                _innermost(cfg.test_dataloader.dataset).pipeline)
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ToolError('--tta needs tta_model and tta_pipeline in the '
                        'config')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    _innermost(cfg.test_dataloader.dataset).pipeline = cfg.tta_pipeline


def setup_launcher(cfg: Config, launcher: str) -> None:
    """Set ``cfg.launcher``; on a machine without GPUs, make ``pytorch``
    (torchrun) work with gloo: start the process group here, because
    mmengine's ``init_dist`` would call ``torch.cuda.set_device``, and use
    the CPU DDP wrapper (SyncBN layers synchronise over gloo)."""
    import torch
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ToolError(f'--launcher {launcher} needs GPUs; on CPUs start '
                        'the processes with torchrun (tools/dist_train.sh) '
                        'and --launcher pytorch')
    from emo_mm.engine import init_cpu_process_group, use_cpu_ddp
    try:
        init_cpu_process_group()
        use_cpu_ddp(cfg)
    except RuntimeError as err:
        raise ToolError(str(err)) from err


def set_local_rank(local_rank: int) -> None:
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local_rank.
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


def check_output_folder(root: str, force: bool) -> None:
    """Refuse to write a generated data set into a folder holding files.

    Raises:
        ToolError: ``root`` is a file, or holds files (at any depth) and
            ``force`` is not set.
    """
    if osp.exists(root) and not osp.isdir(root):
        raise ToolError(f'{root} exists and is not a folder')
    if not force and osp.isdir(root):
        for _, _, files in os.walk(root):
            if files:
                raise ToolError(
                    f'{root} already contains files; refusing to overwrite '
                    'them. Choose another folder or pass --force.')


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


def demo_data_main(argv, description: str, make, counts: dict,
                   report=None) -> int:
    """The command line shared by the ``tools/misc/make_demo_*.py`` scripts.

    Parses ``ROOT [--<count> N ...] [--seed S] [--force]``, refuses a ROOT
    holding files unless ``--force``, calls ``make(root, seed=S, **counts)``
    and prints what it wrote, then ``report(args, result)`` if given.

    Args:
        argv (list[str] | None): Arguments; None reads ``sys.argv``.
        description (str): The parser's description.
        make (callable): The data set generator.
        counts (dict): ``make``'s size arguments and their defaults, e.g.
            ``dict(num_train=400)`` (option ``--num-train``).
        report (callable, optional): Prints a summary of ``make``'s result.

    Returns:
        int: The exit code (1 when ROOT is refused).
    """
    import argparse
    import sys
    import time
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('root', help='output folder')
    for name, default in counts.items():
        parser.add_argument(
            '--' + name.replace('_', '-'), type=int, default=default)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--force',
        action='store_true',
        help='write into ROOT even if it already holds files (files of the '
        'same names are overwritten, others are kept)')
    args = parser.parse_args(argv)
    try:
        check_output_folder(args.root, args.force)
    except ToolError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    start = time.perf_counter()
    result = make(
        args.root, seed=args.seed, **{name: getattr(args, name)
                                      for name in counts})
    print(f'wrote {args.root} in {time.perf_counter() - start:.1f} s '
          f'(seed {args.seed})')
    if report is not None:
        report(args, result)
    return 0
