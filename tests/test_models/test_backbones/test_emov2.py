"""emo_mm.models.backbones.emov2: EMOv2 reproduces the authors' model and
their mmseg backbone (fixtures of their code) on every path, counts its
parameters as they do, loads their checkpoints and refuses the wrong ones by
name, and takes any input size."""
import logging

import pytest
import torch
from conftest import (EMOV2_BACKBONE_PARAMS, EMOV2_CLASSIFIER_PARAMS,
                      EMOV2_FIXTURE_NAMES, EMOV2_SEG_ARGS, load_emov2_fixture,
                      save_authors_checkpoint, stored_state_dict)
from mmengine.logging import MMLogger
from torch.nn.modules.batchnorm import _BatchNorm

import emo_mm  # noqa: F401  (registers EMOv2)
from emo_mm import UserError
from emo_mm.models import EMO, EMOv2, LayerNorm2d
from emo_mm.models.backbones.emov2 import I2RMB, SpanningWindowAttention
from emo_mm.models.checkpoint import authors_to_ours, ours_to_authors


def count_params(module):
    return sum(p.numel() for p in module.parameters())


def from_fixture(fixture, tmp_path, **kwargs):
    """EMOv2 loading the fixture's weights as the authors' flat file,
    through init_cfg, in eval mode."""
    path = save_authors_checkpoint(fixture['state_dict'], tmp_path / 'net.pth')
    model = EMOv2(
        arch=fixture['arch'],
        out_indices=(0, 1, 2, 3, 4),
        init_cfg=dict(type='Pretrained', checkpoint=path),
        **fixture['kwargs'],
        **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('fused_attn,channels_last,deploy',
                         [(True, False, False), (False, False, False),
                          (True, True, False), (False, True, True)])
def test_parity_with_authors_model(emov2_fixture, tmp_path, fused_attn,
                                   channels_last, deploy):
    """All five outputs within 1e-4, with every fast path on and off."""
    model = from_fixture(
        emov2_fixture,
        tmp_path,
        fused_attn=fused_attn,
        channels_last=channels_last)
    if deploy:
        model.switch_to_deploy()
        assert model.deploy
        # Every BN folds; the segmentation backbone's LayerNorms stay.
        assert not any(isinstance(m, _BatchNorm) for m in model.modules())
        assert not any(m.gamma is not None
                       for m in model.modules() if isinstance(m, I2RMB))
    with torch.no_grad():
        outs = model(emov2_fixture['input'])
    expected = emov2_fixture['stage_outputs']
    assert len(outs) == len(expected) == 5
    for i, (out, ref) in enumerate(zip(outs, expected)):
        assert out.shape == ref.shape, f'stage {i}'
        if channels_last:
            assert out.is_contiguous(memory_format=torch.channels_last)
        diff = (out - ref).abs().max().item()
        assert diff <= 1e-4, f'stage {i}: max abs diff {diff:.3g}'


@pytest.mark.parametrize('name',
                         [n for n in EMOV2_FIXTURE_NAMES if '_seg_' not in n])
def test_classifier_logits(name):
    """The final norm, pooling and the authors' head give their logits."""
    emov2_fixture = load_emov2_fixture(name)
    ours = authors_to_ours(emov2_fixture['state_dict'])
    head_w, head_b = ours.pop('head.weight'), ours.pop('head.bias')
    model = EMOv2(
        arch=emov2_fixture['arch'],
        out_indices=4,
        final_norm=True,
        **emov2_fixture['kwargs']).eval()
    model.load_state_dict(ours)  # strict: every key of the authors'
    with torch.no_grad():
        feat = model(emov2_fixture['input'])[0].mean((2, 3))
    logits = feat @ head_w.T + head_b
    assert (logits - emov2_fixture['logits']).abs().max() <= 1e-4


def test_param_counts_and_key_layout(emov2_fixture):
    arch = emov2_fixture['arch']
    model = EMOv2(arch=arch, **emov2_fixture['kwargs'])
    assert count_params(model) == emov2_fixture['num_backbone_params']
    authors = emov2_fixture['state_dict']
    if emov2_fixture['logits'] is not None:
        model = EMOv2(arch=arch, final_norm=True, **emov2_fixture['kwargs'])
        head = authors['head.weight']
        assert count_params(model) + head.numel() + head.shape[0] == \
            emov2_fixture['num_params']
        authors = {
            k: v
            for k, v in authors.items() if not k.startswith('head.')
        }
    # Our keys map to exactly theirs and back.
    ours = model.state_dict()
    assert set(ours_to_authors(ours)) == set(authors)
    assert set(authors_to_ours(authors)) == set(ours)


@pytest.mark.parametrize('arch', sorted(EMOV2_BACKBONE_PARAMS))
def test_param_counts(arch):
    assert count_params(EMOv2(arch=arch)) == EMOV2_BACKBONE_PARAMS[arch]
    # The classifier: final LayerNorm and a 1000-class linear head.
    model = EMOv2(arch=arch, final_norm=True)
    width = model.out_channels[-1]
    assert count_params(model) + 1000 * width + 1000 == \
        EMOV2_CLASSIFIER_PARAMS[arch]
    # The segmentation variant swaps BNs for LNs of the same size.
    assert count_params(EMOv2(arch=arch, **EMOV2_SEG_ARGS)) == \
        EMOV2_BACKBONE_PARAMS[arch]


def test_imagenet_weights_into_the_segmentation_backbone(tmp_path):
    """As in the authors' mmseg runs: everything loads but the LayerNorms
    after the depthwise convs, which keep their initial values, and the log
    names them."""
    authors = load_emov2_fixture('emo2_5m_k5_hybrid_200x264.pt')['state_dict']
    ckpt = save_authors_checkpoint(authors, tmp_path / 'net.pth')
    model = EMOv2(
        arch='5m',
        window_size=10,
        init_cfg=dict(type='Pretrained', checkpoint=ckpt),
        **EMOV2_SEG_ARGS)
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        model.init_weights()
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    kept = [m for m in messages if 'keep their initial values' in m]
    lns = [
        n for n, m in model.named_modules()
        if isinstance(m, LayerNorm2d) and '.conv_local.' in n
    ]
    assert len(lns) == sum(model.arch['depths']) == 18
    assert len(kept) == 1 and kept[0].startswith('18 LayerNorms')
    assert all(name in kept[0] for name in lns)
    # Nothing else is reported missing or left over.
    assert not any('missing' in m or 'does not have' in m for m in messages)
    state = model.state_dict()
    for name in lns:
        assert state[f'{name}.weight'].eq(1).all()
        assert state[f'{name}.bias'].eq(0).all()
    ours = authors_to_ours(authors)
    for key, value in state.items():
        if '.conv_local.ln.' not in key:
            torch.testing.assert_close(
                value.float(), ours[key].float(), msg=key)


def test_checkpoint_family_and_variant_errors_name_both(tmp_path):
    v2 = EMOv2(arch='5m')
    v1_path = str(tmp_path / 'emo.pth')
    torch.save({'state_dict': EMO(arch='5m').state_dict()}, v1_path)
    v2_path = str(tmp_path / 'emov2.pth')
    torch.save(ours_to_authors(v2.state_dict()), v2_path)  # authors' layout
    # An EMO authors' net.pth (stage0.0.convs...) too.
    v1_authors = save_authors_checkpoint(stored_state_dict(),
                                         tmp_path / 'net.pth')
    cases = [(EMOv2, '5m', v1_path, 'EMO-5M', 'EMOv2-5M'),
             (EMO, '5m', v2_path, 'EMOv2-5M', 'EMO-5M'),
             (EMOv2, '1m', v2_path, 'EMOv2-5M', 'EMOv2-1M'),
             (EMOv2, '1m', v1_authors, 'EMO-1M', 'EMOv2-1M')]
    for backbone, arch, path, held, model in cases:
        init_cfg = dict(type='Pretrained', checkpoint=path)
        with pytest.raises(
                UserError,
                match=f'holds {held} weights, but the model is {model}'):
            backbone(arch=arch, init_cfg=init_cfg).init_weights()


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='6m'), r"unknown EMOv2 arch '6m'; allowed: \['1m', '2m', "
     r"'5m', '20m'\]"),
    (dict(arch=dict(depths=(1, 1, 1, 1))), r'EMOv2 arch dict misses keys'),
    (dict(window_size=(7, 7)), r'window_size must be an int or 4 ints'),
    (dict(out_indices=(5, )), r'out_indices entry 5 is out of range'),
    (dict(frozen_stages=5), r'frozen_stages=5 is out of range'),
    (dict(arch=dict(EMOv2.arch_settings['1m'], exp_ratios=(2, 2, 2.0125, 2))),
     r'value width 161 does not split into 4 heads'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EMOv2(**kwargs)


@pytest.mark.parametrize('arch', ['1m', '20m'])
@pytest.mark.parametrize('size', [(97, 131), (33, 65), (1, 1)])
def test_output_shapes_any_size(arch, size):
    model = EMOv2(arch=arch, out_indices=(0, 1, 2, 3, 4), window_size=10)
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    h, w = size
    for out, channels in zip(outs, model.out_channels):
        h, w = (h + 1) // 2, (w + 1) // 2  # each output halves the last
        assert out.shape == (1, channels, h, w)


def test_training_paths():
    """Gradients reach every parameter, in both memory formats alike; frozen
    stages and norm_eval hold through train()."""
    torch.manual_seed(0)
    plain = EMOv2(arch='1m', out_indices=(0, 1, 2, 3, 4), window_size=4)
    fast = EMOv2(
        arch='1m',
        out_indices=(0, 1, 2, 3, 4),
        window_size=4,
        channels_last=True,
        fused_attn=False)
    fast.load_state_dict(plain.state_dict())
    with torch.no_grad():  # LayerScale of 1e-6 would hide the blocks
        for model in (plain, fast):
            for block in model.modules():
                if isinstance(block, I2RMB):
                    block.gamma.fill_(0.5)
    x = torch.randn(2, 3, 70, 90)
    grads = []
    for model in (plain, fast):
        model.eval()  # batch statistics would differ by rounding only
        sum(o.square().mean() for o in model(x)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert all(g is not None and g.abs().sum() > 0
               for g in grads[0].values()), 'a parameter got no gradient'
    for name, grad in grads[0].items():
        # Relative to the tensor's scale: sums in another order differ in
        # the last bits, which is large relative to near-zero entries.
        diff = (grads[1][name] - grad).abs().max()
        assert diff <= 1e-4 * grad.abs().max(), (name, diff)

    frozen = EMOv2(arch='1m', frozen_stages=2, norm_eval=True).train()
    assert not any(p.requires_grad for s in frozen.stages[:3]
                   for p in s.parameters())
    assert all(p.requires_grad for p in frozen.stages[3].parameters())
    assert not any(m.training
                   for m in frozen.modules() if isinstance(m, _BatchNorm))


def test_drop_path_and_layer_scale():
    model = EMOv2(arch='1m', drop_path_rate=0.1)
    rates = [
        getattr(b.drop_path, 'drop_prob', 0.0) for s in model.stages[1:]
        for b in s
    ]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert rates == sorted(rates)
    gammas = [b.gamma for s in model.stages[1:] for b in s]
    assert all(g.eq(1e-6).all() for g in gammas)


def test_downsample_layer_scale_init_keeps_a_fresh_model_in_scale():
    """From scratch, each stage's first block (no skip) scales the whole
    stage output by its LayerScale: with the authors' 1e-6 the stride-16
    and stride-32 maps of a fresh model in training mode are below 1e-8 of
    the input's scale; ``downsample_layer_scale_init=1.0`` starts only
    those blocks at 1.0 and keeps every stage output near the stem's."""

    def stage_scales(**kwargs):
        torch.manual_seed(0)
        model = EMOv2(
            arch='1m',
            out_indices=(0, 1, 2, 3, 4),
            norm_cfg=dict(type='BN'),
            **kwargs).train()
        with torch.no_grad():
            outs = model(torch.randn(4, 3, 64, 64))
        return model, [o.abs().mean().item() for o in outs]

    model, scales = stage_scales(downsample_layer_scale_init=1.0)
    for stage in model.stages[1:]:
        assert stage[0].gamma.eq(1.0).all()
        assert all(block.gamma.eq(1e-6).all() for block in stage[1:])
    assert all(0.1 < s / scales[0] < 10 for s in scales[1:]), scales
    _, authors = stage_scales()
    assert authors[3] / authors[0] < 1e-8 and authors[4] < authors[3]


def test_spanning_attention_sums_both_partitions():
    """Against a direct computation: remote windows (strided grid) plus
    close windows (tiles), same q, k and v."""
    torch.manual_seed(0)
    attn = SpanningWindowAttention(8, head_dim=4, window_size=2)
    value = torch.nn.Conv2d(8, 12, 1)
    x = torch.randn(1, 8, 4, 4)
    q, k = attn.qk(x).chunk(2, dim=1)
    v = value(x)
    expected = torch.zeros(1, 12, 4, 4)
    for rows_cols in (
        [((0, 2), (0, 2)), ((0, 2), (1, 3)), ((1, 3), (0, 2)),
         ((1, 3), (1, 3))],  # remote: strided
        [((0, 1), (0, 1)), ((0, 1), (2, 3)), ((2, 3), (0, 1)),
         ((2, 3), (2, 3))]):  # close: tiles
        for rows, cols in rows_cols:
            idx = [(r, c) for r in rows for c in cols]
            for head in range(2):

                def take(t, width):
                    return torch.stack([
                        t[0, head * width:(head + 1) * width, r, c]
                        for r, c in idx
                    ])

                weights = (take(q, 4) @ take(k, 4).T * 0.5).softmax(-1)
                out = weights @ take(v, 6)
                for n, (r, c) in enumerate(idx):
                    expected[0, head * 6:(head + 1) * 6, r, c] += out[n]
    with torch.no_grad():
        torch.testing.assert_close(attn(x, value), expected.detach())


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_builds_in_every_downstream_scope(scope):
    import importlib

    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry')
    model = registry.MODELS.build(
        dict(
            type='EMOv2',
            arch='1m',
            dw_norm_cfg=dict(type='LN2d'),
            dw_act_cfg=dict(type='GELU')))
    assert isinstance(model, EMOv2)
    assert isinstance(model.stages[1][0].conv_local.norm, LayerNorm2d)
