"""emo_mm.models.convert (tools/convert_authors_checkpoint.py): the authors'
net.pth to an mmpretrain classifier or a backbone and back, bit for bit;
wrong inputs are refused with one line and nothing written."""
import pytest
import torch
from conftest import run_tool, stored_state_dict

from emo_mm import UserError
from emo_mm.models import EMO
from emo_mm.models.checkpoint import (authors_to_classifier,
                                      classifier_to_authors)
from emo_mm.models.convert import convert_checkpoint


def test_conversion_round_trip_is_lossless(tmp_path):
    authors = stored_state_dict()  # fp16
    ours = authors_to_classifier(authors)
    assert 'head.fc.weight' in ours and 'backbone.norm.weight' in ours
    back = classifier_to_authors(ours)
    assert list(back) == list(authors)
    for key, value in authors.items():
        assert back[key].dtype == value.dtype
        assert torch.equal(back[key], value), key

    # The same through the files, both directions and the backbone.
    src = str(tmp_path / 'net.pth')
    torch.save({'model': authors}, src)  # a wrapped file is accepted
    cls_path, back_path = str(tmp_path / 'cls.pth'), str(tmp_path / 'b.pth')
    assert convert_checkpoint(src, cls_path,
                              'classifier')[:2] == ('EMO-1M',
                                                    'mmpretrain classifier')
    checkpoint = torch.load(cls_path, weights_only=True)
    assert checkpoint['meta']['arch'] == '1m'
    assert len(checkpoint['meta']['dataset_meta']['classes']) == 1000
    convert_checkpoint(cls_path, back_path, 'authors')
    again = torch.load(back_path, weights_only=True)
    assert list(again) == list(authors)
    assert all(torch.equal(again[k], v) for k, v in authors.items())

    backbone_path = str(tmp_path / 'backbone.pth')
    convert_checkpoint(src, backbone_path, 'backbone')
    backbone = torch.load(backbone_path, weights_only=True)['state_dict']
    assert all(k.startswith('backbone.') for k in backbone)
    assert not any(k.startswith(('backbone.norm.', 'head.')) for k in backbone)
    # ... which a detector/segmentor backbone loads with no key left over.
    model = EMO(arch='1m')
    missing, unexpected = model.load_state_dict({
        k[len('backbone.'):]: v.float()
        for k, v in backbone.items()
    })
    assert not missing and not unexpected
    round_trip = str(tmp_path / 'backbone_authors.pth')
    convert_checkpoint(backbone_path, round_trip, 'authors')
    flat = torch.load(round_trip, weights_only=True)
    assert all(torch.equal(flat[k], authors[k]) for k in flat)
    assert len(flat) == len(authors) - 4  # no final norm, no head


def test_converter_errors(tmp_path):
    authors = stored_state_dict()
    src = str(tmp_path / 'net.pth')
    torch.save(authors, src)

    def fails(src, dst, to, arch=None):
        with pytest.raises(UserError) as error:
            convert_checkpoint(str(src), str(dst), to, arch)
        return str(error.value)

    assert "holds EMO-1M weights, but arch='5m'" in fails(
        src, tmp_path / 'x.pth', 'classifier', '5m')
    assert not (tmp_path / 'x.pth').exists()

    partial = {
        k: v
        for k, v in authors.items()
        if k != 'stage3.2.conv_local.norm.running_var'
    }
    torch.save(partial, str(tmp_path / 'partial.pth'))
    missing = fails(tmp_path / 'partial.pth', tmp_path / 'y.pth', 'classifier')
    assert 'missing 1 keys' in missing
    assert 'stages.3.2.conv_local.bn.running_var' in missing

    existing = tmp_path / 'exists.pth'
    existing.write_bytes(b'keep me')
    assert 'refusing to overwrite' in fails(src, existing, 'classifier')
    assert existing.read_bytes() == b'keep me'

    assert 'already in the authors\' layout' in fails(src, tmp_path / 'z.pth',
                                                      'authors')
    assert 'does not exist' in fails(tmp_path / 'nowhere.pth',
                                     tmp_path / 'w.pth', 'backbone')


def test_command_line(tmp_path):
    src = str(tmp_path / 'net.pth')
    torch.save(stored_state_dict(), src)
    dst = tmp_path / 'cls.pth'
    status, out = run_tool('convert_authors_checkpoint.py', src, dst, '--to',
                           'classifier')
    assert status == 0, out
    assert f'wrote {dst}: EMO-1M mmpretrain classifier' in out
    assert torch.load(dst, weights_only=True)['meta']['arch'] == '1m'
    status, out = run_tool('convert_authors_checkpoint.py', src, dst, '--to',
                           'classifier')
    assert status == 1
    assert 'error: ' in out and 'refusing to overwrite' in out
    assert '(use --force or another name)' in out  # the tool's flag
    status, out = run_tool('convert_authors_checkpoint.py', src,
                           tmp_path / 'other.pth', '--to', 'classifier',
                           '--arch', '5m')
    assert status == 1
    assert "holds EMO-1M weights, but --arch '5m'" in out


def test_emov2_conversions(tmp_path):
    """The authors' EMOv2 classifier file: to an mmpretrain classifier and a
    backbone and back, bit for bit; its variant and family are named."""
    from conftest import FIXTURES_V2, _fixtures_missing

    from emo_mm.models import EMOv2
    name = 'emo2_1m_k5_hybrid_224x224.pt'
    path = f'{FIXTURES_V2}/{name}'
    try:  # as stored: fp16, so that the round trip is checked bit for bit
        authors = torch.load(path, weights_only=True)['state_dict']
    except FileNotFoundError:
        _fixtures_missing(name)
    src = str(tmp_path / 'EMOv2_1M_224.pth')
    torch.save(authors, src)
    cls_path, back_path = str(tmp_path / 'cls.pth'), str(tmp_path / 'b.pth')
    assert convert_checkpoint(src, cls_path,
                              'classifier')[:2] == ('EMOv2-1M',
                                                    'mmpretrain classifier')
    meta = torch.load(cls_path, weights_only=True)['meta']
    assert (meta['family'], meta['arch']) == ('EMOv2', '1m')
    convert_checkpoint(cls_path, back_path, 'authors')
    again = torch.load(back_path, weights_only=True)
    assert set(again) == set(authors)
    assert all(torch.equal(again[k], v) for k, v in authors.items())

    backbone_path = str(tmp_path / 'backbone.pth')
    convert_checkpoint(src, backbone_path, 'backbone')
    backbone = torch.load(backbone_path, weights_only=True)['state_dict']
    missing, unexpected = EMOv2(arch='1m').load_state_dict({
        k[len('backbone.'):]:
        v.float()
        for k, v in backbone.items()
    })
    assert not missing and not unexpected

    with pytest.raises(
            UserError, match="holds EMOv2-1M weights, but "
            "arch='5m'"):
        convert_checkpoint(src, str(tmp_path / 'x.pth'), 'classifier', '5m')
    status, out = run_tool('convert_authors_checkpoint.py', src,
                           tmp_path / 'cli.pth', '--to', 'backbone')
    assert status == 0, out
    assert 'EMOv2-1M backbone' in out
