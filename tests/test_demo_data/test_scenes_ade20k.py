"""emo_mm.demo_data.scenes_ade20k: the generated scenes follow ADE20K's
layout and label ids, the same seed gives the same bytes, the demo config's
metainfo selects the generated classes, and tools/misc/make_demo_ade20k.py
refuses to overwrite."""
import glob
import os.path as osp

import cv2
import numpy as np
from conftest import REPO_ROOT, run_tool
from mmengine.config import Config

from emo_mm.demo_data import make_scenes_ade20k
from emo_mm.demo_data.scenes_ade20k import CLASS_IDS, ade20k_metainfo

DEMO = osp.join(REPO_ROOT, 'configs/demo/deeplabv3_emo_1m_scenes.py')


def test_generated_set_follows_ade20k(tiny_scenes):
    root, counts = tiny_scenes
    images = sorted(glob.glob(root + 'images/training/*.jpg'))
    labels = sorted(glob.glob(root + 'annotations/training/*.png'))
    assert [osp.basename(p) for p in images
            ] == [f'ADE_train_{i:08d}.jpg' for i in range(1, 7)]
    assert [p[:-4] for p in map(osp.basename, labels)
            ] == [p[:-4] for p in map(osp.basename, images)]
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
    """Both runs write the same six files (2 + 1 images and their labels),
    byte for byte."""
    files = {}
    for name in ('a', 'b'):
        root = tmp_path / name
        make_scenes_ade20k(str(root), 2, 1, seed=3)
        files[name] = {
            osp.relpath(path, root)
            for path in glob.glob(str(root / '**' / '*'), recursive=True)
            if osp.isfile(path)
        }
    expected = {
        f'{kind}/{split}/ADE_{prefix}_{i:08d}.{ext}'
        for split, prefix, num in (('training', 'train', 2), ('validation',
                                                              'val', 1))
        for kind, ext in (('images', 'jpg'), ('annotations', 'png'))
        for i in range(1, num + 1)
    }
    assert files['a'] == files['b'] == expected
    for rel in sorted(files['a']):
        assert (tmp_path / 'a' / rel).read_bytes() == (tmp_path / 'b' /
                                                       rel).read_bytes(), rel


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
    status, out = run_tool('misc/make_demo_ade20k.py', root, '--num-train',
                           '2', '--num-val', '1')
    assert status == 0, out
    assert 'sky' in out
    label = root / 'annotations' / 'training' / 'ADE_train_00000001.png'
    before = label.stat().st_mtime_ns
    status, out = run_tool('misc/make_demo_ade20k.py', root)
    assert status == 1
    assert 'already contains files' in out
    assert label.stat().st_mtime_ns == before
