"""emo_mm.demo_data.shapes_coco: reproducible, valid COCO, loadable by
mmdet; tools/misc/make_demo_coco.py writes it and its command line
(emo_mm.demo_data.demo_data_main) does not overwrite existing files."""
import json
import os.path as osp

import cv2
import pytest
from conftest import run_tool

from emo_mm import UserError
from emo_mm.demo_data import demo_data_main, make_shapes_coco

NUM_TRAIN, NUM_VAL = 12, 4


def _load_json(root, split):
    with open(osp.join(root, 'annotations', f'{split}.json')) as f:
        return json.load(f)


def _read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """Two runs with seed 0 and one with seed 1: (roots, metainfo)."""
    roots = {}
    for name, seed in (('a', 0), ('b', 0), ('other', 1)):
        root = str(tmp_path_factory.mktemp(f'shapes_{name}'))
        metainfo = make_shapes_coco(
            root, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=seed)
        roots[name] = root
    return roots, metainfo


def test_same_seed_same_bytes(dataset):
    roots, _ = dataset
    for split, num in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        name = osp.join('annotations', f'{split}.json')
        assert _read_bytes(osp.join(roots['a'], name)) == _read_bytes(
            osp.join(roots['b'], name))
        for image in _load_json(roots['a'], split)['images']:
            name = osp.join(split, image['file_name'])
            assert _read_bytes(osp.join(roots['a'], name)) == _read_bytes(
                osp.join(roots['b'], name))
        assert len(_load_json(roots['a'], split)['images']) == num


def test_other_seed_differs(dataset):
    roots, _ = dataset
    assert _load_json(roots['a'],
                      'train') != _load_json(roots['other'], 'train')
    name = osp.join('train', '000000.png')
    assert _read_bytes(osp.join(roots['a'], name)) != _read_bytes(
        osp.join(roots['other'], name))


@pytest.mark.parametrize('split', ['train', 'val'])
def test_valid_coco(dataset, split):
    from pycocotools.coco import COCO
    roots, metainfo = dataset
    root = roots['a']
    coco = COCO(osp.join(root, 'annotations', f'{split}.json'))
    cats = coco.loadCats(coco.getCatIds())
    assert tuple(c['name'] for c in cats) == metainfo['classes']
    assert len(metainfo['palette']) == len(metainfo['classes'])
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        img = cv2.imread(osp.join(root, split, info['file_name']))
        assert img.shape[:2] == (info['height'], info['width'])
        assert 256 <= info['width'] <= 384 and 256 <= info['height'] <= 384
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert 1 <= len(anns) <= 4
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= info['width'] and y + h <= info['height']
            # Sized for the SSDLite anchors (48..304 px at 320).
            assert 30 <= max(w, h) <= 260
            assert 0 < ann['area'] <= w * h
            assert ann['iscrowd'] == 0
    if split == 'train':
        used = {ann['category_id'] for ann in coco.dataset['annotations']}
        assert used == set(coco.getCatIds())


def test_mmdet_coco_dataset_loads(dataset):
    from mmdet.datasets import CocoDataset
    roots, metainfo = dataset
    for split in ('train', 'val'):
        ds = CocoDataset(
            data_root=roots['a'],
            ann_file=f'annotations/{split}.json',
            data_prefix=dict(img=f'{split}/'),
            metainfo=metainfo,
            pipeline=[])
        coco = _load_json(roots['a'], split)
        assert len(ds) == len(coco['images'])
        instances = [i for info in ds for i in info['instances']]
        assert len(instances) == len(coco['annotations'])
        labels = {i['bbox_label'] for i in instances}
        assert labels <= set(range(len(metainfo['classes'])))
        assert osp.isfile(ds[0]['img_path'])


def test_cli_writes_new_root(tmp_path):
    root = str(tmp_path / 'new')
    status, out = run_tool('misc/make_demo_coco.py', root, '--num-train', '2',
                           '--num-val', '1')
    assert status == 0, out
    assert len(_load_json(root, 'train')['images']) == 2
    assert len(_load_json(root, 'val')['images']) == 1
    assert root in out


def test_cli_refuses_to_overwrite(tmp_path):
    root = tmp_path / 'existing'
    (root / 'annotations').mkdir(parents=True)
    kept = root / 'annotations' / 'train.json'
    kept.write_text('mine')
    args = [str(root), '--num-train', '2', '--num-val', '1']

    def main(argv):
        return demo_data_main(
            'shapes',
            make_shapes_coco,
            dict(num_train=400, num_val=80),
            argv=argv)

    with pytest.raises(UserError, match='--force'):
        main(args)
    assert kept.read_text() == 'mine'
    assert not (root / 'train').exists()
    # With --force it writes over files of the same names.
    main(args + ['--force'])
    assert len(_load_json(str(root), 'train')['images']) == 2
