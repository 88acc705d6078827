"""emo_mm.models.checkpoint: the authors' key layout maps to ours and back,
wrapped and prefixed checkpoints load, and a wrong, corrupt or missing
checkpoint raises an error that names it."""
import logging

import pytest
import torch
from conftest import save_authors_checkpoint, stored_state_dict
from mmengine.logging import MMLogger

from emo_mm.models import EMO
from emo_mm.models.checkpoint import (authors_to_ours,
                                      load_backbone_checkpoint,
                                      ours_to_authors)


def test_authors_key_layout_round_trip(authors_fixture):
    authors = authors_fixture['state_dict']
    ours = authors_to_ours(authors)
    model = EMO(arch=authors_fixture['variant'], final_norm=True)
    model_keys = set(model.state_dict())
    backbone_keys = {k for k in ours if not k.startswith('head.')}
    assert backbone_keys == model_keys
    assert list(ours_to_authors(ours)) == list(authors)


@pytest.mark.parametrize('wrap,module_prefix', [('state_dict', False),
                                                ('model', True),
                                                ('net', False), (None, True)])
def test_wrapped_authors_checkpoints(tmp_path, wrap, module_prefix):
    """On EMO-1M only: the unwrapping reads keys, not the variant; every
    fixture loads unwrapped in test_emo.py's parity tests."""
    state_dict = stored_state_dict()
    ckpt = save_authors_checkpoint(state_dict, tmp_path / 'wrapped.pth', wrap,
                                   module_prefix)
    model = EMO(arch='1m', init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    model.init_weights()
    expected = authors_to_ours(state_dict)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key].to(value.dtype))


def test_mmpretrain_style_backbone_prefix(tmp_path):
    source = EMO(arch='2m')
    for p in source.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / 'classifier.pth'
    torch.save(
        {
            'meta': {},
            'state_dict': {
                **{
                    f'backbone.{k}': v
                    for k, v in source.state_dict().items()
                },
                'head.fc.weight': torch.zeros(3, 200),
            }
        }, path)
    model = EMO(
        arch='2m', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def _load(arch, path, **kwargs):
    model = EMO(
        arch=arch,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)),
        **kwargs)
    model.init_weights()
    return model


def test_checkpoint_of_another_variant_names_both(tmp_path):
    path = tmp_path / 'emo_2m.pth'
    torch.save(EMO(arch='2m').state_dict(), path)
    with pytest.raises(
            ValueError, match=r'holds EMO-2M weights, but the '
            r'model is EMO-1M'):
        _load('1m', path)


def test_checkpoint_of_authors_other_variant(authors_fixture, tmp_path):
    path = tmp_path / 'net.pth'
    torch.save(authors_fixture['state_dict'], path)
    variant = authors_fixture['variant']
    other = '1m' if variant == '5m' else '5m'
    with pytest.raises(
            ValueError,
            match=rf'EMO-{variant.upper()} weights, '
            rf'but the model is EMO-{other.upper()}'):
        _load(other, path)


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all'])
def test_corrupt_checkpoint(tmp_path, content):
    path = tmp_path / 'broken.pth'
    path.write_bytes(content)
    with pytest.raises(
            ValueError, match=r'could not read checkpoint .*'
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


@pytest.mark.parametrize('family', ['EMO', 'EMOv2'])
@pytest.mark.parametrize('wrap', [None, 'state_dict'])
@pytest.mark.parametrize(
    'prefix', ['backbone.', 'backbone', 'module.backbone.', 'module.'])
def test_prefix_on_a_ddp_saved_detector(tmp_path, family, wrap, prefix):
    """A detector saved from its DDP wrapper (every key under ``module.``,
    flat or under ``state_dict``): ``prefix='backbone.'`` loads exactly the
    backbone's tensors; so do mmengine's spellings for such a file
    (``'backbone'``, ``'module.backbone.'``: its Pretrained init adds the
    dot, and strips no ``module.``), and ``'module.'`` (nothing left: the
    backbone found as without a prefix)."""
    from emo_mm.models import EMOv2
    cls = EMO if family == 'EMO' else EMOv2
    torch.manual_seed(0)
    source = cls(arch='1m')
    with torch.no_grad():
        for value in source.state_dict().values():
            if value.is_floating_point():
                value.uniform_(0.5, 1.5)  # unlike any initialisation
    detector = {
        **{
            f'backbone.{k}': v
            for k, v in source.state_dict().items()
        },
        # Keys of the neck and head (and their stages.*-like tails) must
        # not leak into the backbone.
        'neck.stages.1.0.proj.weight': torch.zeros(1),
        'bbox_head.cls_convs.0.weight': torch.zeros(3, 3),
    }
    path = save_authors_checkpoint(
        detector, tmp_path / 'ddp.pth', wrap, module_prefix=True)
    model = cls(
        arch='1m',
        init_cfg=dict(type='Pretrained', checkpoint=path, prefix=prefix))
    model.init_weights()
    loaded = model.state_dict()
    assert loaded.keys() == source.state_dict().keys()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_prefix_that_matches_no_key(tmp_path):
    path = tmp_path / 'detector.pth'
    torch.save(
        {
            f'module.backbone.{k}': v
            for k, v in EMO(arch='1m').state_dict().items()
        }, path)
    model = EMO(
        arch='1m',
        init_cfg=dict(
            type='Pretrained', checkpoint=str(path), prefix='encoder.'))
    with pytest.raises(
            ValueError,
            match=r"no key of checkpoint .* starts "
            r"with 'encoder\.' \(first keys: \['backbone\."):
        model.init_weights()
