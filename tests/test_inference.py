"""emo_mm.inference (tools/infer.py) draws predictions with the mmdet, mmseg
and mmpretrain inferencers and writes one PNG per input image, of the
input's size."""
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import REPO_ROOT
from emo_mm import UserError
from emo_mm.config import load_config
from emo_mm.demo_data import make_shapes_coco
from emo_mm.inference import build_inferencer, draw_predictions, list_images

SSDLITE_CONFIG = osp.join(REPO_ROOT, 'configs', 'ssdlite', 'emo_1m_coco.py')

DEEPLABV3_CONFIG = osp.join(REPO_ROOT, 'configs', 'deeplabv3',
                            'emo_1m_ade20k.py')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """A folder with a PNG and a JPEG (whose drawing must still be PNG)."""
    root = tmp_path_factory.mktemp('shapes')
    metainfo = make_shapes_coco(str(root), num_train=2, num_val=0)
    folder = root / 'inputs'
    folder.mkdir()
    shutil.copy(root / 'train' / '000000.png', folder / 'a.png')
    img = cv2.imread(str(root / 'train' / '000001.png'))
    cv2.imwrite(str(folder / 'b.jpg'), img)
    return folder, metainfo


def _save_random_checkpoint(config, path, cfg_options, dataset_meta):
    """Random weights of the model the config builds, as a checkpoint."""
    cfg = load_config(config, cfg_options, inference=True)
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dataset_meta)), path)


def _check_outputs(written, folder, out_dir):
    assert sorted(osp.basename(p) for p in written) == ['a.png', 'b.png']
    for path in written:
        assert osp.dirname(path) == osp.join(out_dir, 'vis')
        drawing = cv2.imread(path)
        assert drawing is not None
        stem = osp.splitext(osp.basename(path))[0]
        ext = '.png' if stem == 'a' else '.jpg'
        source = cv2.imread(str(folder / (stem + ext)))
        assert drawing.shape == source.shape


def test_detection(images, tmp_path):
    folder, metainfo = images
    checkpoint = str(tmp_path / 'ssdlite.pth')
    # Four classes: the random head's scores (about 1/5) then pass the
    # test-time score threshold, so boxes do get drawn.
    num_classes = len(metainfo['classes'])
    options = {'model.bbox_head.num_classes': num_classes}
    _save_random_checkpoint(SSDLITE_CONFIG, checkpoint, options,
                            metainfo)
    out_dir = str(tmp_path / 'out')
    written = draw_predictions(SSDLITE_CONFIG, checkpoint, str(folder),
                               out_dir, score_thr=0, cfg_options=options)
    _check_outputs(written, folder, out_dir)
    drawing = cv2.imread(osp.join(out_dir, 'vis', 'a.png'))
    assert np.any(drawing != cv2.imread(str(folder / 'a.png')))


def test_segmentation(images, tmp_path):
    """The real DeepLabV3 config (SyncBN, a weights URL in init_cfg): both
    neutralized, overlays of the input's size written."""
    from mmseg.datasets import ADE20KDataset
    folder, _ = images
    checkpoint = str(tmp_path / 'seg.pth')
    _save_random_checkpoint(DEEPLABV3_CONFIG, checkpoint, None,
                            ADE20KDataset.METAINFO)
    out_dir = str(tmp_path / 'out')
    written = draw_predictions(DEEPLABV3_CONFIG, checkpoint, str(folder),
                               out_dir)
    _check_outputs(written, folder, out_dir)
    drawing = cv2.imread(osp.join(out_dir, 'vis', 'a.png'))
    assert np.any(drawing != cv2.imread(str(folder / 'a.png')))


def test_batchnorms_are_folded_by_default(images, tmp_path, monkeypatch):
    """infer.py folds the BatchNorms (every iRMB and the backbone) unless
    told not to, and draws the same overlays as the unfolded model."""
    import emo_mm.inference as inference
    from mmseg.datasets import ADE20KDataset
    folder, _ = images
    checkpoint = str(tmp_path / 'seg.pth')
    _save_random_checkpoint(DEEPLABV3_CONFIG, checkpoint, None,
                            ADE20KDataset.METAINFO)
    folded = []
    real = inference.fold_batchnorms
    monkeypatch.setattr(inference, 'fold_batchnorms',
                        lambda model: folded.append(real(model)))
    drawings = {}
    for deploy in (True, False):
        out_dir = str(tmp_path / f'deploy{deploy}')
        draw_predictions(DEEPLABV3_CONFIG, checkpoint, str(folder), out_dir,
                         deploy=deploy)
        drawings[deploy] = cv2.imread(osp.join(out_dir, 'vis', 'a.png'))
    assert len(folded) == 1 and folded[0] > 10  # the deploy=True run only
    same = np.mean(drawings[True] == drawings[False])
    assert same > 0.999


def test_unsupported_scope():
    cfg = Config(dict(default_scope='mmocr', model=dict(type='X')))
    with pytest.raises(UserError, match='mmocr'):
        build_inferencer(cfg, None, 'cpu')


def test_missing_input(tmp_path):
    with pytest.raises(UserError, match='neither'):
        list_images(str(tmp_path / 'nothing.png'))
    with pytest.raises(UserError, match='no images'):
        list_images(str(tmp_path))


def test_classification(images, tmp_path, capsys):
    """An ImageNet config with random weights: top class printed and drawn."""
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    folder, _ = images
    config = osp.join(REPO_ROOT, 'configs', 'imagenet', 'emo_1m_in1k.py')
    checkpoint = str(tmp_path / 'cls.pth')
    _save_random_checkpoint(config, checkpoint, None,
                            dict(classes=IMAGENET_CATEGORIES))
    out_dir = str(tmp_path / 'out')
    written = draw_predictions(config, checkpoint, str(folder), out_dir)
    _check_outputs(written, folder, out_dir)
    printed = capsys.readouterr().out
    # What the classifier predicts through the config's own test pipeline
    # and data preprocessor, run here without the tool.
    from mmengine.dataset import Compose
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS
    cfg = load_config(config, inference=True)
    init_default_scope('mmpretrain')
    # mmpretrain keeps the normalisation beside the model; the Runner and
    # the inferencer put it in.
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint)
    model.eval()
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    for name in ('a.png', 'b.jpg'):
        data = pipeline(dict(img_path=str(folder / name)))
        batch = model.data_preprocessor(
            dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
            False)
        with torch.no_grad():
            sample = model(**batch, mode='predict')[0]
        label = int(sample.pred_label)
        score = float(sample.pred_score[label])
        assert (f'{folder / name}: {IMAGENET_CATEGORIES[label]} '
                f'({score:.3f})') in printed, printed
