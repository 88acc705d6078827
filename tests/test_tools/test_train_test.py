"""tools/train.py and tools/test.py end to end on tiny generated data sets,
for each codebase. Each demo config (both families) is trained once (a
session cache), started from another folder, and the tests read that run:
its logs and metrics; for EMO's, a rerun (seeded: the same numbers),
refuse-to-overwrite and tools/test.py on its checkpoint (metrics,
pictures, pickled predictions equal to the unfolded model's, mmdet TTA),
and for segmentation's a resumed copy (bit-equal to the uninterrupted
run). Then the stock mmdet and mmseg tools on the same configs, the flags
and the one-line errors."""
import glob
import json
import math
import os
import os.path as osp
import pickle
import re
import shutil

import pytest
import torch
from conftest import LOADER_OPTIONS, REPO_ROOT
from conftest import run_python as run
from conftest import run_tool
from mmengine.config import Config

DET_DEMO = osp.join(REPO_ROOT, 'configs/demo/ssdlite_emo_1m_shapes.py')
SEG_DEMO = osp.join(REPO_ROOT, 'configs/demo/deeplabv3_emo_1m_scenes.py')
CLS_DEMO = osp.join(REPO_ROOT, 'configs/demo/emo_1m_shapes_cls.py')
# The same demos with EMOv2-1M: what depends on the backbone (training)
# runs for both families.
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
        f'train_cfg.max_epochs={n}', f'train_cfg.val_interval={n}',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1', 'train_dataloader.batch_size=4',
        'val_dataloader.batch_size=4', 'test_dataloader.batch_size=4'
    ]


# What differs between the codebases: the data, the run's length, its last
# two checkpoints, the metrics with their upper bounds, the losses logged,
# the pictures tools/test.py draws and (segmentation, the one resumed here)
# the resumed run's log line.
TASKS = {
    'det':
    dict(
        config=DET_DEMO,
        data='tiny_coco',
        length=iterations(3),
        checkpoints=('iter_2.pth', 'iter_3.pth'),
        metrics={
            'coco/bbox_mAP': 1,
            'coco/bbox_mAP_50': 1
        },
        losses=('loss_cls', 'loss_bbox'),
        pictures='*.png',
        num_pictures=4),
    'seg':
    dict(
        config=SEG_DEMO,
        data='tiny_scenes',
        length=iterations(3),
        checkpoints=('iter_2.pth', 'iter_3.pth'),
        resumed='resumed epoch: 0, iter: 2',
        metrics={
            'mIoU': 100,
            'aAcc': 100
        },
        losses=('decode.loss_ce', 'aux.loss_ce'),
        pictures='**/*.png',
        num_pictures=3),
    'cls':
    dict(
        config=CLS_DEMO,
        data='tiny_imagenet',
        length=epochs(2),
        checkpoints=('epoch_1.pth', 'epoch_2.pth'),
        metrics={
            'accuracy/top1': 100,
            'accuracy/top5': 100,
            'accuracy/top1_origin': 100
        },
        losses=('loss', ),
        pictures='**/*.png',
        num_pictures=8),
}
TASKS.update({
    f'{task}-v2': dict(TASKS[task], config=config)
    for task, config in V2_DEMOS.items()
})
EMO_TASKS = ('cls', 'det', 'seg')


def per_task(tasks):
    """Parameters for ``tasks``, each in its own pytest-xdist group, so that
    the tests of a task run in the worker that trained its demo once."""
    return [
        pytest.param(task, marks=pytest.mark.xdist_group(task))
        for task in tasks
    ]


def data_root(request, task):
    root = request.getfixturevalue(TASKS[task]['data'])
    return root[0] if isinstance(root, tuple) else root


def options(root, task):
    """The run's settings: data loaded in the main process, but for the
    training loader's one worker (so that the rerun and resume checks cover
    augmentation in a worker process)."""
    return [
        '--cfg-options', f'data_root={root}', *LOADER_OPTIONS,
        'train_dataloader.num_workers=1', *TASKS[task]['length']
    ]


def scalars(work_dir):
    """The rows a run logged (losses, lr, metrics), without timings."""
    path, = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return [{
        k: v
        for k, v in row.items() if 'time' not in k and k != 'eta'
    } for row in rows]


def check_metrics(task, values):
    """Every metric of the task present, finite and in its range (a NaN or
    a metric on another scale fails)."""
    for name, top in TASKS[task]['metrics'].items():
        value = float(values[name])
        assert math.isfinite(value) and 0 <= value <= top, (name, value)


def printed_metrics(out):
    """The metrics of the last test line a tool printed."""
    line = [
        line for line in out.splitlines()
        if re.search(r'(Iter|Epoch)\(test\)', line)
    ][-1]
    return dict(re.findall(r'([\w/]+): (nan|-?[\d.]+)', line))


def train_lines(out):
    return [
        line for line in out.splitlines()
        if re.search(r'(Iter|Epoch)\(train\)', line)
    ]


def load(path):
    return torch.load(path, weights_only=True)


def assert_same_weights(a, b):
    """Bit-equal weights, and EMA weights where the run kept them."""
    parts = [part for part in ('state_dict', 'ema_state_dict') if part in a]
    for part in parts:
        assert a[part].keys() == b[part].keys()
        changed = [
            k for k in a[part] if not torch.equal(a[part][k], b[part][k])
        ]
        assert not changed, (part, changed[:5])


@pytest.fixture(scope='session')
def trained(request, tmp_path_factory):
    """``trained(task)``: the demo config of ``task`` trained once in this
    session by tools/train.py, started in a folder where the config's
    relative data root does not exist (data_root on the command line must
    reach every expanded path: the data sets, the evaluator's annotation
    file). Returns the run's paths and output."""
    runs = {}

    def train(task):
        if task not in runs:
            tmp = tmp_path_factory.mktemp(task)
            root = data_root(request, task)
            elsewhere = tmp / 'elsewhere'
            elsewhere.mkdir()
            work_dir = str(tmp / 'work')
            out = run(
                osp.join(REPO_ROOT, 'tools', 'train.py'),
                TASKS[task]['config'],
                '--work-dir',
                work_dir,
                *options(root, task),
                cwd=str(elsewhere)).stdout
            runs[task] = dict(
                root=root,
                work_dir=work_dir,
                out=out,
                elsewhere=elsewhere,
                checkpoints=[
                    osp.join(work_dir, name)
                    for name in TASKS[task]['checkpoints']
                ])
        return runs[task]

    return train


@pytest.mark.parametrize('task', per_task(sorted(TASKS)))
def test_train_from_another_folder(task, trained):
    """The run wrote its checkpoints and nothing in the folder it started
    from; it logged finite losses (the head's parts among them) and, at the
    end, validation metrics in range."""
    spec, result = TASKS[task], trained(task)
    assert os.listdir(result['elsewhere']) == []
    for checkpoint in result['checkpoints']:
        assert osp.isfile(checkpoint), checkpoint
    rows = scalars(result['work_dir'])
    losses = [row for row in rows if 'loss' in row]
    assert len(losses) == len(train_lines(result['out'])) > 0
    assert all(math.isfinite(row['loss']) for row in losses)
    for name in spec['losses']:
        assert name in losses[-1], (name, losses[-1])
    validated = [row for row in rows if row.keys() & spec['metrics'].keys()]
    assert len(validated) == 1  # once, at the end
    check_metrics(task, validated[0])
    # test.py --resume and the stock tools read this file.
    with open(osp.join(result['work_dir'], 'last_checkpoint')) as f:
        assert f.read().strip() == result['checkpoints'][-1]


@pytest.mark.parametrize('task', per_task(EMO_TASKS))
def test_second_run_in_the_work_dir_is_refused(task, trained):
    """A run into a work dir that holds checkpoints would overwrite them:
    refused with one line naming them, nothing touched."""
    result = trained(task)
    last = result['checkpoints'][-1]
    before = osp.getmtime(last)
    names = ', '.join(
        osp.basename(p)
        for p in sorted(glob.glob(osp.join(result['work_dir'], '*.pth'))))
    status, out = run_tool('train.py', TASKS[task]['config'], '--work-dir',
                           result['work_dir'], *options(result['root'], task))
    assert status == 1, out
    assert f'already holds checkpoints ({names})' in out
    assert 'Traceback' not in out
    assert osp.getmtime(last) == before


@pytest.mark.parametrize('task', per_task(['seg']))
def test_resume_ends_as_the_uninterrupted_run(task, trained, tmp_path):
    """A copy of the run cut back to its next-to-last checkpoint, resumed
    with --resume: it continues from there (the log says so, only the rest
    of the schedule runs) and ends with the uninterrupted run's weights,
    bit for bit. The segmentation demo only: the classification (EMA
    weights too) and detection demos are resumed after a SIGKILL and
    compared bit for bit in test_engine/test_hooks.py."""
    result = trained(task)
    work_dir = str(tmp_path / 'work')
    shutil.copytree(result['work_dir'], work_dir)
    middle, last = (
        osp.join(work_dir, osp.basename(p)) for p in result['checkpoints'])
    os.remove(last)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(middle)
    resumed = run('tools/train.py', TASKS[task]['config'], '--work-dir',
                  work_dir, '--resume', *options(result['root'], task)).stdout
    assert TASKS[task]['resumed'] in resumed
    assert 0 < len(train_lines(resumed)) < len(train_lines(result['out']))
    straight, again = load(result['checkpoints'][-1]), load(last)
    assert straight['meta']['iter'] == again['meta']['iter']
    assert_same_weights(straight, again)


@pytest.mark.parametrize('task', per_task(EMO_TASKS))
def test_rerun_repeats_the_run(task, trained, tmp_path):
    """Every demo config is seeded: trained again (from the repository this
    time), it logs the same losses and metrics and ends with the same
    weights."""
    result = trained(task)
    work_dir = str(tmp_path / 'again')
    run('tools/train.py', TASKS[task]['config'], '--work-dir', work_dir,
        *options(result['root'], task))
    first = scalars(result['work_dir'])
    assert any('loss' in row for row in first)
    assert first == scalars(work_dir)
    name = osp.basename(result['checkpoints'][-1])
    assert_same_weights(
        load(result['checkpoints'][-1]), load(osp.join(work_dir, name)))


@pytest.mark.parametrize('task', per_task(EMO_TASKS))
def test_test_tool(task, trained, tmp_path):
    """tools/test.py on the run's last checkpoint: metrics in range, the
    model folded, one picture per val image, and the predictions dumped
    with --out equal to the unfolded model's. 25-35 s: the test run, and a
    second one for mmdet's TTA (det) or --no-deploy (cls: the runner swaps
    the EMA weights in, so direct inference cannot compare). EMO's runs
    only: the tool's one backbone-dependent step, folding, is checked for
    EMOv2 in test_deployment.py and, through a whole model, in
    test_inference.py."""
    spec, result = TASKS[task], trained(task)
    checkpoint = result['checkpoints'][-1]
    show_dir = tmp_path / 'vis'
    results = tmp_path / 'results.pkl'
    tested = run('tools/test.py', spec['config'], checkpoint, '--work-dir',
                 str(tmp_path / 'work'), '--show-dir', str(show_dir), '--out',
                 str(results), *options(result['root'], task)).stdout
    check_metrics(task, printed_metrics(tested))
    assert 'folded the BatchNorms of' in tested  # folded by default
    pictures = glob.glob(str(show_dir / spec['pictures']), recursive=True)
    assert len(pictures) == spec['num_pictures']
    with open(results, 'rb') as f:
        dumped = pickle.load(f)
    CHECK_TEST[task](task, result, checkpoint, dumped, pictures, tmp_path)


def same_predictions(a, b):
    """Two predictions of a model, BatchNorms folded or not: the same up to
    float rounding (labels and class maps: at most one element in a
    thousand differs, where two scores tie within rounding). Returns how
    many tensors were compared."""
    if isinstance(a, dict) or hasattr(a, 'to_dict'):
        a, b = (x if isinstance(x, dict) else x.to_dict() for x in (a, b))
        assert a.keys() == b.keys()
        return sum(same_predictions(a[key], b[key]) for key in a)
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape
        if a.is_floating_point():
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        else:
            assert (a == b).float().mean() >= 0.999
        return 1
    return 0


def assert_same_boxes(ours, direct, tol=1e-4):
    """Every box of ``ours`` (but those scoring within ``tol`` of the last,
    where the top-k cut falls between ties) is in ``direct``: the same
    label, its score within ``tol``, its corners within 0.01 px. Boxes whose
    scores tie within rounding (a model trained 3 steps has many) may come
    in either order, so they are matched, not compared by position."""
    scores, boxes, labels = ours['scores'], ours['bboxes'], ours['labels']
    for score, box, label in zip(scores, boxes, labels):
        if score <= scores.min() + tol:
            continue
        match = ((direct.labels == label)
                 & ((direct.scores - score).abs() <= tol)
                 & ((direct.bboxes - box).abs().amax(dim=1) <= 1e-2))
        assert match.any(), (float(score), box.tolist(), int(label))


def check_detection(task, result, checkpoint, dumped, pictures, tmp_path):
    """--out holds, for every val image, what the detector predicts when
    run unfolded on it (mmdet's inference API, same checkpoint); --tta
    wraps the detector in mmdet's flip TTA model (the dumped config says
    so) and the merged predictions are scored."""
    from mmdet.apis import inference_detector, init_detector
    images = sorted(glob.glob(osp.join(result['root'], 'val', '*.png')))
    assert sorted(item['img_path'] for item in dumped) == images
    assert len(images) == 4
    model = init_detector(
        Config.fromfile(TASKS[task]['config']), checkpoint, device='cpu')
    for item in dumped:
        direct = inference_detector(model, item['img_path']).pred_instances
        ours = item['pred_instances']
        assert len(ours['scores']) == len(direct.scores) > 0
        torch.testing.assert_close(
            ours['scores'], direct.scores, atol=1e-4, rtol=1e-4)
        assert_same_boxes(ours, direct)
    tta_dir = str(tmp_path / 'tta')
    tested = run('tools/test.py', DET_DEMO, checkpoint, '--work-dir', tta_dir,
                 '--tta', *options(result['root'], 'det')).stdout
    check_metrics('det', printed_metrics(tested))
    dumped = glob.glob(osp.join(tta_dir, '*', 'vis_data', 'config.py')) + \
        glob.glob(osp.join(tta_dir, '*.py'))
    assert dumped and "type='DetTTAModel'" in open(dumped[0]).read()


def check_segmentation(task, result, checkpoint, dumped, pictures, tmp_path):
    """--out holds, for every val image, the class map and logits that
    mmseg's inference API gives with the unfolded model."""
    from mmseg.apis import inference_model, init_model
    images = sorted(
        glob.glob(osp.join(result['root'], 'images', 'validation', '*.jpg')))
    assert sorted(item['img_path'] for item in dumped) == images
    assert len(images) == 3
    model = init_model(
        Config.fromfile(TASKS[task]['config']), checkpoint, device='cpu')
    for item in dumped:
        direct = inference_model(model, item['img_path'])
        ours = item['pred_sem_seg']['data']
        assert ours.shape[-2:] == tuple(item['ori_shape'])
        assert (ours == direct.pred_sem_seg.data).float().mean() >= 0.999
        torch.testing.assert_close(
            item['seg_logits']['data'],
            direct.seg_logits.data,
            atol=1e-4,
            rtol=1e-4)


def check_classification(task, result, checkpoint, dumped, pictures, tmp_path):
    """The pictures: the image with its classes written on a copy enlarged
    from 64 px (the demo config's resize=256). The predictions of the
    unfolded model (tools/test.py --no-deploy, so that the EMA weights are
    tested in both runs alike) equal the folded ones."""
    import cv2
    assert len(glob.glob(osp.join(result['root'], 'val', '*.JPEG'))) == 8
    for picture in pictures:
        drawn = cv2.imread(picture)
        assert drawn is not None and drawn.std() > 1
        assert min(drawn.shape[:2]) >= 256, drawn.shape
    unfolded = tmp_path / 'unfolded.pkl'
    out = run('tools/test.py', TASKS[task]['config'], checkpoint, '--work-dir',
              str(tmp_path / 'unfolded'), '--no-deploy', '--out',
              str(unfolded), *options(result['root'], task)).stdout
    assert 'folded the BatchNorms' not in out
    with open(unfolded, 'rb') as f:
        undeployed = pickle.load(f)
    assert len(dumped) == len(undeployed) == 8
    assert sum(same_predictions(a, b)
               for a, b in zip(dumped, undeployed)) >= 3 * len(dumped)


CHECK_TEST = dict(
    det=check_detection, seg=check_segmentation, cls=check_classification)

# The stock tools take the explicit keys; data_root alone would not reach
# the already expanded dataset settings there. They run EMO's demo configs:
# what they do does not depend on the backbone.
STOCK = {
    'det': ('mmdet', DET_DEMO, 'coco/bbox_mAP', lambda root: [
        f'val_evaluator.ann_file={root}annotations/val.json',
        f'test_evaluator.ann_file={root}annotations/val.json'
    ]),
    'seg': ('mmseg', SEG_DEMO, 'mIoU', lambda root: []),
}


@pytest.mark.parametrize('task', sorted(STOCK))
def test_stock_tools_run_our_config(task, request, tmp_path):
    import importlib
    package, config, metric, extra = STOCK[task]
    root = data_root(request, task)
    tools = osp.join(
        osp.dirname(importlib.import_module(package).__file__), '.mim',
        'tools')
    work_dir = str(tmp_path / 'stock')
    settings = LOADER_OPTIONS + [
        'train_cfg.max_iters=1', 'train_cfg.val_interval=1',
        'train_dataloader.batch_size=2'
    ] + [
        f'{loader}.dataset.data_root={root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + extra(root)
    run(
        osp.join(tools, 'train.py'), config, '--work-dir', work_dir,
        '--cfg-options', *settings)
    checkpoint = osp.join(work_dir, 'iter_1.pth')
    assert osp.isfile(checkpoint)
    tested = run(
        osp.join(tools, 'test.py'), config, checkpoint, '--work-dir', work_dir,
        '--cfg-options', *settings).stdout
    value = float(printed_metrics(tested)[metric])
    assert math.isfinite(value) and value >= 0, value


@pytest.mark.parametrize('args,message', [
    (['configs/nowhere.py'], 'config configs/nowhere.py does not exist'),
    ([DET_DEMO, '--cfg-options', 'data_root=/no/such/dir/'
      ], "data_root '/no/such/dir/' of train_dataloader does not exist"),
    ([DET_DEMO, '--resume', '/no/ckpt.pth'
      ], 'checkpoint /no/ckpt.pth does not'),
])
def test_train_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    status, out = run_tool('train.py', *args, '--work-dir', tmp_path)
    assert status == 1, out
    assert message in out
    assert 'Traceback' not in out


def test_tools_name_a_corrupt_or_truncated_checkpoint(tmp_path):
    whole = tmp_path / 'whole.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, whole)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(whole.read_bytes()[:2000])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_text('not a checkpoint')

    status, out = run_tool('test.py', CLS_DEMO, truncated, '--work-dir',
                           tmp_path / 'work')
    assert status == 1 and 'Traceback' not in out
    assert (f'error: checkpoint {truncated} is corrupt, truncated or not a '
            'PyTorch checkpoint (RuntimeError: PytorchStreamReader failed '
            'reading zip archive') in out
    status, out = run_tool('train.py', CLS_DEMO, '--resume', garbage,
                           '--work-dir', tmp_path / 'work')
    assert status == 1 and 'Traceback' not in out
    assert (f'error: --resume checkpoint {garbage} is corrupt, truncated or '
            'not a PyTorch checkpoint (UnpicklingError: ') in out
    # An intact file holding objects weights_only does not know passes.
    import numpy as np

    from emo_mm.utils import check_checkpoint
    odd = tmp_path / 'numpy_meta.pth'
    torch.save({'meta': {'x': np.zeros(2)}}, odd)
    check_checkpoint(str(odd))


def test_test_tool_takes_the_authors_file(authors_net_pth, tiny_imagenet,
                                          tmp_path):
    """tools/test.py CONFIG net.pth on an ImageNet-format folder."""
    out = run('tools/test.py',
              'configs/imagenet/emo_1m_in1k.py', authors_net_pth, '--work-dir',
              str(tmp_path / 'work'), '--cfg-options',
              f'data_root={tiny_imagenet}', *LOADER_OPTIONS,
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
