"""emo_mm.mobile (tools/deployment/export_executorch.py): ExecuTorch
programs (XNNPACK) and Core ML packages of EMO and EMOv2 backbones and of
configs match PyTorch at their fixed size, the authors' weights reproduce
the authors' outputs through both, no Core ML tensor is above rank 5, and
bad arguments stop the export before anything is written."""
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import (REPO_ROOT, load_emov2_fixture, load_fixture, run_tool,
                      trained_like_checkpoint)

from emo_mm import UserError
from emo_mm.config import build_model, load_config
from emo_mm.mobile import (convert_to_coreml, coreml_operations, coreml_runner,
                           executorch_runner, export_mobile,
                           load_coreml_program, lower_to_executorch)
from emo_mm.models import EMO, deploy

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')


def _need(module):
    pytest.importorskip(
        module,
        reason=f'{module} is optional (requirements/mobile.txt; CI '
        'installs it)')


def _relative_difference(got, expected):
    return max(
        float(np.abs(a - b.float().numpy()).max()) /
        max(1.0, float(b.abs().max())) for a, b in zip(got, expected))


def _fixture_args(fixture):
    """(backbone name, window size, more backbone arguments) of an EMO or
    EMOv2 fixture."""
    if 'variant' in fixture:
        return fixture['variant'], fixture['window_size'], {}
    kwargs = dict(fixture['kwargs'])
    return f'emov2-{fixture["arch"]}', kwargs.pop('window_size'), kwargs


def _authors_program(tmp_path, fixture, **coreml):
    """The fixture's weights as a program (ExecuTorch, or Core ML with
    ``coreml=True``) for its input's shape, read back and run on its
    input; an ExecuTorch program must be one XNNPACK partition."""
    name, window, options = _fixture_args(fixture)
    ckpt = tmp_path / 'net.pth'
    torch.save(fixture['state_dict'], ckpt)
    x = fixture['input']
    out = tmp_path / ('net.mlpackage' if coreml else 'net.pte')
    result = export_mobile(
        name,
        str(out),
        checkpoint=str(ckpt),
        window_size=window,
        shape=tuple(x.shape[2:]),
        batch=x.shape[0],
        check=[],
        backbone_options=options,
        **coreml)
    if coreml:
        got = coreml_runner(str(out))(x.numpy())
    else:
        assert (result['partitions'], result['outside']) == (1, [])
        got = executorch_runner(str(out))(x.numpy())
    assert len(got) == len(fixture['stage_outputs']) == 5
    return _relative_difference(got, fixture['stage_outputs'])


# ---------------------------------------------------------------- ExecuTorch
def test_executorch_program_of_the_authors_weights_reproduces_their_outputs(
        authors_fixture, tmp_path):
    """The authors' EMO weights as an ExecuTorch program (XNNPACK, fp32):
    their five feature maps on the fixture's input, within 1e-4 of the
    maps' scale, at the six fixtures' sizes and windows. 30-45 s each: the
    lowering's passes (ExecuTorch's), once per fixture."""
    _need('executorch')
    assert _authors_program(tmp_path, authors_fixture) <= 1e-4


def test_emov2_executorch_program_of_the_authors_weights(
        emov2_fixture, tmp_path):
    """As for EMO, the three EMOv2 fixtures (the segmentation backbone's
    LayerNorms become XNNPACK operators too); 40-70 s each, as for EMO."""
    _need('executorch')
    assert _authors_program(tmp_path, emov2_fixture) <= 1e-4


def test_executorch_linear_layers_on_feature_maps():
    """Linear layers and LayerNorms over the channels of an NHWC map (as
    EdgeNeXt's, which benchmark.py lowers beside ours) become one XNNPACK
    partition that matches PyTorch; left to the edge dialect, such a linear
    at batch 1 stops XNNPACK's partitioner with an error."""
    _need('executorch')

    class PointwiseMLP(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.norm = torch.nn.LayerNorm(8)
            self.fc1 = torch.nn.Linear(8, 16)
            self.fc2 = torch.nn.Linear(16, 8, bias=False)

        def forward(self, x):
            x = self.norm(self.conv(x).permute(0, 2, 3, 1))
            return self.fc2(torch.nn.functional.gelu(self.fc1(x)))

    torch.manual_seed(0)
    model, x = PointwiseMLP().eval(), torch.randn(1, 3, 7, 9)
    program, partitions, outside = lower_to_executorch(model, x)
    assert (partitions, outside) == (1, [])
    [got] = executorch_runner(program)(x.numpy())
    with torch.no_grad():
        assert _relative_difference([got], [model(x)]) <= 1e-5


@pytest.mark.parametrize(
    'config',
    ['configs/ssdlite/emo_1m_coco.py', 'configs/deeplabv3/emov2_1m_ade20k.py'])
def test_executorch_config_programs(tmp_path, config):
    """A detector and a segmentor with trained-like weights, behind their
    normalisation (BGR in), at a size no window divides: one XNNPACK
    partition, within 1e-4 of the unfolded model; 40-70 s each (one
    lowering)."""
    _need('executorch')
    torch.manual_seed(0)
    path = osp.join(REPO_ROOT, config)
    ckpt = trained_like_checkpoint(tmp_path, build_model(load_config(path)),
                                   True)
    result = export_mobile(
        path,
        str(tmp_path / 'model.pte'),
        checkpoint=ckpt,
        shape=(97, 131),
        check=[])
    assert (result['partitions'], result['outside']) == (1, [])
    [(batch, h, w, outputs, diff)] = result['checked']
    assert (batch, h, w) == (1, 97, 131) and diff <= 1e-4
    assert outputs == len(result['names'])


def test_executorch_command_line(tmp_path):
    """The tool lowers at its shape (one no window divides), compares with
    PyTorch (trained-like weights) and says so; refusals are one line and
    write nothing. One lowering (~30 s, ExecuTorch's passes): the --check
    sizes go through the loop the Core ML command line test runs."""
    _need('executorch')
    torch.manual_seed(0)
    ckpt = trained_like_checkpoint(tmp_path, EMO(arch='1m'))
    out = tmp_path / 'emo_1m.pte'
    status, log = run_tool('deployment/export_executorch.py', '1m', out,
                           '--shape', '45', '77', '--checkpoint', ckpt,
                           '--check')
    assert status == 0, log
    assert 'XNNPACK partitions: 1; operators outside them: none' in log
    assert 'ExecuTorch 1x3x45x77: 5 outputs' in log
    assert 'matches PyTorch within --atol 0.0001 at 1 sizes' in log
    assert f'wrote {out}' in log
    x = torch.randn(1, 3, 45, 77)
    got = executorch_runner(str(out))(x.numpy())
    assert [g.shape[2:] for g in got] == [(23, 39), (12, 20), (6, 10), (3, 5),
                                          (2, 3)]
    written = out.read_bytes()
    for args, message in [
        ((out, ), f'{out} exists; pass --force to overwrite it'),
        ((tmp_path / 'a.onnx', ), 'an ExecuTorch program is a .pte file'),
        ((tmp_path / 'a.pte', '--batch', '0'), '--batch 0 must be a positive'),
    ]:
        status, refused = run_tool('deployment/export_executorch.py', '1m',
                                   *args)
        assert status == 1 and message in refused, refused
    assert out.read_bytes() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'emo_1m.pte', 'trained_like.pth'
    ]


# ------------------------------------------------------------------- Core ML
def test_coreml_package_of_the_authors_weights_reproduces_their_outputs(
        authors_fixture, tmp_path):
    """The authors' EMO weights as a Core ML package (fp32), its program
    read back and evaluated: their five maps within 1e-4 of the maps'
    scale, at the six fixtures' sizes and windows, no tensor above rank
    5 (the export's own check)."""
    _need('coremltools')
    assert _authors_program(tmp_path, authors_fixture, coreml=True) <= 1e-4


def test_emov2_coreml_package_of_the_authors_weights(emov2_fixture, tmp_path):
    """As for EMO, the three EMOv2 fixtures."""
    _need('coremltools')
    assert _authors_program(tmp_path, emov2_fixture, coreml=True) <= 1e-4


@pytest.mark.parametrize('load, name',
                         [(load_fixture, 'emo_1m_w7_224x224.pt'),
                          (load_emov2_fixture, 'emo2_5m_seg_w10_160x192.pt')])
def test_coreml_fp16_package_of_the_authors_weights(load, name, tmp_path):
    """fp16 arithmetic (fp32 input and outputs): the authors' maps within
    5e-3 of their scale (1.7e-3 at most measured over the nine fixtures),
    on one EMO and one EMOv2 fixture."""
    _need('coremltools')
    assert _authors_program(
        tmp_path, load(name), coreml=True, fp16=True) <= 5e-3


def test_the_rank_check(tmp_path, monkeypatch):
    """A tensor above Core ML's rank limit is refused, named, at the
    conversion (coremltools' check) and in a package read back. EMO's eager
    rank-8 window partition passes too: coremltools itself rewrites it in
    tensors of rank 4 (the docs say so), and the program computes the
    model. (The export path's rank-5 form is what every other Core ML test
    converts.)"""
    _need('coremltools')
    from emo_mm.models import layers

    class Rank6(torch.nn.Module):

        def forward(self, x):
            y = x.reshape(1, 1, 3, 2, 4, 4)
            return (y * y).sum(1)

    with pytest.raises(
            UserError,
            match=r'coremltools: .*rank <= 5.* outputs '
            'a rank 6 tensor'):
        convert_to_coreml(Rank6(), torch.randn(1, 3, 8, 4), ['y'])
    # A program that got past coremltools with rank 6 (built directly).
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 8, 4))])
    def rank6(x):
        return mb.reshape(x=x, shape=(1, 1, 3, 2, 4, 4), name='six')

    with pytest.raises(
            UserError,
            match=r"reshape 'six' gives a tensor of "
            r'rank 6 \(1, 1, 3, 2, 4, 4\); Core ML takes rank 5'):
        coreml_operations(rank6)
    model = EMO(arch='1m').eval()
    deploy(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    names = [f'stride{2 ** (i + 1)}' for i in range(5)]
    monkeypatch.setattr(layers, 'is_exporting', lambda: False)
    path = str(tmp_path / 'eager.mlpackage')
    convert_to_coreml(model, x, names).save(path)
    assert coreml_operations(load_coreml_program(path))['matmul'] == 18
    got = coreml_runner(path)(x.numpy())
    assert _relative_difference(got, expected) <= 1e-5


def test_coreml_command_line(tmp_path):
    """--coreml writes a package checked at its shape and a --check size;
    refusals are one line and keep what exists; --fp16 --force replaces the
    package whole with one in fp16."""
    _need('coremltools')
    torch.manual_seed(0)
    ckpt = trained_like_checkpoint(tmp_path, EMO(arch='1m'))
    out = tmp_path / 'emo_1m.mlpackage'
    tool = 'deployment/export_executorch.py'
    status, log = run_tool(tool, '1m', out, '--coreml', '--shape', '64', '64',
                           '--checkpoint', ckpt, '--check', '45x77')
    assert status == 0, log
    assert 'ML program operations, none above rank 5: add 22, conv 59' in log
    assert 'Core ML (fp32) 1x3x45x77: 5 outputs' in log
    assert 'Core ML (fp32) matches PyTorch within --atol 0.0001 at 2 sizes' \
        in log
    x = np.random.randn(1, 3, 64, 64).astype(np.float32)
    got = coreml_runner(str(out))(x)
    assert [g.shape[2:] for g in got] == [(32, 32), (16, 16), (8, 8), (4, 4),
                                          (2, 2)]
    for args, message in [
        ((out, '--coreml'), f'{out} exists; pass --force to overwrite it'),
        ((tmp_path / 'a.pte', '--coreml'),
         'a Core ML package is a .mlpackage file'),
        ((tmp_path / 'a.pte', '--fp16'), '--fp16 is for Core ML (--coreml)'),
    ]:
        status, refused = run_tool(tool, '1m', *args)
        assert status == 1 and message in refused, refused
    np.testing.assert_array_equal(coreml_runner(str(out))(x)[4], got[4])
    status, log = run_tool(tool, '1m', out, '--coreml', '--fp16', '--force',
                           '--shape', '64', '64', '--checkpoint', ckpt,
                           '--check')
    assert status == 0, log
    assert 'Core ML (fp16) matches PyTorch within --atol 0.05 at 1 sizes' \
        in log
    assert 'cast' in log.split('operations')[1].split('\n')[0]
    assert np.abs(coreml_runner(str(out))(x)[4] - got[4]).max() > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'emo_1m.mlpackage', 'trained_like.pth'
    ]
