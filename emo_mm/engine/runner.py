"""What tools/train.py and tools/test.py run: mmengine's Runner with the
tools' safeguards, and the switches of their command lines.

Every check raises :class:`~emo_mm.errors.UserError` naming the bad value.
The functions here implement the tools' flags (``enable_amp`` is
``--amp``), so their messages name the flags.
"""
import glob
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, ConfigDict
from mmengine.dist import master_only
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..codebases import get_codebase
from ..config import innermost_dataset
from ..errors import UserError
from .distributed import init_cpu_process_group, use_cpu_ddp


class ToolRunner(Runner):
    """mmengine's Runner with the tools' two safeguards.

    * A resumed run writes its config dump beside its own log
      (``work_dir/<timestamp>/``) when ``work_dir`` already holds the first
      run's dump, instead of overwriting it.
    * A data set whose files are wrong (a COCO annotation file missing, not
      JSON or not COCO's; no samples; images or segmentation maps missing or
      not label maps) stops the run with a :class:`UserError` naming the
      data set and files, not a traceback from a data loader worker. Any
      other error keeps its traceback.
    """

    @master_only
    def dump_config(self) -> None:
        name = (
            osp.basename(self.cfg.filename)
            if self.cfg.filename else f'{self.timestamp}.py')
        path = osp.join(self.work_dir, name)
        if osp.exists(path):
            os.makedirs(self.log_dir, exist_ok=True)
            path = osp.join(self.log_dir, name)
        self.cfg.dump(path)

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        where = _describe_dataset(dataloader)
        check_coco_annotations(dataloader, where)
        try:
            loader = Runner.build_dataloader(
                dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        except Exception as err:
            if _builds_empty(dataloader):  # samplers fail on empty sets
                raise UserError(_empty_message(where)) from err
            raise
        check_dataset(loader.dataset, where)
        return loader


def build_runner(cfg: Config) -> Runner:
    """The config's runner: :class:`ToolRunner`, or its own ``runner_type``."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return ToolRunner.from_cfg(cfg)


def _builds_empty(dataloader) -> bool:
    """Whether the loader's data set builds, with no samples."""
    import copy

    from mmengine.registry import DATASETS
    if not isinstance(dataloader, dict) or not isinstance(
            dataloader.get('dataset'), dict):
        return False
    dataset = copy.deepcopy(dataloader['dataset'])
    # mmengine's serialisation is what fails (np.concatenate of nothing).
    innermost_dataset(dataset)['serialize_data'] = False
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
    dataset = innermost_dataset(dataloader.get('dataset', {}))
    if not isinstance(dataset, dict):
        return repr(dataset)
    parts = [
        f'{key} {dataset[key]!r}'
        for key in ('data_root', 'ann_file', 'data_prefix') if dataset.get(key)
    ]
    return f'{dataset.get("type", "?")} ({", ".join(parts)})'


def check_coco_annotations(dataloader, where: str) -> None:
    """A COCO data set's local annotation file exists and is a JSON object
    with the three lists that pycocotools indexes.

    Raises:
        UserError: naming the file and what is wrong with it.
    """
    import json
    if not isinstance(dataloader, dict):
        return
    dataset = innermost_dataset(dataloader.get('dataset'))
    if not (isinstance(dataset, dict) and 'Coco' in str(dataset.get('type'))
            and isinstance(dataset.get('ann_file'), str)):
        return
    path = osp.join(dataset.get('data_root') or '', dataset['ann_file'])
    if '://' in path:
        return
    if not osp.isfile(path):
        raise UserError(f'annotation file {path} of {where} does not exist')
    try:
        with open(path) as f:
            content = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f'cannot read the data set {where}: {path} is not '
                        f'JSON ({type(err).__name__}: {err})') from err
    if not isinstance(content, dict):
        raise UserError(
            f'cannot read the data set {where}: {path} holds a JSON '
            f'{type(content).__name__}, not supported: COCO annotations '
            'are an object with "images", "annotations" and "categories"')
    missing = [
        key for key in ('images', 'annotations', 'categories')
        if key not in content
    ]
    if missing:
        raise UserError(f'cannot read the data set {where}: {path} misses '
                        f'the key(s) {missing}; COCO annotations have '
                        '"images", "annotations" and "categories"')


def check_dataset(dataset, where: str, samples: int = 3) -> None:
    """The first samples' files exist and segmentation maps are label maps.

    Raises:
        UserError: the data set is empty, an image or segmentation map of
            the first ``samples`` is missing, or a segmentation map has
            colour channels (ADE20K's hold one class index per pixel).
    """
    if len(dataset) == 0:
        raise UserError(_empty_message(where))
    if not hasattr(dataset, 'get_data_info'):
        return
    from PIL import Image
    for index in range(min(samples, len(dataset))):
        info = dataset.get_data_info(index)
        for key in ('img_path', 'seg_map_path'):
            path = info.get(key)
            if isinstance(path, str) and '://' not in path and \
                    not osp.isfile(path):
                raise UserError(f'{key} {path} of sample {index} of {where} '
                                'does not exist')
        seg_map = info.get('seg_map_path')
        if isinstance(seg_map, str) and osp.isfile(seg_map):
            try:
                with Image.open(seg_map) as image:
                    mode = image.mode
            except OSError as err:
                raise UserError(f'segmentation map {seg_map} of {where} is '
                                f'not an image: {err}') from err
            if mode not in ('L', 'P', 'I', 'I;16'):
                raise UserError(
                    f'segmentation map {seg_map} of {where} has mode {mode};'
                    ' ADE20K-format maps are single-channel PNGs of class '
                    'indices (0 = ignore), not colour pictures')


def check_data_root(cfg: Config, *loaders: str) -> None:
    """Fail early, with the path, when a local data root does not exist."""
    for loader in loaders:
        dataset = innermost_dataset((cfg.get(loader) or {}).get('dataset'))
        root = dataset.get('data_root') if isinstance(dataset, dict) else None
        if root and '://' not in root and not osp.isdir(root):
            raise UserError(
                f'data_root {root!r} of {loader} does not exist; point the '
                f'config at your data, e.g. --cfg-options data_root=/path/')


def default_work_dir(config_path: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def refuse_to_overwrite(work_dir: str, resume: Optional[str]) -> None:
    """A new run would overwrite the checkpoints of an earlier one."""
    if resume:
        return
    found = sorted(glob.glob(osp.join(work_dir, '*.pth')))
    if found:
        names = ', '.join(osp.basename(f) for f in found[:3])
        raise UserError(
            f'work dir {work_dir} already holds checkpoints ({names}'
            f'{", ..." if len(found) > 3 else ""}); continue it with '
            '--resume, or choose another --work-dir')


def enable_amp(cfg: Config) -> None:
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)

    # mmengine's AmpOptimWrapper asserts one of these devices.
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        raise UserError('--amp needs a GPU (mmengine\'s AmpOptimWrapper runs '
                        'on CUDA, NPU, MLU or MUSA devices); on the CPU, '
                        'train without --amp (fp32)')
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_wrapper == 'AmpOptimWrapper':
        return
    if optim_wrapper != 'OptimWrapper':
        raise UserError(f'--amp needs optim_wrapper type OptimWrapper, the '
                        f'config has {optim_wrapper}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
        raise UserError('--auto-scale-lr needs auto_scale_lr.base_batch_size '
                        'in the config')
    cfg.auto_scale_lr.enable = True


def enable_visualization(cfg: Config, show: bool, show_dir: Optional[str],
                         wait_time: float) -> None:
    """Turn on the codebase's visualization hook for tools/test.py."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise UserError('--show/--show-dir need default_hooks.visualization '
                        'in the config')
    # Absolute: pictures must not land under the run's timestamped work dir.
    show_dir = osp.abspath(show_dir) if show_dir else None
    get_codebase(cfg.default_scope).show_results(cfg, hook, show, show_dir,
                                                 wait_time)


def enable_tta(cfg: Config) -> None:
    """Wrap the model in its test-time-augmentation model, as the stock
    test tools do; a codebase's default where the config has none."""
    dataset = innermost_dataset(cfg.test_dataloader.dataset)
    default = get_codebase(cfg.default_scope).default_tta
    if default is not None:
        default(cfg, dataset.pipeline)
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise UserError('--tta needs tta_model and tta_pipeline in the '
                        'config')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset.pipeline = cfg.tta_pipeline


def enable_deploy(cfg: Config) -> None:
    """Test the model with its BatchNorms folded: the pair of
    :class:`~emo_mm.engine.hooks.DeployHook`."""
    cfg.custom_hooks = [
        *cfg.get('custom_hooks', []),
        dict(type='DeployHook', priority='LOWEST'),
        dict(type='DeployHook', restore=True, priority='HIGHEST')
    ]


def add_dump_metric(runner: Runner, out: str) -> None:
    """``tools/test.py --out``: pickle the predictions to ``out``."""
    if not out.endswith(('.pkl', '.pickle')):
        raise UserError(f'--out {out} must be a .pkl or .pickle file')
    metric = get_codebase(runner.cfg.default_scope).dump_metric(out)
    runner.test_evaluator.metrics.append(metric)


def setup_launcher(cfg: Config, launcher: str, local_rank: int = 0) -> None:
    """Set ``cfg.launcher`` (and ``LOCAL_RANK`` from ``--local-rank`` where
    torch.distributed.launch passed it; torchrun sets it itself); on a
    machine without GPUs, make ``pytorch``
    (torchrun) work with gloo: start the process group here, because
    mmengine's ``init_dist`` would call ``torch.cuda.set_device``, and use
    the CPU DDP wrapper (SyncBN layers synchronise over gloo)."""
    import torch
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise UserError(f'--launcher {launcher} needs GPUs; on CPUs start '
                        'the processes with torchrun (tools/dist_train.sh) '
                        'and --launcher pytorch')
    try:
        init_cpu_process_group()
        use_cpu_ddp(cfg)
    except RuntimeError as err:
        raise UserError(str(err)) from err


def add_common_arguments(parser, cfg_options_example: str) -> None:
    """The options tools/train.py and tools/test.py share: ``--cfg-options``
    (with an example for the help), ``--launcher`` and ``--local-rank``."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=f'override config entries, e.g. {cfg_options_example}')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
