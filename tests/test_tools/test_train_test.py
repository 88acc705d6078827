"""tools/train.py and tools/test.py end to end on tiny generated data sets,
once for each codebase: train (from another folder, data_root on the command
line), refuse to overwrite, resume, test with pictures, pickled predictions
and (mmdet) TTA; the stock mmdet and mmseg tools on the same configs; the
flags and the one-line errors."""
import glob
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config

from conftest import LOADER_OPTIONS, REPO_ROOT
from conftest import run_python as run

DET_DEMO = osp.join(REPO_ROOT, 'configs/demo/ssdlite_emo_1m_shapes.py')
SEG_DEMO = osp.join(REPO_ROOT, 'configs/demo/deeplabv3_emo_1m_scenes.py')
CLS_DEMO = osp.join(REPO_ROOT, 'configs/demo/emo_1m_shapes_cls.py')
# The same demos with EMOv2-1M: every path runs for both families.
V2_DEMOS = dict(
    det=osp.join(REPO_ROOT, 'configs/demo/ssdlite_emov2_1m_shapes.py'),
    seg=osp.join(REPO_ROOT, 'configs/demo/deeplabv3_emov2_1m_scenes.py'),
    cls=osp.join(REPO_ROOT, 'configs/demo/emov2_1m_shapes_cls.py'))


def iterations(n):
    return [
        f'train_cfg.max_iters={n}', f'train_cfg.val_interval={n}',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=5',
        'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2'
    ]


def epochs(n):
    return [
        f'train_cfg.max_epochs={n}', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1',
        'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4',
        'test_dataloader.batch_size=4'
    ]


# What differs between the codebases in the train -> resume -> test run.
TASKS = {
    'det':
    dict(config=DET_DEMO, data='tiny_coco', length=iterations, runs=(2, 3),
         checkpoint='iter_{}.pth', trained=('coco/bbox_mAP', ),
         resumed=('resumed epoch: 0, iter: 2', 'Iter(train) [3/3]'),
         not_resumed='Iter(train) [1/3]', tested=('coco/bbox_mAP_50', ),
         pictures='*.png', num_pictures=4),
    'seg':
    dict(config=SEG_DEMO, data='tiny_scenes', length=iterations, runs=(2, 3),
         checkpoint='iter_{}.pth',
         trained=('mIoU:', 'decode.loss_ce', 'aux.loss_ce'),
         resumed=('resumed epoch: 0, iter: 2', 'Iter(train) [3/3]'),
         not_resumed='Iter(train) [1/3]', tested=('mIoU:', 'aAcc:'),
         pictures='**/*.png', num_pictures=3),
    'cls':
    dict(config=CLS_DEMO, data='tiny_imagenet', length=epochs, runs=(1, 2),
         checkpoint='epoch_{}.pth', trained=('accuracy/top1:', ),
         resumed=('resumed epoch: 1', ), not_resumed=None,
         tested=('accuracy/top1:', 'accuracy/top5:'), pictures='**/*.png',
         num_pictures=8),
}
TASKS.update({
    f'{task}-v2': dict(TASKS[task], config=config)
    for task, config in V2_DEMOS.items()
})


def data_root(request, task):
    root = request.getfixturevalue(TASKS[task.split('-')[0]]['data'])
    return root[0] if isinstance(root, tuple) else root


def options(root, task, n):
    return ['--cfg-options', f'data_root={root}', *LOADER_OPTIONS,
            *TASKS[task.split('-')[0]]['length'](n)]


@pytest.mark.parametrize('task', sorted(TASKS))
def test_train_resume_test(task, request, tmp_path):
    spec = TASKS[task]
    root, config = data_root(request, task), spec['config']
    first, then = spec['runs']
    work_dir = str(tmp_path / 'work')
    # From a folder where the config's relative data root does not exist:
    # data_root on the command line reaches every expanded path (datasets,
    # the evaluator's annotation file) and nothing is written there.
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    out = run(osp.join(REPO_ROOT, 'tools', 'train.py'), config, '--work-dir',
              work_dir, *options(root, task, first),
              cwd=str(elsewhere)).stdout
    assert not osp.exists(elsewhere / 'data')
    last = osp.join(work_dir, spec['checkpoint'].format(first))
    assert osp.isfile(last)
    for text in spec['trained']:  # training logged, validation ran
        assert text in out, text

    # A second run in the same work dir would overwrite: refused, untouched.
    before = osp.getmtime(last)
    names = ', '.join(osp.basename(p) for p in sorted(
        glob.glob(osp.join(work_dir, '*.pth'))))
    refused = run('tools/train.py', config, '--work-dir', work_dir,
                  *options(root, task, first), check=False)
    assert refused.returncode != 0
    assert f'already holds checkpoints ({names})' in refused.stdout
    assert osp.getmtime(last) == before

    resumed = run('tools/train.py', config, '--work-dir', work_dir,
                  '--resume', *options(root, task, then)).stdout
    for text in spec['resumed']:
        assert text in resumed, text
    if spec['not_resumed']:
        assert spec['not_resumed'] not in resumed
    checkpoint = osp.join(work_dir, spec['checkpoint'].format(then))
    assert osp.isfile(checkpoint)

    show_dir = tmp_path / 'vis'
    results = tmp_path / 'results.pkl'
    tested = run('tools/test.py', config, checkpoint, '--work-dir', work_dir,
                 '--show-dir', str(show_dir), '--out', str(results),
                 *options(root, task, then)).stdout
    for text in spec['tested']:
        assert text in tested, text
    assert 'folded the BatchNorms of' in tested  # tested folded by default
    assert results.is_file()
    unfolded = tmp_path / 'unfolded.pkl'
    run('tools/test.py', config, checkpoint, '--work-dir', work_dir,
        '--no-deploy', '--out', str(unfolded), *options(root, task, then))
    check_same_predictions(results, unfolded)
    pictures = glob.glob(str(show_dir / spec['pictures']), recursive=True)
    assert len(pictures) == spec['num_pictures']
    CHECK_TEST[task.split('-')[0]](config, root, checkpoint, results,
                                   pictures, tmp_path)


def check_same_predictions(folded, unfolded):
    """Two dumps of tools/test.py, BatchNorms folded and not: the same
    predictions up to float rounding (labels and class maps: at most one in
    a thousand elements differs, where two scores tie within rounding)."""
    with open(folded, 'rb') as f:
        a = pickle.load(f)
    with open(unfolded, 'rb') as f:
        b = pickle.load(f)
    assert len(a) == len(b) > 0
    compared = 0

    def same(x, y):
        nonlocal compared
        if isinstance(x, dict):
            assert x.keys() == y.keys()
            for key in x:
                same(x[key], y[key])
        elif isinstance(x, torch.Tensor):
            assert x.shape == y.shape
            if x.is_floating_point():
                torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
            else:
                assert (x == y).float().mean() >= 0.999
            compared += 1

    for x, y in zip(a, b):
        same(x, y)
    assert compared >= len(a)


def check_detection(config, root, checkpoint, results, pictures, tmp_path):
    """--out holds, for every val image, what the detector predicts when
    run directly on it (mmdet's inference API, same checkpoint); --tta
    wraps the detector in mmdet's flip TTA model (the dumped config says
    so) and the merged predictions are scored."""
    from mmdet.apis import inference_detector, init_detector
    with open(results, 'rb') as f:
        dumped = pickle.load(f)
    images = sorted(glob.glob(osp.join(root, 'val', '*.png')))
    assert len(dumped) == len(images) == 4
    model = init_detector(Config.fromfile(config), checkpoint, device='cpu')
    for item in dumped:
        direct = inference_detector(model, item['img_path']).pred_instances
        ours = item['pred_instances']
        assert len(ours['scores']) == len(direct.scores) > 0
        torch.testing.assert_close(ours['scores'], direct.scores,
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours['bboxes'], direct.bboxes,
                                   atol=1e-2, rtol=1e-4)
        assert torch.equal(ours['labels'], direct.labels)

    tta_dir = str(tmp_path / 'tta')
    tested = run('tools/test.py', config, checkpoint, '--work-dir',
                 tta_dir, '--tta', *options(root, 'det', 3)).stdout
    assert 'coco/bbox_mAP_50' in tested
    dumped = glob.glob(osp.join(tta_dir, '*', 'vis_data', 'config.py')) + \
        glob.glob(osp.join(tta_dir, '*.py'))
    assert dumped and "type='DetTTAModel'" in open(dumped[0]).read()


def check_segmentation(config, root, checkpoint, results, pictures,
                       tmp_path):
    with open(results, 'rb') as f:
        assert len(pickle.load(f)) == 3  # one prediction per val image


def check_classification(config, root, checkpoint, results, pictures,
                         tmp_path):
    import cv2
    assert len(glob.glob(osp.join(root, 'val', '*.JPEG'))) == 8
    for picture in pictures:
        drawn = cv2.imread(picture)
        # The image with its classes written on a copy enlarged from 64 px
        # (the demo config's resize=256): readable, not blank.
        assert drawn is not None and drawn.std() > 1
        assert min(drawn.shape[:2]) >= 256, drawn.shape


CHECK_TEST = dict(det=check_detection, seg=check_segmentation,
                  cls=check_classification)

# The stock tools take the explicit keys; data_root alone would not reach
# the already expanded dataset settings there.
STOCK = {
    'det': ('mmdet', DET_DEMO, 'coco/bbox_mAP', lambda root: [
        f'val_evaluator.ann_file={root}annotations/val.json',
        f'test_evaluator.ann_file={root}annotations/val.json'
    ]),
    'seg': ('mmseg', SEG_DEMO, 'mIoU:', lambda root: []),
}
STOCK.update({
    f'{task}-v2': (package, V2_DEMOS[task], metric, extra)
    for task, (package, _, metric, extra) in list(STOCK.items())
})


@pytest.mark.parametrize('task', sorted(STOCK))
def test_stock_tools_run_our_config(task, request, tmp_path):
    import importlib
    package, config, metric, extra = STOCK[task]
    root = data_root(request, task)
    tools = osp.join(osp.dirname(importlib.import_module(package).__file__),
                     '.mim', 'tools')
    work_dir = str(tmp_path / 'stock')
    settings = LOADER_OPTIONS + iterations(1) + [
        f'{loader}.dataset.data_root={root}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
    ] + extra(root)
    run(osp.join(tools, 'train.py'), config, '--work-dir', work_dir,
        '--cfg-options', *settings)
    checkpoint = osp.join(work_dir, 'iter_1.pth')
    assert osp.isfile(checkpoint)
    tested = run(osp.join(tools, 'test.py'), config, checkpoint,
                 '--work-dir', work_dir, '--cfg-options', *settings).stdout
    assert metric in tested


@pytest.mark.parametrize('args,message', [
    (['configs/nowhere.py'], 'config configs/nowhere.py does not exist'),
    ([DET_DEMO, '--cfg-options', 'data_root=/no/such/dir/'],
     "data_root '/no/such/dir/' of train_dataloader does not exist"),
    ([DET_DEMO, '--resume', '/no/ckpt.pth'], 'checkpoint /no/ckpt.pth does not'),
])
def test_train_errors_are_one_line(args, message, tmp_path):
    proc = run('tools/train.py', *args, '--work-dir', str(tmp_path),
               check=False)
    assert proc.returncode != 0
    assert message in proc.stdout
    assert 'Traceback' not in proc.stdout


def test_tools_name_a_corrupt_or_truncated_checkpoint(tmp_path):
    whole = tmp_path / 'whole.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, whole)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(whole.read_bytes()[:2000])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_text('not a checkpoint')

    proc = run('tools/test.py', CLS_DEMO, str(truncated), '--work-dir',
               str(tmp_path / 'work'), check=False)
    assert proc.returncode != 0 and 'Traceback' not in proc.stdout
    assert (f'error: checkpoint {truncated} is corrupt, truncated or not a '
            'PyTorch checkpoint (RuntimeError: PytorchStreamReader failed '
            'reading zip archive') in proc.stdout
    proc = run('tools/train.py', CLS_DEMO, '--resume', str(garbage),
               '--work-dir', str(tmp_path / 'work'), check=False)
    assert proc.returncode != 0 and 'Traceback' not in proc.stdout
    assert (f'error: --resume checkpoint {garbage} is corrupt, truncated or '
            'not a PyTorch checkpoint (UnpicklingError: ') in proc.stdout
    # An intact file holding objects weights_only does not know passes.
    import numpy as np

    from emo_mm.utils import check_checkpoint
    odd = tmp_path / 'numpy_meta.pth'
    torch.save({'meta': {'x': np.zeros(2)}}, odd)
    check_checkpoint(str(odd))


def test_test_tool_takes_the_authors_file(authors_net_pth, tiny_imagenet,
                                          tmp_path):
    """tools/test.py CONFIG net.pth on an ImageNet-format folder."""
    out = run('tools/test.py', 'configs/imagenet/emo_1m_in1k.py',
              authors_net_pth, '--work-dir', str(tmp_path / 'work'),
              '--cfg-options', f'data_root={tiny_imagenet}', *LOADER_OPTIONS,
              'val_dataloader.batch_size=4',
              'test_dataloader.batch_size=4').stdout
    assert 'accuracy/top1:' in out and 'accuracy/top5:' in out
    assert 'accuracy/top1_origin:' in out  # raw and EMA both reported
    assert 'do not match exactly' not in out  # every key was loaded


def test_auto_scale_lr(tiny_shapes, tmp_path):
    """--auto-scale-lr: batch 8 against the demo's base 32 trains at a
    quarter of the lr."""
    work = str(tmp_path / 'work')
    out = run('tools/train.py', CLS_DEMO, '--auto-scale-lr', '--work-dir',
              work, '--cfg-options', f'data_root={tiny_shapes}',
              *LOADER_OPTIONS, 'train_cfg.max_epochs=1',
              'train_dataloader.batch_size=8').stdout
    assert 'Scaling the original LR by 0.25' in out
    checkpoint = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=True)
    groups = checkpoint['optimizer']['param_groups']
    base_lr = Config.fromfile(CLS_DEMO).optim_wrapper.optimizer.lr
    assert groups and all(g['initial_lr'] == pytest.approx(base_lr / 4)
                          for g in groups)
