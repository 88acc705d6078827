"""emo_mm.config: the one config loader (data_root rewriting, scope check,
inference preparation) and the input size read from a config."""
import os.path as osp

import pytest
from conftest import REPO_ROOT

from emo_mm import UserError
from emo_mm.codebases import CODEBASES
from emo_mm.config import innermost_dataset, input_shape, load_config

DEEPLABV3 = osp.join(REPO_ROOT, 'configs', 'deeplabv3', 'emo_1m_ade20k.py')
SSDLITE = osp.join(REPO_ROOT, 'configs', 'ssdlite', 'emo_1m_coco.py')


def test_data_root_reaches_every_expanded_path():
    cfg = load_config(SSDLITE, {'data_root': '/data/elsewhere/'})
    dataset = innermost_dataset(cfg.train_dataloader.dataset)
    assert dataset.data_root == '/data/elsewhere/'
    assert cfg.val_evaluator.ann_file.startswith('/data/elsewhere/')
    assert cfg.test_dataloader.dataset.data_root == '/data/elsewhere/'


def test_inference_drops_the_weights_download_and_sync_bn():
    plain = load_config(DEEPLABV3)
    assert plain.model.backbone.init_cfg.type == 'Pretrained'
    assert plain.model.decode_head.norm_cfg.type == 'SyncBN'
    cfg = load_config(DEEPLABV3, inference=True)
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.auxiliary_head.norm_cfg.type == 'BN'


def test_bad_configs_name_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match='config /no/such.py does not exist'):
        load_config('/no/such.py')
    other = tmp_path / 'ocr.py'
    other.write_text("default_scope = 'mmocr'\nmodel = dict(type='X')\n")
    with pytest.raises(
            UserError,
            match=r"default_scope='mmocr'; allowed: "
            r"\['mmdet', 'mmseg', 'mmpretrain'\]"):
        load_config(str(other))
    assert sorted(CODEBASES) == ['mmdet', 'mmpretrain', 'mmseg']


def test_input_shape_of_each_codebase():
    assert input_shape(load_config(SSDLITE))[0] == (320, 320)
    assert input_shape(load_config(DEEPLABV3)) == ((512, 512),
                                                   'crop_size=(512, 512)')
    imagenet = osp.join(REPO_ROOT, 'configs', 'imagenet', 'emo_1m_in1k.py')
    shape, source = input_shape(load_config(imagenet))
    assert shape == (224, 224) and 'CenterCrop' in source
