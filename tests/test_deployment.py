"""emo_mm.deployment (tools/deployment/export_onnx.py): EMO and EMOv2
backbone graphs and config graphs (SSDLite, RetinaNet, DeepLabV3, Semantic
FPN, classifiers) with dynamic batch and size match PyTorch in ONNX Runtime
at sizes that are not window multiples; bad arguments stop it before
anything is written."""
import os.path as osp

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import (REPO_ROOT, run_python, run_tool, trained_like,
                      trained_like_checkpoint)
from torch.nn.modules.batchnorm import _BatchNorm

from emo_mm import UserError
from emo_mm.config import build_model, load_config
from emo_mm.deployment import (WINDOW_SIZES, ScaledUpsample,
                               backbone_for_export, backbone_names,
                               default_check_sizes, deploy, export,
                               make_traceable, parse_backbone)
from emo_mm.models import EMO, EMOv2


def _dims(path):
    session = ort.InferenceSession(
        str(path), providers=['CPUExecutionProvider'])
    return session, session.get_inputs()[0].shape


def test_backbone_graph_serves_any_size(tmp_path):
    """With trained-like weights: the check compares ONNX Runtime (folded
    BatchNorms) with the unfolded model."""
    ckpt = trained_like_checkpoint(tmp_path, EMO(arch='1m'))
    out = tmp_path / 'emo_1m.onnx'
    result = export(
        '1m',
        str(out),
        shape=(64, 64),
        window_size=[7, 7, 5, 4],
        checkpoint=ckpt,
        check=['45x77', '100x33'])
    sizes = [(h, w) for _, h, w, _, _ in result['checked']]
    assert sizes == [(45, 77), (100, 33)]
    assert all(diff <= 1e-4 for *_, diff in result['checked'])
    session, dims = _dims(out)
    assert dims == ['batch', 3, 'height', 'width']
    assert [o.name for o in session.get_outputs()
            ] == ['stride2', 'stride4', 'stride8', 'stride16', 'stride32']
    # A size and batch the tool did not check: the dynamic dims hold.
    torch.manual_seed(0)
    x = torch.randn(3, 3, 59, 123)
    got = session.run(None, {'input': x.numpy()})
    assert [g.shape[2:] for g in got] == [(30, 62), (15, 31), (8, 16), (4, 8),
                                          (2, 4)]
    assert all(np.isfinite(g).all() for g in got)


def test_graph_of_the_authors_weights_reproduces_their_outputs(
        authors_fixture, tmp_path):
    """The authors' checkpoint, exported: ONNX Runtime gives the authors'
    five feature maps on the fixture's input (both fixtures: 224x224 with
    window 7, 200x264 with window 10)."""
    ckpt = tmp_path / 'net.pth'
    torch.save(authors_fixture['state_dict'], ckpt)
    out = tmp_path / 'authors.onnx'
    export(
        authors_fixture['variant'],
        str(out),
        checkpoint=str(ckpt),
        window_size=authors_fixture['window_size'],
        check=[])
    session, _ = _dims(out)
    got = session.run(None, {'input': authors_fixture['input'].numpy()})
    assert len(got) == len(authors_fixture['stage_outputs']) == 5
    for i, (a, ref) in enumerate(zip(got, authors_fixture['stage_outputs'])):
        diff = float(np.abs(a - ref.float().numpy()).max())
        assert diff <= 1e-5, f'stage {i}: max abs diff {diff:.3g}'


@pytest.mark.parametrize('config,names', [
    ('configs/ssdlite/emo_1m_coco.py',
     [f'cls_score_{i}'
      for i in range(6)] + [f'bbox_pred_{i}' for i in range(6)]),
    ('configs/retinanet/emo_1m_coco.py',
     [f'cls_score_{i}'
      for i in range(5)] + [f'bbox_pred_{i}' for i in range(5)]),
    ('configs/deeplabv3/emo_1m_ade20k.py', ['seg_logits']),
    ('configs/imagenet/emo_1m_in1k.py', ['cls_score']),
])
def test_downstream_graphs(tmp_path, config, names):
    """With trained-like weights, ONNX Runtime (folded BatchNorms) matches
    the unfolded model at two sizes."""
    path = osp.join(REPO_ROOT, config)
    ckpt = trained_like_checkpoint(tmp_path, build_model(load_config(path)),
                                   True)
    out = tmp_path / 'model.onnx'
    result = export(
        path,
        str(out),
        shape=(96, 128),
        checkpoint=ckpt,
        check=['81x145', '130x97'])
    assert 'BGR 0-255, normalised in the graph' in result['expects']
    assert len(result['checked']) == 2
    assert all(diff <= 1e-4 for *_, diff in result['checked'])
    session, dims = _dims(out)
    assert dims == ['batch', 3, 'height', 'width']
    assert [o.name for o in session.get_outputs()] == names


def test_adaptive_pooling_is_refused_in_one_line(tmp_path):
    """PSPNet's pyramid pooling cannot be traced to ONNX behind EMO: the
    tool says so (no traceback) and leaves no file."""
    config = osp.join(REPO_ROOT, 'configs/pspnet/emo_1m_ade20k.py')
    out = tmp_path / 'pspnet.onnx'
    with pytest.raises(
            UserError, match=r'pools to fixed output sizes .*PSPNet'):
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
    with pytest.raises(UserError, match='pass force=True'):
        export('1m', str(existing))
    assert existing.read_bytes() == b'keep me'
    with pytest.raises(UserError, match="'3m' is neither"):
        export('3m', str(tmp_path / 'a.onnx'))
    # EMOv2's 20M has no EMO twin: the message says how to name it.
    with pytest.raises(UserError, match="EMOv2-20M is emov2-20m"):
        export('20m', str(tmp_path / 'a.onnx'))
    with pytest.raises(UserError, match='unexpected keyword .*no_such'):
        export(
            'emov2-1m',
            str(tmp_path / 'a.onnx'),
            backbone_options=dict(no_such=1))
    with pytest.raises(UserError, match='apply to a bare backbone'):
        export(
            osp.join(REPO_ROOT, 'configs/ssdlite/emov2_1m_coco.py'),
            str(tmp_path / 'a.onnx'),
            backbone_options=dict(a=1))
    with pytest.raises(UserError, match='checkpoint /no/w.pth'):
        export('1m', str(tmp_path / 'a.onnx'), checkpoint='/no/w.pth')
    with pytest.raises(UserError, match="'12' is not HxW"):
        export('1m', str(tmp_path / 'a.onnx'), check=['12'])
    # An EMO checkpoint for an EMOv2 backbone: refused, naming both.
    emo = tmp_path / 'emo_1m.pth'
    torch.save(EMO(arch='1m').state_dict(), emo)
    with pytest.raises(
            UserError, match='EMO-1M weights, but the model is '
            'EMOv2-1M'):
        export('emov2-1m', str(tmp_path / 'a.onnx'), checkpoint=str(emo))
    emo.unlink()
    # A check that fails (no tolerance at all) leaves no file behind.
    with pytest.raises(UserError, match='> atol=0.0'):
        export(
            '1m',
            str(tmp_path / 'a.onnx'),
            shape=(64, 64),
            check=['45x77'],
            atol=0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['old.onnx']


def test_command_line(tmp_path):
    """The tool prints what it checked and wrote (an EMOv2 backbone in the
    authors' segmentation form, through --backbone-options in both
    spellings: dict(...) and dotted keys; trained-like weights, so that
    the check compares a non-trivial fold); a refusal is one line."""
    model, *_ = backbone_for_export(
        'emov2-1m', [7, 7, 5, 4],
        options=dict(
            dw_norm_cfg=dict(type='LN2d', eps=1e-6),
            dw_act_cfg=dict(type='GELU')))
    ckpt = trained_like_checkpoint(tmp_path, model)
    out = tmp_path / 'emov2_1m.onnx'
    log = run_python('tools/deployment/export_onnx.py', 'emov2-1m', str(out),
                     '--shape', '64', '64', '--window-size', '7', '7', '5',
                     '4', '--backbone-options',
                     "dw_norm_cfg=dict(type='LN2d',eps=1e-6)",
                     'dw_act_cfg.type=GELU', '--checkpoint', ckpt, '--check',
                     '45x77', '100x33').stdout
    assert 'matches PyTorch within --atol 0.0001 at 2 sizes' in log
    assert f'wrote {out}' in log and out.is_file()
    # The LayerNorms after the depthwise convs are in the graph.
    layer_norms = [
        n for n in onnx.load(str(out)).graph.node
        if n.op_type == 'LayerNormalization'
    ]
    assert len(layer_norms) >= sum(EMOv2.arch_settings['1m']['depths'])
    status, refused = run_tool('deployment/export_onnx.py', '3m',
                               tmp_path / 'a.onnx')
    assert status != 0 and 'Traceback' not in refused
    assert "error: '3m' is neither a backbone name" in refused
    # The library's argument names become the tool's flags.
    status, refused = run_tool('deployment/export_onnx.py', 'emov2-1m', out)
    assert status == 1 and f'{out} exists; pass --force to' in refused


# ---------------------------------------------------------------- EMOv2
def test_backbone_names():
    """A bare arch is EMO's (as before EMOv2); a family prefix picks."""
    assert parse_backbone('1m') == (EMO, '1m')
    assert parse_backbone('EMO-5M') == (EMO, '5m')
    assert parse_backbone('emo_6m') == (EMO, '6m')
    assert parse_backbone('emov2-5m') == (EMOv2, '5m')
    assert parse_backbone('EMOv2_20M') == (EMOv2, '20m')
    for name in ('20m', 'emo-20m', 'emov2-6m', 'emov3-1m', 'configs/x.py'):
        assert parse_backbone(name) is None, name
    names = backbone_names()
    assert names[:4] == ['1m', '2m', '5m', '6m']
    assert {'emo-1m', 'emov2-1m', 'emov2-20m'} <= set(names)
    assert all(parse_backbone(name) for name in names)


@pytest.mark.parametrize('shape', [(224, 224), (320, 320), (512, 512),
                                   (256, 192), (64, 64)])
def test_check_sizes_leave_a_remainder_everywhere(shape):
    """Each default check size is odd (no stride divides it), not a
    multiple of 7, and its stride-16 map divides into no window."""
    sizes = default_check_sizes(shape)
    assert len(sizes) == 3 and len(set(sizes)) == 3
    for size in (n for pair in sizes for n in pair):
        assert size % 2 == 1 and size % 7 != 0, sizes
        assert all(-(-size // 16) % w for w in WINDOW_SIZES), sizes


def test_deploy_folds_each_module_once(monkeypatch):
    """The driver calls switch_to_deploy on the outermost modules that have
    it (the backbone folds its own blocks), each once, and counts them."""
    from emo_mm.models.backbones.emo import iRMB
    calls = []
    original = iRMB.switch_to_deploy

    def counted(self):
        calls.append(self)
        original(self)

    monkeypatch.setattr(iRMB, 'switch_to_deploy', counted)
    holder = torch.nn.Sequential(EMO(arch='1m').eval(), torch.nn.ReLU())
    assert deploy(holder) == 1
    blocks = [m for m in holder.modules() if isinstance(m, iRMB)]
    assert len(calls) == len(blocks) == 1 + sum(
        EMO.arch_settings['1m']['depths'])
    assert len(set(map(id, calls))) == len(calls)


@pytest.mark.parametrize('dw_norm', ['BN', 'LN2d'])
def test_deploy_folds_emov2(dw_norm):
    """deploy() leaves no BatchNorm and no LayerScale in an EMOv2 backbone
    (either norm after the depthwise convs), and the same outputs."""
    options = dict(
        dw_norm_cfg=dict(type='LN2d', eps=1e-6), dw_act_cfg=dict(
            type='GELU')) if dw_norm == 'LN2d' else {}
    model, *_ = backbone_for_export('emov2-1m', [7, 7, 5, 4], options=options)
    trained_like(model)
    x = torch.randn(2, 3, 61, 83)
    with torch.no_grad():
        expected = model(x)
    deploy(model)
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert not any(
        name.endswith('gamma') for name, _ in model.named_parameters())
    with torch.no_grad():
        got = model(x)
    assert len(got) == 5
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_emov2_backbone_graph_serves_any_size(tmp_path):
    """An EMOv2 backbone (weights in emo_mm's layout, LayerScales about 0.5)
    exported by name: ONNX Runtime matches PyTorch at sizes no window
    divides, and the graph takes any batch and size."""
    ckpt = tmp_path / 'emov2_2m.pth'
    torch.save(trained_like(EMOv2(arch='2m')).state_dict(), ckpt)
    out = tmp_path / 'emov2_2m.onnx'
    result = export(
        'EMOv2-2M',
        str(out),
        checkpoint=str(ckpt),
        shape=(64, 64),
        window_size=[7, 7, 5, 4],
        check=['45x77', '100x33'])
    assert [(h, w) for _, h, w, _, _ in result['checked']] == [(45, 77),
                                                               (100, 33)]
    assert all(diff <= 1e-4 for *_, diff in result['checked'])
    session, dims = _dims(out)
    assert dims == ['batch', 3, 'height', 'width']
    assert [o.name for o in session.get_outputs()
            ] == ['stride2', 'stride4', 'stride8', 'stride16', 'stride32']
    torch.manual_seed(0)
    x = torch.randn(3, 3, 59, 123)
    got = session.run(None, {'input': x.numpy()})
    assert [g.shape[1:] for g in got] == [(16, 30, 62), (32, 15, 31),
                                          (48, 8, 16), (120, 4, 8),
                                          (200, 2, 4)]
    # The deep outputs depend on the image (they would not at init).
    assert np.abs(got[4][0] - got[4][1]).max() > 1e-2


def _attending_blocks(arch):
    depths = EMOv2.arch_settings[arch]['depths']
    return (depths[2] - 1) + (depths[3] - 1)  # all but the first of 3-4


def test_emov2_graph_of_the_authors_weights_reproduces_their_outputs(
        emov2_fixture, tmp_path):
    """The authors' EMOv2 weights exported through the fused attention
    (F.scaled_dot_product_attention with values wider than queries and
    keys): ONNX Runtime gives the authors' five feature maps on the
    fixture's input. The fixtures cover window 7 at 224x224 (divisible) and
    200x264 (padded), and the authors' segmentation backbone (LayerNorm2d +
    GELU after the depthwise convs, window 10, padded at 160x192)."""
    ckpt = tmp_path / 'net.pth'
    torch.save(emov2_fixture['state_dict'], ckpt)
    out = tmp_path / 'authors.onnx'
    kwargs = dict(emov2_fixture['kwargs'])
    window = kwargs.pop('window_size')
    arch = emov2_fixture['arch']
    # The same model as exported: fused attention, values wider than q/k.
    model, *_ = backbone_for_export(f'emov2-{arch}', window, options=kwargs)
    attn_blocks = [
        b for b in model.modules() if getattr(b, 'attn', None) is not None
    ]
    assert len(attn_blocks) == _attending_blocks(arch)
    for block in attn_blocks:
        assert block.attn.fused_attn
        assert block.v.conv.out_channels > block.attn.qk.out_channels // 2
    export(
        f'emov2-{arch}',
        str(out),
        checkpoint=str(ckpt),
        window_size=window,
        check=[],
        backbone_options=kwargs)
    # Both window partitions of every attending block are in the graph.
    softmaxes = [
        n for n in onnx.load(str(out)).graph.node if n.op_type == 'Softmax'
    ]
    assert len(softmaxes) == 2 * _attending_blocks(arch)
    session, _ = _dims(out)
    got = session.run(None, {'input': emov2_fixture['input'].numpy()})
    assert len(got) == len(emov2_fixture['stage_outputs']) == 5
    for i, (a, ref) in enumerate(zip(got, emov2_fixture['stage_outputs'])):
        diff = float(np.abs(a - ref.float().numpy()).max())
        assert diff <= 1e-5, f'stage {i}: max abs diff {diff:.3g}'


@pytest.mark.parametrize('config,names', [
    ('configs/ssdlite/emov2_1m_coco.py',
     [f'cls_score_{i}'
      for i in range(6)] + [f'bbox_pred_{i}' for i in range(6)]),
    ('configs/deeplabv3/emov2_1m_ade20k.py', ['seg_logits']),
    ('configs/sem_fpn/emov2_1m_ade20k.py', ['seg_logits']),
])
def test_emov2_config_graphs(tmp_path, config, names):
    """EMOv2 configs (SSDLite; DeepLabV3 and Semantic FPN with the authors'
    LayerNorm2d + GELU after the depthwise convs), with a checkpoint whose
    LayerScales are about 0.5 (at their initial 1e-6 the outputs would not
    depend on the image): ONNX Runtime matches the unfolded PyTorch model
    at sizes no window (10) or stride divides, and other than the traced one
    (Semantic FPN's head upsamples by a factor: see
    test_upsampling_follows_the_input)."""
    path = osp.join(REPO_ROOT, config)
    model = build_model(load_config(path))
    trained_like(model, lambda x: model(x, mode='tensor'), (96, 128))
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = tmp_path / 'model.onnx'
    result = export(
        path,
        str(out),
        checkpoint=str(ckpt),
        shape=(96, 128),
        check=['81x145', '130x97'])
    assert 'BGR 0-255, normalised in the graph' in result['expects']
    assert len(result['checked']) == 2
    assert all(diff <= 1e-4 for *_, diff in result['checked'])
    session, dims = _dims(out)
    assert dims == ['batch', 3, 'height', 'width']
    assert [o.name for o in session.get_outputs()] == names
    torch.manual_seed(0)
    got = session.run(None,
                      {'input': (torch.rand(2, 3, 81, 145) * 255).numpy()})
    assert np.abs(got[0][0] - got[0][1]).max() > 1e-3


def test_upsampling_follows_the_input():
    """mmseg's Upsample computes its output size with int(), which the
    tracer bakes into the graph; make_traceable swaps it for ScaledUpsample,
    which gives the same values and follows the input size."""
    from mmseg.models.utils import Upsample
    model = torch.nn.Sequential(
        Upsample(scale_factor=2, mode='bilinear', align_corners=False),
        torch.nn.Sequential(Upsample(scale_factor=2, mode='nearest')),
        Upsample(size=(5, 7), mode='nearest'),  # a fixed size: kept
        Upsample(scale_factor=1.5, mode='nearest'))  # not an integer: kept
    x = torch.randn(1, 2, 13, 17)
    expected = [model[0](x), model[1](x), model[2](x), model[3](x)]
    make_traceable(model)
    assert isinstance(model[0], ScaledUpsample)
    assert isinstance(model[1][0], ScaledUpsample)
    assert type(model[2]) is Upsample and type(model[3]) is Upsample
    for module, want in zip(model, expected):
        torch.testing.assert_close(module(x), want, rtol=0, atol=0)
    traced = torch.jit.trace(model[0], torch.randn(1, 2, 8, 8))
    assert traced(x).shape[-2:] == (26, 34)


def test_two_stage_detectors_are_refused_in_one_line(tmp_path):
    """Mask R-CNN's tensor mode runs the RPN's NMS and RoIAlign: refused,
    no file."""
    config = osp.join(REPO_ROOT, 'configs/mask_rcnn/emov2_1m_coco.py')
    with pytest.raises(UserError, match='two-stage detector'):
        export(config, str(tmp_path / 'mask_rcnn.onnx'), shape=(96, 128))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ OpenVINO
@pytest.mark.parametrize('model',
                         ['1m', 'emov2-1m', 'configs/ssdlite/emo_1m_coco.py'])
def test_openvino_ir_matches_pytorch(tmp_path, model):
    """--openvino writes the IR beside the ONNX file and checks it in fp32
    at three sizes that no window divides, within 1e-4 like ONNX Runtime,
    against the unfolded model with trained-like weights."""
    pytest.importorskip(
        'openvino',
        reason='openvino is optional '
        '(requirements/export.txt; CI installs it)')
    import openvino as ov

    # The same weights whatever ran before in this process.
    torch.manual_seed(0)
    if model.endswith('.py'):
        path = osp.join(REPO_ROOT, model)
        ckpt = trained_like_checkpoint(tmp_path,
                                       build_model(load_config(path)), True)
    else:
        path = model
        backbone, arch = parse_backbone(model)
        ckpt = trained_like_checkpoint(tmp_path, backbone(arch=arch))
    out = tmp_path / 'model.onnx'
    result = export(path, str(out), checkpoint=ckpt, openvino=True)
    assert result['ir'] == str(tmp_path / 'model.xml')
    assert (tmp_path / 'model.bin').is_file()
    assert not list(tmp_path.glob('*.part*'))
    checked = result['openvino_checked']
    assert len(checked) == 3
    for batch, h, w, outputs, diff in checked:
        assert h % 7 and w % 7 and h % 10 and w % 10
        assert diff <= 1e-4
    assert [c[:4] for c in checked] == [c[:4] for c in result['checked']]
    # The IR keeps fp32 weights and a dynamic batch, height and width.
    ir = ov.Core().read_model(result['ir'])
    assert ir.input(0).get_partial_shape().is_dynamic
    consts = [op for op in ir.get_ops() if op.get_type_name() == 'Constant']
    assert not any(
        str(c.get_element_type()) == '<Type: \'float16\'>' for c in consts)


def test_openvino_runs_in_fp32():
    """The CPU plugin would pick bf16 on CPUs with such units; the check
    and the benchmark compile for fp32 arithmetic."""
    ov = pytest.importorskip('openvino', reason='openvino is optional')
    from emo_mm.deployment import OPENVINO_FP32
    param = ov.opset13.parameter([1, 4], ov.Type.f32)
    model = ov.Model([ov.opset13.relu(param)], [param])
    compiled = ov.Core().compile_model(model, 'CPU', OPENVINO_FP32)
    assert compiled.get_property('INFERENCE_PRECISION_HINT') == ov.Type.f32


def test_openvino_refusals_write_nothing(tmp_path):
    out = tmp_path / 'emo.xml'
    with pytest.raises(UserError, match='must end in .onnx'):
        export('1m', str(out), openvino=True)
    (tmp_path / 'emo.xml').write_text('kept')
    with pytest.raises(UserError, match='emo.xml exists; pass force=True'):
        export('1m', str(tmp_path / 'emo.onnx'), openvino=True)
    assert (tmp_path / 'emo.xml').read_text() == 'kept'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['emo.xml']
