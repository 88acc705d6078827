"""emo_mm.demo_data.scenes_ade20k: the generated scenes follow ADE20K's
layout and label ids, the same seed gives the same bytes, the demo config's
metainfo selects the generated classes, and tools/misc/make_demo_ade20k.py
refuses to overwrite."""
import glob
import os.path as osp

import cv2
import numpy as np
from mmengine.config import Config

from conftest import REPO_ROOT
from conftest import run_python as run
from emo_mm.demo_data import make_scenes_ade20k
from emo_mm.demo_data.scenes_ade20k import CLASS_IDS, ade20k_metainfo

DEMO = osp.join(REPO_ROOT, 'configs/demo/deeplabv3_emo_1m_scenes.py')


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
