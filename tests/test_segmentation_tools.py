"""The segmentation demo through the tools, end to end on a tiny generated
ADE20K-format set: tools/train.py (checkpoint, mIoU, resume), tools/test.py,
the stock mmseg tools, and the data set generator."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from emo_mm.datasets import make_scenes_ade20k
from emo_mm.datasets.synthetic_ade20k import CLASS_IDS, ade20k_metainfo

from conftest import run_python as run

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(REPO, 'configs/demo/deeplabv3_emo_1m_scenes.py')



@pytest.fixture(scope='module')
def tiny_scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('scenes')
    counts = make_scenes_ade20k(str(root), num_train=6, num_val=3, seed=1)
    return str(root) + '/', counts


def tiny_options(data_root, max_iters):
    return [
        '--cfg-options', f'data_root={data_root}',
        f'train_cfg.max_iters={max_iters}',
        f'train_cfg.val_interval={max_iters}',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=5',
        'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False'
    ]


def test_generated_set_follows_ade20k(tiny_scenes):
    root, counts = tiny_scenes
    images = sorted(glob.glob(root + 'images/training/*.jpg'))
    labels = sorted(glob.glob(root + 'annotations/training/*.png'))
    assert [osp.basename(p) for p in images] == [
        f'ADE_train_{i:08d}.jpg' for i in range(1, 7)
    ]
    assert [p[:-4] for p in map(osp.basename, labels)] == [
        p[:-4] for p in map(osp.basename, images)
    ]
    assert len(glob.glob(root + 'annotations/validation/*.png')) == 3
    label = cv2.imread(labels[0], cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint8 and label.ndim == 2
    assert label.shape == cv2.imread(images[0]).shape[:2]
    allowed = set(CLASS_IDS.values()) | {0}
    seen = set()
    for path in labels:
        seen |= set(np.unique(cv2.imread(path, cv2.IMREAD_UNCHANGED)))
    assert seen <= allowed
    assert {CLASS_IDS['sky'], 0} <= seen  # sky in every scene, some "other"
    assert set(counts['training']) == seen


def test_same_seed_same_bytes(tmp_path):
    for name in ('a', 'b'):
        make_scenes_ade20k(str(tmp_path / name), 2, 1, seed=3)
    for path in glob.glob(str(tmp_path / 'a' / '**' / '*.*'), recursive=True):
        twin = path.replace(str(tmp_path / 'a'), str(tmp_path / 'b'))
        with open(path, 'rb') as f, open(twin, 'rb') as g:
            assert f.read() == g.read(), path


def test_demo_metainfo_selects_ade20k_classes(tiny_scenes):
    """The demo config names the classes as ADE20KDataset does, so their
    ids map to 0..8, and "other" is ignored."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    root, _ = tiny_scenes
    cfg = Config.fromfile(DEMO)
    assert dict(cfg.metainfo) == {
        k: list(v) if k == 'palette' else v
        for k, v in ade20k_metainfo().items()
    }
    init_default_scope('mmseg')
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = root
    dataset = DATASETS.build(dataset_cfg)
    label_map = dataset.metainfo['label_map']
    for new, name in enumerate(cfg.metainfo.classes):
        assert label_map[CLASS_IDS[name] - 1] == new  # after reduce_zero_label
    item = dataset[0]
    values = set(item['data_samples'].gt_sem_seg.data.unique().tolist())
    assert values <= set(range(9)) | {255}


def test_train_resume_test(tiny_scenes, tmp_path):
    root, _ = tiny_scenes
    work_dir = str(tmp_path / 'work')
    out = run('tools/train.py', DEMO, '--work-dir', work_dir,
              *tiny_options(root, 2)).stdout
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    assert 'mIoU:' in out  # validation ran on the val split
    assert 'decode.loss_ce' in out and 'aux.loss_ce' in out

    refused = run('tools/train.py', DEMO, '--work-dir', work_dir,
                  *tiny_options(root, 2), check=False)
    assert refused.returncode != 0
    assert 'already holds checkpoints' in refused.stdout

    resumed = run('tools/train.py', DEMO, '--work-dir', work_dir, '--resume',
                  *tiny_options(root, 3)).stdout
    assert 'resumed epoch: 0, iter: 2' in resumed
    assert 'Iter(train) [3/3]' in resumed
    assert 'Iter(train) [1/3]' not in resumed

    show_dir = tmp_path / 'vis'
    results = tmp_path / 'results.pkl'
    tested = run('tools/test.py', DEMO, osp.join(work_dir, 'iter_3.pth'),
                 '--work-dir', work_dir, '--show-dir', str(show_dir), '--out',
                 str(results), *tiny_options(root, 3)).stdout
    assert 'mIoU:' in tested and 'aAcc:' in tested
    assert results.is_file()
    assert len(glob.glob(str(show_dir / '**' / '*.png'), recursive=True)) == 3


def test_stock_mmseg_tools_run_our_config(tiny_scenes, tmp_path):
    import mmseg
    root, _ = tiny_scenes
    tools = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
    work_dir = str(tmp_path / 'stock')
    # The stock tools take the explicit keys; data_root alone would not reach
    # the already expanded dataset settings there.
    options = tiny_options(root, 1)[2:] + [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
    ]
    run(osp.join(tools, 'train.py'), DEMO, '--work-dir', work_dir,
        '--cfg-options', *options)
    ckpt = osp.join(work_dir, 'iter_1.pth')
    assert osp.isfile(ckpt)
    tested = run(osp.join(tools, 'test.py'), DEMO, ckpt, '--work-dir',
                 work_dir, '--cfg-options', *options).stdout
    assert 'mIoU:' in tested


def test_make_demo_ade20k_refuses_to_overwrite(tmp_path):
    root = tmp_path / 'scenes'
    first = run('tools/misc/make_demo_ade20k.py', str(root), '--num-train',
                '2', '--num-val', '1')
    assert 'sky' in first.stdout
    label = root / 'annotations' / 'training' / 'ADE_train_00000001.png'
    before = label.stat().st_mtime_ns
    again = run('tools/misc/make_demo_ade20k.py', str(root), check=False)
    assert again.returncode == 1
    assert 'already contains files' in again.stdout
    assert label.stat().st_mtime_ns == before
