"""emo_mm.engine.runner: data sets that are not in COCO or ADE20K format stop
the tools with one line naming the data set and what is wrong, not a data
loader traceback (other errors keep theirs); --amp without a GPU is refused
in one line."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from conftest import run_python as run
from conftest import run_tool
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

from emo_mm import UserError
from emo_mm.config import load_config
from emo_mm.demo_data import make_scenes_ade20k
from emo_mm.engine import runner

DET_DEMO = osp.join(REPO_ROOT, 'configs', 'demo', 'ssdlite_emo_1m_shapes.py')
SEG_DEMO = osp.join(REPO_ROOT, 'configs', 'demo', 'deeplabv3_emo_1m_scenes.py')


def _coco_root(tmp_path, train_json: str):
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'train').mkdir()
    (root / 'annotations' / 'train.json').write_text(train_json)
    return str(root) + '/'


def _build_train_loader(config, data_root):
    cfg = load_config(config, {'data_root': data_root})
    init_default_scope(cfg.default_scope)
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    return runner.ToolRunner.build_dataloader(cfg.train_dataloader)


def test_tools_train_names_a_coco_file_that_is_a_json_list(tmp_path):
    root = _coco_root(tmp_path, json.dumps([{'file_name': 'a.jpg'}]))
    # A process of its own: the error comes from runner.train(), after the
    # runner is built (seeds, logger, default scope, worker settings).
    proc = run(
        'tools/train.py',
        DET_DEMO,
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        f'data_root={root}',
        check=False)
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stdout
    assert (f"error: cannot read the data set CocoDataset (data_root "
            f"'{root}', ann_file 'annotations/train.json'") in proc.stdout
    assert 'not supported' in proc.stdout  # pycocotools' own reason


@pytest.mark.parametrize('content,message', [
    ('images: []', 'is not JSON .JSONDecodeError'),
    (json.dumps({'info': {}}),
     r"misses the key\(s\) \['images', 'annotations', 'categories'\]"),
    (json.dumps({
        'images': [],
        'annotations': [],
        'categories': [{
            'id': 1,
            'name': 'circle'
        }]
    }), 'is empty'),
    (json.dumps({
        'images': [{
            'id': 1,
            'file_name': 'x.jpg',
            'width': 8,
            'height': 8
        }],
        'annotations': [{
            'id': 1,
            'image_id': 1,
            'category_id': 1,
            'bbox': [0, 0, 4, 4],
            'area': 16,
            'iscrowd': 0
        }],
        'categories': [{
            'id': 1,
            'name': 'circle'
        }]
    }), 'img_path .*x.jpg of sample 0 .* does not exist'),
])
def test_coco_format_errors(tmp_path, content, message):
    root = _coco_root(tmp_path, content)
    with pytest.raises(UserError, match=message):
        _build_train_loader(DET_DEMO, root)


def test_missing_coco_annotation_file(tmp_path):
    root = _coco_root(tmp_path, '{}')
    os.remove(osp.join(root, 'annotations', 'train.json'))
    with pytest.raises(
            UserError, match=r'annotation file .*train\.json of CocoDataset'):
        _build_train_loader(DET_DEMO, root)


def test_a_bug_in_a_data_pipeline_keeps_its_traceback(tmp_path):
    """Only recognised bad input becomes a one-line UserError: a wrong
    argument in a pipeline step propagates as the TypeError it is."""
    root = _coco_root(
        tmp_path,
        json.dumps({
            'images': [],
            'annotations': [],
            'categories': []
        }))
    cfg = load_config(DET_DEMO, {'data_root': root})
    init_default_scope(cfg.default_scope)
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_dataloader.dataset.pipeline[2]['no_such_argument'] = 1
    with pytest.raises(TypeError, match='no_such_argument'):
        runner.ToolRunner.build_dataloader(cfg.train_dataloader)


@pytest.fixture
def scenes(tmp_path):
    root = tmp_path / 'scenes'
    make_scenes_ade20k(str(root), num_train=3, num_val=1)
    return root


def test_ade_colour_segmentation_maps(scenes):
    folder = scenes / 'annotations' / 'training'
    for name in os.listdir(folder):
        label = np.array(Image.open(folder / name))
        Image.fromarray(np.stack([label] * 3, -1)).save(folder / name)
    with pytest.raises(UserError, match='has mode RGB; ADE20K-format'):
        _build_train_loader(SEG_DEMO, str(scenes) + '/')


def test_ade_missing_segmentation_maps(scenes):
    folder = scenes / 'annotations' / 'training'
    for name in os.listdir(folder):
        os.remove(folder / name)
    with pytest.raises(
            UserError, match=r'seg_map_path .*\.png of sample 0 .*does not'):
        _build_train_loader(SEG_DEMO, str(scenes) + '/')


def test_ade_without_images(scenes):
    folder = scenes / 'images' / 'training'
    for name in os.listdir(folder):
        os.remove(folder / name)
    with pytest.raises(UserError, match='is empty'):
        _build_train_loader(SEG_DEMO, str(scenes) + '/')


def test_good_data_passes(scenes):
    loader = _build_train_loader(SEG_DEMO, str(scenes) + '/')
    assert len(loader.dataset) == 3


CLS_DEMO = osp.join(REPO_ROOT, 'configs', 'demo', 'emo_1m_shapes_cls.py')


def test_amp_needs_a_gpu(tmp_path, monkeypatch):
    cfg = Config.fromfile(CLS_DEMO)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(UserError, match='--amp needs a GPU'):
        runner.enable_amp(cfg)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    runner.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    monkeypatch.undo()
    if not torch.cuda.is_available():  # the tool, on this machine
        status, out = run_tool('train.py', CLS_DEMO, '--amp', '--work-dir',
                               tmp_path)
        assert status != 0 and 'Traceback' not in out
        assert 'error: --amp needs a GPU' in out
