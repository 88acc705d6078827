"""emo_mm.deployment (tools/deployment/export_onnx.py): backbone, SSDLite and
DeepLabV3 graphs with dynamic batch and size match PyTorch in ONNX Runtime at
sizes that are not window multiples; bad arguments stop it before anything is
written."""
import os.path as osp

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import REPO_ROOT, run_python
from emo_mm import UserError
from emo_mm.deployment import export


def _dims(path):
    session = ort.InferenceSession(str(path),
                                   providers=['CPUExecutionProvider'])
    return session, session.get_inputs()[0].shape


def test_backbone_graph_serves_any_size(tmp_path):
    out = tmp_path / 'emo_1m.onnx'
    result = export('1m', str(out), shape=(64, 64), window_size=[7, 7, 5, 4],
                    check=['45x77', '100x33'])
    sizes = [(h, w) for _, h, w, _, _ in result['checked']]
    assert sizes == [(45, 77), (100, 33)]
    assert all(diff <= 1e-4 for *_, diff in result['checked'])
    session, dims = _dims(out)
    assert dims == ['batch', 3, 'height', 'width']
    assert [o.name for o in session.get_outputs()] == [
        'stride2', 'stride4', 'stride8', 'stride16', 'stride32']
    # A size and batch the tool did not check: the dynamic dims hold.
    torch.manual_seed(0)
    x = torch.randn(3, 3, 59, 123)
    got = session.run(None, {'input': x.numpy()})
    assert [g.shape[2:] for g in got] == [(30, 62), (15, 31), (8, 16),
                                         (4, 8), (2, 4)]
    assert all(np.isfinite(g).all() for g in got)


def test_graph_of_the_authors_weights_reproduces_their_outputs(
        authors_fixture, tmp_path):
    """The authors' checkpoint, exported: ONNX Runtime gives the authors'
    five feature maps on the fixture's input (both fixtures: 224x224 with
    window 7, 200x264 with window 10)."""
    ckpt = tmp_path / 'net.pth'
    torch.save(authors_fixture['state_dict'], ckpt)
    out = tmp_path / 'authors.onnx'
    export(authors_fixture['variant'], str(out), checkpoint=str(ckpt),
           window_size=authors_fixture['window_size'], check=[])
    session, _ = _dims(out)
    got = session.run(None, {'input': authors_fixture['input'].numpy()})
    assert len(got) == len(authors_fixture['stage_outputs']) == 5
    for i, (a, ref) in enumerate(zip(got, authors_fixture['stage_outputs'])):
        diff = float(np.abs(a - ref.float().numpy()).max())
        assert diff <= 1e-5, f'stage {i}: max abs diff {diff:.3g}'


@pytest.mark.parametrize('config,names', [
    ('configs/ssdlite/emo_1m_coco.py',
     [f'cls_score_{i}' for i in range(6)] +
     [f'bbox_pred_{i}' for i in range(6)]),
    ('configs/retinanet/emo_1m_coco.py',
     [f'cls_score_{i}' for i in range(5)] +
     [f'bbox_pred_{i}' for i in range(5)]),
    ('configs/deeplabv3/emo_1m_ade20k.py', ['seg_logits']),
    ('configs/imagenet/emo_1m_in1k.py', ['cls_score']),
])
def test_downstream_graphs(tmp_path, config, names):
    out = tmp_path / 'model.onnx'
    result = export(osp.join(REPO_ROOT, config), str(out), shape=(96, 128),
                    check=['81x145', '130x97'])
    assert 'BGR 0-255, normalised in the graph' in result['expects']
    assert len(result['checked']) == 2
    session, dims = _dims(out)
    assert dims == ['batch', 3, 'height', 'width']
    assert [o.name for o in session.get_outputs()] == names


def test_adaptive_pooling_is_refused_in_one_line(tmp_path):
    """PSPNet's pyramid pooling cannot be traced to ONNX behind EMO: the
    tool says so (no traceback) and leaves no file."""
    config = osp.join(REPO_ROOT, 'configs/pspnet/emo_1m_ade20k.py')
    out = tmp_path / 'pspnet.onnx'
    with pytest.raises(UserError,
                       match=r'pools to fixed output sizes .*PSPNet'):
        export(config, str(out), shape=(96, 128))
    assert list(tmp_path.iterdir()) == []


def test_a_folding_error_fails_the_check(tmp_path, monkeypatch):
    """The check compares ONNX Runtime with the model before its
    BatchNorms are folded, so a wrong fold is caught, and leaves no file."""
    from emo_mm.models import EMO
    fold = EMO.switch_to_deploy

    def wrong_fold(self):
        fold(self)
        with torch.no_grad():  # e.g. a shift added twice in the stem
            self.stages[0][0].bias.add_(0.1)

    monkeypatch.setattr(EMO, 'switch_to_deploy', wrong_fold)
    out = tmp_path / 'emo_1m.onnx'
    with pytest.raises(UserError, match='differs from PyTorch'):
        export('1m', str(out), shape=(64, 64), check=['45x77'])
    assert list(tmp_path.iterdir()) == []


def test_refusals_write_nothing(tmp_path):
    existing = tmp_path / 'old.onnx'
    existing.write_bytes(b'keep me')
    with pytest.raises(UserError, match='pass --force'):
        export('1m', str(existing))
    assert existing.read_bytes() == b'keep me'
    with pytest.raises(UserError, match="'3m' is neither"):
        export('3m', str(tmp_path / 'a.onnx'))
    with pytest.raises(UserError, match='checkpoint /no/w.pth'):
        export('1m', str(tmp_path / 'a.onnx'), checkpoint='/no/w.pth')
    with pytest.raises(UserError, match="'12' is not HxW"):
        export('1m', str(tmp_path / 'a.onnx'), check=['12'])
    # A check that fails (no tolerance at all) leaves no file behind.
    with pytest.raises(UserError, match='> --atol 0.0'):
        export('1m', str(tmp_path / 'a.onnx'), shape=(64, 64),
               check=['45x77'], atol=0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['old.onnx']


def test_command_line(tmp_path):
    """The tool prints what it checked and wrote; a refusal is one line."""
    out = tmp_path / 'emo_1m.onnx'
    log = run_python('tools/deployment/export_onnx.py', '1m', str(out),
                     '--shape', '64', '64', '--window-size', '7', '7', '5',
                     '4', '--check', '45x77', '100x33').stdout
    assert 'matches PyTorch within --atol 0.0001 at 2 sizes' in log
    assert f'wrote {out}' in log and out.is_file()
    refused = run_python('tools/deployment/export_onnx.py', '3m',
                         str(tmp_path / 'a.onnx'), check=False)
    assert refused.returncode != 0 and 'Traceback' not in refused.stdout
    assert "error: '3m' is neither an EMO arch" in refused.stdout
