"""Our config files through the codebases' own inference APIs, as a user of
mmseg or mmpretrain calls them: the file as it ships (custom imports,
SyncBN, an ImageNet-weights init_cfg, which nothing may download) and a
checkpoint saved from the built model. (emo_mm's own tools: test_inference.py
and tools/.)"""
import os.path as osp

import numpy as np
import torch
from conftest import REPO_ROOT, build_cpu_model
from torch.nn.modules.batchnorm import _BatchNorm

from emo_mm.models import EMO


def save_checkpoint(config, path, dataset_meta):
    """``configs/<config>``'s model saved as mmengine saves one, with random
    BN statistics (a buffer left unloaded would show); its state dict."""
    torch.manual_seed(0)
    _, model = build_cpu_model(config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    state = model.state_dict()
    torch.save(
        dict(state_dict=state, meta=dict(dataset_meta=dataset_meta)), path)
    return state


def check_loaded(model, saved):
    loaded = model.state_dict()
    assert loaded.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key


def image(h=50, w=70):
    return np.random.RandomState(0).randint(0, 256, (h, w, 3), np.uint8)


def test_mmseg_init_model_and_inference_model(tmp_path):
    """mmseg.apis on DeepLabV3-EMO-1M: init_model builds the file's model
    (SyncBN, which runs in eval mode without a process group; init_weights
    is never called, so the weights URL is not fetched) and loads the
    checkpoint; inference_model runs the config's test pipeline (its resize
    cut to 96x64 for time) on an image and returns its size's label map."""
    from mmseg.apis import inference_model, init_model
    from mmseg.datasets import ADE20KDataset
    path = str(tmp_path / 'seg.pth')
    saved = save_checkpoint('deeplabv3/emo_1m_ade20k.py', path,
                            ADE20KDataset.METAINFO)
    model = init_model(
        osp.join(REPO_ROOT, 'configs', 'deeplabv3', 'emo_1m_ade20k.py'),
        path,
        device='cpu',
        cfg_options={'test_pipeline.1.scale': (96, 64)})
    assert isinstance(model.backbone, EMO)
    assert any(
        isinstance(m, torch.nn.SyncBatchNorm)
        for m in model.backbone.modules())
    check_loaded(model, saved)
    assert model.dataset_meta['classes'] == ADE20KDataset.METAINFO['classes']

    result = inference_model(model, image())
    assert result.seg_logits.data.shape == (150, 50, 70)
    labels = result.pred_sem_seg.data
    assert labels.shape == (1, 50, 70)
    assert torch.equal(labels[0], result.seg_logits.data.argmax(0))


def test_mmpretrain_get_model_and_inference_model(tmp_path):
    """mmpretrain.get_model and inference_model on EMO-1M's ImageNet config,
    by its name in our model-index.yml registered with mmpretrain's model
    hub (inference_model picks the inferencer by the task listed there; a
    model built from a config path has none, and it raises for any):
    the checkpoint loads, and the config's test pipeline (resize 256, crop
    224) gives 1000 scores and the class the checkpoint's meta names."""
    from mmpretrain import get_model, inference_model
    from mmpretrain.apis import ModelHub
    name = 'emo-1m_8xb256_in1k'
    if not ModelHub.has(name):
        ModelHub.register_model_index(
            osp.join(REPO_ROOT, 'model-index.yml'), config_prefix=REPO_ROOT)
    classes = [f'class {i}' for i in range(1000)]
    path = str(tmp_path / 'cls.pth')
    saved = save_checkpoint('imagenet/emo_1m_in1k.py', path,
                            dict(classes=classes))
    model = get_model(name, pretrained=path, device='cpu')
    assert model._config.filename == osp.join(REPO_ROOT, 'configs', 'imagenet',
                                              'emo_1m_in1k.py')
    assert isinstance(model.backbone, EMO)
    check_loaded(model, saved)

    result = inference_model(model, image())
    scores = result['pred_scores']
    assert scores.shape == (1000, )
    assert result['pred_label'] == scores.argmax()
    assert result['pred_class'] == classes[result['pred_label']]
