"""tools/train.py and tools/test.py end to end on a tiny generated COCO set,
plus the stock mmdet tools on the same config."""
import glob
import os.path as osp

import pytest

from emo_mm.datasets import make_shapes_coco

from conftest import run_python as run

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(REPO, 'configs/demo/ssdlite_emo_1m_shapes.py')



@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_coco(str(root), num_train=8, num_val=4, seed=1)
    return str(root) + '/'


def tiny_options(data_root, max_iters):
    return [
        '--cfg-options', f'data_root={data_root}',
        f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
        'default_hooks.checkpoint.interval=1', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False',
        'default_hooks.checkpoint.max_keep_ckpts=5',
        'default_hooks.logger.interval=1'
    ]


def test_train_resume_test(tiny_coco, tmp_path):
    work_dir = str(tmp_path / 'work')
    out = run('tools/train.py', DEMO, '--work-dir', work_dir,
              *tiny_options(tiny_coco, 2)).stdout
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    assert 'coco/bbox_mAP' in out  # validation ran on the val split

    # A second run in the same work dir would overwrite: refused, untouched.
    before = osp.getmtime(osp.join(work_dir, 'iter_2.pth'))
    refused = run('tools/train.py', DEMO, '--work-dir', work_dir,
                  *tiny_options(tiny_coco, 2), check=False)
    assert refused.returncode != 0
    assert 'already holds checkpoints (iter_1.pth, iter_2.pth)' in \
        refused.stdout
    assert osp.getmtime(osp.join(work_dir, 'iter_2.pth')) == before

    resumed = run('tools/train.py', DEMO, '--work-dir', work_dir, '--resume',
                  *tiny_options(tiny_coco, 3)).stdout
    assert 'resumed epoch: 0, iter: 2' in resumed
    assert 'Iter(train) [3/3]' in resumed
    assert 'Iter(train) [1/3]' not in resumed
    assert osp.isfile(osp.join(work_dir, 'iter_3.pth'))

    show_dir = tmp_path / 'vis'
    results = tmp_path / 'results.pkl'
    tested = run('tools/test.py', DEMO, osp.join(work_dir, 'iter_3.pth'),
                 '--work-dir', work_dir, '--show-dir', str(show_dir), '--out',
                 str(results), *tiny_options(tiny_coco, 3)).stdout
    assert 'coco/bbox_mAP_50' in tested
    assert len(glob.glob(str(show_dir / '*.png'))) == 4
    check_dumped_predictions(results, osp.join(work_dir, 'iter_3.pth'),
                             tiny_coco)

    # --tta: mmdet's flip TTA model wraps the detector (the dumped config
    # says so) and the merged predictions are scored.
    tta_dir = str(tmp_path / 'tta')
    tested = run('tools/test.py', DEMO, osp.join(work_dir, 'iter_3.pth'),
                 '--work-dir', tta_dir, '--tta',
                 *tiny_options(tiny_coco, 3)).stdout
    assert 'coco/bbox_mAP_50' in tested
    dumped = glob.glob(osp.join(tta_dir, '*', 'vis_data', 'config.py')) + \
        glob.glob(osp.join(tta_dir, '*.py'))
    assert dumped and "type='DetTTAModel'" in open(dumped[0]).read()


def check_dumped_predictions(results, checkpoint, data_root):
    """--out holds, for every val image, what the detector predicts when
    run directly on it (mmdet's inference API, same checkpoint)."""
    import pickle

    import torch
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config
    with open(results, 'rb') as f:
        dumped = pickle.load(f)
    images = sorted(glob.glob(osp.join(data_root, 'val', '*.png')))
    assert len(dumped) == len(images) == 4
    cfg = Config.fromfile(DEMO)
    model = init_detector(cfg, checkpoint, device='cpu')
    for item in dumped:
        direct = inference_detector(model, item['img_path']).pred_instances
        ours = item['pred_instances']
        assert len(ours['scores']) == len(direct.scores) > 0
        torch.testing.assert_close(ours['scores'], direct.scores,
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours['bboxes'], direct.bboxes,
                                   atol=1e-2, rtol=1e-4)
        assert torch.equal(ours['labels'], direct.labels)


def test_data_root_rewrite_works_from_another_folder(tiny_coco, tmp_path):
    """data_root given on the command line reaches the evaluator's
    annotation file too: run from a folder where the config's relative
    data/shapes_coco/ does not exist."""
    import subprocess
    import sys
    work_dir = str(tmp_path / 'work')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), DEMO,
         '--work-dir', work_dir, *tiny_options(tiny_coco, 1)],
        cwd=str(elsewhere), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'coco/bbox_mAP' in proc.stdout
    assert not osp.exists(elsewhere / 'data')


def test_stock_mmdet_tools_run_our_config(tiny_coco, tmp_path):
    import mmdet
    tools = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')
    work_dir = str(tmp_path / 'stock')
    # The stock tools take the explicit keys; data_root alone would not reach
    # the already expanded dataset paths there.
    options = tiny_options(tiny_coco, 1)[2:] + [
        f'train_dataloader.dataset.data_root={tiny_coco}',
        f'val_dataloader.dataset.data_root={tiny_coco}',
        f'test_dataloader.dataset.data_root={tiny_coco}',
        f'val_evaluator.ann_file={tiny_coco}annotations/val.json',
        f'test_evaluator.ann_file={tiny_coco}annotations/val.json',
    ]
    run(osp.join(tools, 'train.py'), DEMO, '--work-dir', work_dir,
        '--cfg-options', *options)
    ckpt = osp.join(work_dir, 'iter_1.pth')
    assert osp.isfile(ckpt)
    tested = run(osp.join(tools, 'test.py'), DEMO, ckpt, '--work-dir',
                 work_dir, '--cfg-options', *options).stdout
    assert 'coco/bbox_mAP' in tested


@pytest.mark.parametrize('args,message', [
    (['configs/nowhere.py'], 'config configs/nowhere.py does not exist'),
    ([DEMO, '--cfg-options', 'data_root=/no/such/dir/'],
     "data_root '/no/such/dir/' of train_dataloader does not exist"),
    ([DEMO, '--resume', '/no/ckpt.pth'], 'checkpoint /no/ckpt.pth does not'),
])
def test_train_errors_are_one_line(args, message, tmp_path):
    proc = run('tools/train.py', *args, '--work-dir', str(tmp_path),
               check=False)
    assert proc.returncode != 0
    assert message in proc.stdout
    assert 'Traceback' not in proc.stdout
