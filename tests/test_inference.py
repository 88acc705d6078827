"""emo_mm.inference (tools/infer.py) draws predictions with the mmdet, mmseg
and mmpretrain inferencers and writes one PNG per input image, of the
input's size."""
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

from emo_mm import UserError
from emo_mm.config import load_config
from emo_mm.demo_data import make_shapes_coco
from emo_mm.inference import build_inferencer, draw_predictions, list_images

SSDLITE_CONFIG = osp.join(REPO_ROOT, 'configs', 'ssdlite', 'emo_1m_coco.py')

DEEPLABV3_CONFIG = osp.join(REPO_ROOT, 'configs', 'deeplabv3',
                            'emo_1m_ade20k.py')
DEEPLABV3_EMOV2_CONFIG = osp.join(REPO_ROOT, 'configs', 'deeplabv3',
                                  'emov2_1m_ade20k.py')
# Drawings blend the boxes' edges and the class map into the image with
# opacity 0.8 (DetLocalVisualizer's alpha, MMSegInferencer's opacity).
ALPHA = 0.8


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


def _save_random_checkpoint(config,
                            path,
                            cfg_options,
                            dataset_meta,
                            trained_like=False):
    """Random weights of the model the config builds, as a checkpoint. With
    ``trained_like``, BatchNorms have random affines and running statistics
    and LayerScales are about 0.5, as trained ones could be: folding them is
    then far from the identity it is at initialisation."""
    cfg = load_config(config, cfg_options, inference=True)
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    if trained_like:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith('gamma'):
                    param.uniform_(0.3, 0.7, generator=gen)
            for m in model.modules():
                if isinstance(m, _BatchNorm):
                    m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                    m.running_var.uniform_(0.5, 2, generator=gen)
                    m.weight.uniform_(0.5, 1.5, generator=gen)
                    m.bias.uniform_(-0.5, 0.5, generator=gen)
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


@pytest.fixture
def drawn(monkeypatch):
    """``[(inferencer, samples)]``: each inferencer that draw_predictions
    builds and the data samples it drew, image by image (taken as it hands
    them to its postprocess, after drawing them)."""
    import emo_mm.inference as inference
    built = []
    real = inference.build_inferencer

    def build(*args):
        inferencer = real(*args)
        samples = []
        postprocess = inferencer.postprocess

        def record(preds, *rest, **kwargs):
            samples.extend(preds)
            return postprocess(preds, *rest, **kwargs)

        inferencer.postprocess = record
        built.append((inferencer, samples))
        return inferencer

    monkeypatch.setattr(inference, 'build_inferencer', build)
    return built


def _blend(image, colors):
    """What the visualizers draw: ``colors`` over ``image``, opacity
    ALPHA."""
    return image * (1 - ALPHA) + colors * ALPHA


def test_detection(images, tmp_path, drawn):
    """The predicted boxes (the top three: test_cfg.max_per_img) are drawn
    where they are, in their class's colour, and the image is left as it
    was away from them and their labels."""
    folder, metainfo = images
    checkpoint = str(tmp_path / 'ssdlite.pth')
    options = {
        'model.bbox_head.num_classes': len(metainfo['classes']),
        'model.test_cfg.max_per_img': 3
    }
    _save_random_checkpoint(SSDLITE_CONFIG, checkpoint, options, metainfo)
    out_dir = str(tmp_path / 'out')
    written = draw_predictions(
        SSDLITE_CONFIG,
        checkpoint,
        str(folder),
        out_dir,
        score_thr=0,
        cfg_options=options)
    _check_outputs(written, folder, out_dir)
    (inferencer, samples), = drawn
    boxes = samples[0].pred_instances  # a.png's
    assert len(boxes) == 3 and (boxes.scores > 0).all()  # all drawn
    drawing = cv2.imread(osp.join(out_dir, 'vis', 'a.png'))[..., ::-1]
    image = cv2.imread(str(folder / 'a.png'))[..., ::-1].astype(float)
    height, width = image.shape[:2]
    palette = np.array(inferencer.visualizer.dataset_meta['palette'])
    near = np.zeros((height, width), bool)
    for (x1, y1, x2, y2), label in zip(boxes.bboxes.tolist(),
                                       boxes.labels.tolist()):
        # The middles of the left, right and bottom edges (the label sits
        # on the top one), on the 3-pixel line.
        xm, ym = round((x1 + x2) / 2), round((y1 + y2) / 2)
        for x, y in ((x1, ym), (x2, ym), (xm, y2)):
            x, y = min(round(x), width - 1), min(round(y), height - 1)
            want = _blend(image[y, x], palette[label])
            assert np.abs(drawing[y, x] - want).max() <= 3, (x, y, label)
        # The box's line and its label (text from the top-left corner,
        # wider than these boxes).
        near[max(round(y1) - 3, 0):round(y2) + 4,
             max(round(x1) - 3, 0):max(round(x2),
                                       round(x1) + 120) + 4] = True
    assert (~near).mean() > 0.5
    assert (drawing[~near] == image[~near]).all()


def test_segmentation(images, tmp_path, drawn):
    """The real DeepLabV3 config (SyncBN, a weights URL in init_cfg): both
    neutralized, overlays of the input's size written: each pixel in the
    palette colour of its predicted class over the image, but where the
    class names are written."""
    from mmseg.datasets import ADE20KDataset
    folder, _ = images
    checkpoint = str(tmp_path / 'seg.pth')
    _save_random_checkpoint(DEEPLABV3_CONFIG, checkpoint, None,
                            ADE20KDataset.METAINFO)
    out_dir = str(tmp_path / 'out')
    written = draw_predictions(DEEPLABV3_CONFIG, checkpoint, str(folder),
                               out_dir)
    _check_outputs(written, folder, out_dir)
    (inferencer, samples), = drawn
    classes = samples[0].pred_sem_seg.data[0].numpy()  # a.png's
    assert len(np.unique(classes)) >= 2  # the colours have to tell apart
    palette = np.array(inferencer.visualizer.dataset_meta['palette'])
    drawing = cv2.imread(osp.join(out_dir, 'vis', 'a.png'))[..., ::-1]
    image = cv2.imread(str(folder / 'a.png'))[..., ::-1].astype(float)
    error = np.abs(drawing - _blend(image, palette[classes])).max(-1)
    # Measured: 96% within 1; the rest is the class names' text.
    assert (error <= 2).mean() > 0.9


@pytest.mark.parametrize('config', [DEEPLABV3_CONFIG, DEEPLABV3_EMOV2_CONFIG])
def test_batchnorms_are_folded_by_default(images, tmp_path, monkeypatch, drawn,
                                          config):
    """infer.py folds the BatchNorms (every block and the backbone; EMOv2's
    LayerScales too) unless told not to: with trained-like statistics, the
    folded model gives the unfolded one's logits and drawing."""
    from mmseg.datasets import ADE20KDataset

    import emo_mm.inference as inference
    folder, _ = images
    image = str(folder / 'a.png')
    checkpoint = str(tmp_path / 'seg.pth')
    _save_random_checkpoint(
        config, checkpoint, None, ADE20KDataset.METAINFO, trained_like=True)
    folded = []
    real = inference.fold_batchnorms
    monkeypatch.setattr(inference, 'fold_batchnorms',
                        lambda model: folded.append(real(model)))
    drawings = {}
    for deploy in (True, False):
        out_dir = str(tmp_path / f'deploy{deploy}')
        draw_predictions(config, checkpoint, image, out_dir, deploy=deploy)
        drawings[deploy] = cv2.imread(osp.join(out_dir, 'vis', 'a.png'))
    # The deploy=True run only; one module, the backbone, which folds its
    # blocks itself.
    assert folded == [1]
    backbone = drawn[0][0].model.backbone
    assert not any(isinstance(m, _BatchNorm) for m in backbone.modules())
    folded, unfolded = (samples[0].seg_logits.data for _, samples in drawn)
    torch.testing.assert_close(
        folded, unfolded, rtol=1e-4, atol=1e-4 * unfolded.abs().max().item())
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


def test_classification(images, tmp_path):
    """An ImageNet config with random weights: top class printed and drawn."""
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    folder, _ = images
    config = osp.join(REPO_ROOT, 'configs', 'imagenet', 'emo_1m_in1k.py')
    checkpoint = str(tmp_path / 'cls.pth')
    _save_random_checkpoint(config, checkpoint, None,
                            dict(classes=IMAGENET_CATEGORIES))
    out_dir = str(tmp_path / 'out')
    lines = []
    written = draw_predictions(
        config, checkpoint, str(folder), out_dir, report=lines.append)
    _check_outputs(written, folder, out_dir)
    printed = '\n'.join(lines)
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
