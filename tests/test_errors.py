"""Every documented bad argument raises an error that names it."""
import logging

import pytest
import torch

from mmengine.logging import MMLogger

from emo_mm.models import EMO
from emo_mm.models.checkpoint import load_backbone_checkpoint


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(arch='3m'), ValueError, r"unknown EMO arch '3m'.*'1m', '2m'"),
    (dict(arch=dict(depths=(1, 1, 1, 1))), ValueError,
     r'arch dict misses keys .*channels'),
    (dict(arch=dict(EMO.arch_settings['1m'], width=3)), ValueError,
     r"unknown keys \['width'\]"),
    (dict(arch=dict(EMO.arch_settings['1m'], depths=(1, 2))), ValueError,
     r"arch\['depths'\] needs 4 entries"),
    (dict(arch=dict(EMO.arch_settings['1m'],
                    norm_types=('BN', 'BN', 'GN', 'LN2d'))), ValueError,
     r"norm_types \['GN'\] unknown"),
    (dict(arch=5), TypeError, r'arch must be a str or dict, got int'),
    (dict(out_indices=(1, 5)), ValueError, r'out_indices entry 5'),
    (dict(out_indices=(-6, )), ValueError, r'out_indices entry -6'),
    (dict(out_indices=()), ValueError, r'non-empty'),
    (dict(window_size=0), ValueError, r'window_size 0 must be a positive'),
    (dict(window_size=(7, 7, -1, 7)), ValueError, r'window_size -1'),
    (dict(window_size=(7, 7)), ValueError, r'4 ints \(one per stage\)'),
    (dict(frozen_stages=5), ValueError, r'frozen_stages=5 is out of range'),
    (dict(frozen_stages=-2), ValueError, r'frozen_stages=-2'),
    (dict(drop_path_rate=1.5), ValueError, r'drop_path_rate=1.5'),
    (dict(arch=dict(EMO.arch_settings['1m'], head_dims=(16, 16, 30, 21))),
     ValueError, r'head_dim=30 must divide the stage width 80'),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        EMO(**kwargs)


def _load(arch, path, **kwargs):
    model = EMO(arch=arch, init_cfg=dict(type='Pretrained',
                                         checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model


def test_checkpoint_of_another_variant_names_both(tmp_path):
    path = tmp_path / 'emo_2m.pth'
    torch.save(EMO(arch='2m').state_dict(), path)
    with pytest.raises(ValueError, match=r'holds EMO-2M weights, but the '
                       r'model is EMO-1M'):
        _load('1m', path)


def test_checkpoint_of_authors_other_variant(authors_fixture, tmp_path):
    path = tmp_path / 'net.pth'
    torch.save(authors_fixture['state_dict'], path)
    variant = authors_fixture['variant']
    other = '1m' if variant == '5m' else '5m'
    with pytest.raises(ValueError, match=rf'EMO-{variant.upper()} weights, '
                       rf'but the model is EMO-{other.upper()}'):
        _load(other, path)


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all'])
def test_corrupt_checkpoint(tmp_path, content):
    path = tmp_path / 'broken.pth'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r'could not read checkpoint .*'
                       r'broken\.pth'):
        _load('1m', path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / 'truncated.pth'
    torch.save(EMO(arch='1m').state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r'could not read checkpoint'):
        _load('1m', path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'nowhere\.pth does not'):
        _load('1m', tmp_path / 'nowhere.pth')


def test_checkpoint_without_emo_weights(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ValueError, match=r'holds no EMO-1M weights .*conv1'):
        _load('1m', path)


class ListHandler(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    state = EMO(arch='1m').state_dict()
    state.pop('stages.1.0.proj.weight')
    state['stages.1.0.extra'] = torch.zeros(1)
    state['head.weight'] = torch.zeros(1000, 168)  # classifier: dropped
    path = tmp_path / 'partial.pth'
    torch.save(state, path)
    logger = MMLogger.get_instance('emo_mm_test_keys')
    handler = ListHandler()
    logger.addHandler(handler)
    load_backbone_checkpoint(EMO(arch='1m'), str(path), logger=logger)
    logger.removeHandler(handler)
    text = '\n'.join(handler.messages)
    assert 'missing' in text and 'stages.1.0.proj.weight' in text
    assert 'stages.1.0.extra' in text
    assert 'head.weight' not in text
