"""emo_mm.analysis.complexity and its tool, tools/analysis/get_flops.py:
parameters and FLOPs of EMO and EMOv2 configs and backbones, against the
papers."""
import glob
import os.path as osp
import subprocess
import sys

import pytest

from conftest import (EMOV2_BACKBONE_PARAMS, EMOV2_CLASSIFIER_PARAMS,
                      PAPER_FLOPS_M, REPO_ROOT, run_python)
from emo_mm.analysis import (PAPER, all_configs, analyze_config,
                             count_backbone, describe, paper_numbers)
from emo_mm.config import input_shape, load_config
from emo_mm.models import EMO, EMOv2

TOOL = osp.join(REPO_ROOT, 'tools', 'analysis', 'get_flops.py')
SSDLITE_1M = osp.join(REPO_ROOT, 'configs', 'ssdlite', 'emo_1m_coco.py')
RETINANET_1M = osp.join(REPO_ROOT, 'configs', 'retinanet', 'emo_1m_coco.py')


@pytest.fixture(scope='module')
def ssdlite_1m():
    return analyze_config(SSDLITE_1M)


def test_ssdlite_1m_counts(ssdlite_1m):
    # Params are exact; the paper reports 2.3M.
    assert ssdlite_1m['params'] == 2_311_980
    assert ssdlite_1m['shape'] == (320, 320)
    # Measured 596,631,488 multiply-adds at 320x320 (mmengine 0.10.7). A big
    # drop would mean the attention matmuls (fused path) went uncounted.
    assert ssdlite_1m['flops'] == pytest.approx(596_631_488, rel=0.01)
    assert ssdlite_1m['by_operator']['matmul'] > 0


def test_describe(ssdlite_1m):
    out = describe(SSDLITE_1M, ssdlite_1m)
    assert '2,311,980' in out
    assert '1x3x320x320' in out
    assert 'paper:   2.3M params' in out


@pytest.mark.parametrize('arch', sorted(PAPER_FLOPS_M))
def test_backbone_flops_match_paper(arch):
    # The paper's FLOPs at 224x224 (multiply-adds of the classifier's
    # backbone), printed to three digits.
    flops = count_backbone(arch)['flops']
    assert flops == pytest.approx(PAPER_FLOPS_M[arch] * 1e6, rel=0.002)


def test_keep_ratio_shape():
    # RetinaNet's keep-ratio (1333, 800) resize is counted at 800x1280.
    cfg = load_config(RETINANET_1M)
    assert input_shape(cfg)[0] == (800, 1280)


def test_missing_config():
    missing = osp.join('configs', 'ssdlite', 'no_such_config.py')
    proc = subprocess.run([sys.executable, TOOL, missing],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert f'config file not found: {missing}' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_pspnet_1m_counts():
    path = osp.join(REPO_ROOT, 'configs', 'pspnet', 'emo_1m_ade20k.py')
    result = analyze_config(path)
    assert result['shape'] == (512, 512)  # the config's crop_size
    assert result['scope'] == 'mmseg'
    assert result['params'] == 4_374_724  # auxiliary head included
    assert result['aux_params'] == 223_382
    # Measured 2,134 M multiply-adds at 512x512 (decode head, no aux head).
    assert result['flops'] == pytest.approx(2.134e9, rel=0.01)


def test_get_flops_all_lists_every_config():
    """--all (the real tool, about 100 s here) has a row for every config of
    both families and for every bare EMO and EMOv2 backbone, each with its
    counts and its paper numbers."""
    out = run_python('tools/analysis/get_flops.py', '--all',
                     timeout=1200).stdout
    configs = sorted(
        osp.relpath(p, REPO_ROOT) for p in glob.glob(
            osp.join(REPO_ROOT, 'configs', '*', '*.py'))
        if '/demo/' not in p)
    folders = {osp.basename(osp.dirname(c)) for c in configs}
    assert {'mask_rcnn', 'segformer', 'sem_fpn'} <= folders
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split()}
    for config in configs:
        stem = osp.splitext(config[len('configs/'):])[0]
        params, flops = paper_numbers(config)
        assert rows[stem][-2:] == [params or '-', flops or '-'], stem
    # The same counts as for the configs alone.
    assert rows['ssdlite/emo_1m_coco'][2] == '2.31'
    assert rows['mask_rcnn/emov2_1m_coco'][2] == '21.27'
    for family, backbone in (('EMO', EMO), ('EMOv2', EMOv2)):
        for arch in backbone.arch_settings:
            assert f'{family}-{arch.upper()}' in rows, (family, arch)
    assert rows['EMOv2-5M'][1:] == ['5.13', '1035.5', '5.1M', '1035M']
    assert rows['EMOv2-20M'][-2:] == ['-', '-']  # not in their README
    assert rows['EMO-1M'][-2:] == ['1.3M', '261M']


# ---------------------------------------------------------------- EMOv2
@pytest.mark.parametrize('arch', sorted(EMOV2_CLASSIFIER_PARAMS))
def test_emov2_backbone_counts(arch):
    """The bare EMOv2 backbones in the classifier form: the issue's exact
    parameter counts and, where the authors' README has them, its FLOPs at
    224x224 (285M / 487M / 1035M, three digits)."""
    backbone = EMOv2(arch=arch)
    assert sum(p.numel() for p in backbone.parameters()) == \
        EMOV2_BACKBONE_PARAMS[arch]
    result = count_backbone(arch, family='EMOv2')
    assert result['params'] == EMOV2_CLASSIFIER_PARAMS[arch]
    assert result['by_operator']['matmul'] > 0  # attention counted
    paper = PAPER.get(f'imagenet/emov2_{arch}', (None, None))[1]
    if paper:
        assert result['flops'] == pytest.approx(float(paper[:-1]) * 1e6,
                                                rel=0.002)
    else:  # 20M: larger than 5M's
        assert result['flops'] > 1035e6
    with pytest.raises(ValueError, match='unknown backbone family'):
        count_backbone(arch, family='EMOv3')


def test_paper_keys_tell_the_files_apart():
    """emo_ and emov2_ files, 2m and 20m, 320 and 512 SSDLite, the 224 and
    512 classifiers each get their own numbers; every config but the 20M
    classifier (no README row) has some."""
    def numbers(config):
        return paper_numbers(osp.join(REPO_ROOT, 'configs', config))

    assert numbers('ssdlite/emo_1m_coco.py') == ('2.3M', None)
    assert numbers('ssdlite/emov2_1m_coco.py') == ('2.4M', '0.7G')
    assert numbers('ssdlite/emov2_1m_512_coco.py') == ('2.4M', '2.3G')
    assert numbers('retinanet/emov2_2m_coco.py') == ('11.5M', '146G')
    assert numbers('retinanet/emov2_20m_coco.py') == ('29.8M', '220G')
    assert numbers('imagenet/emo_5m_in1k.py') == ('5.1M', '903M')
    assert numbers('imagenet/emov2_5m_in1k.py') == ('5.1M', '1035M')
    assert numbers('imagenet/emov2_5m_512_in1k.py') == ('5.1M', '5627M')
    assert numbers('imagenet/emov2_20m_in1k.py') == (None, None)
    assert numbers('sem_fpn/emov2_20m_ade20k.py') == ('23.9M', '51.5G')
    assert numbers('pspnet/emo_2m_ade20k.py') == ('5.5M', None)
    assert numbers('no_such/emov2_1m_x.py') == (None, None)
    for config in all_configs(osp.join(REPO_ROOT, 'configs')):
        if not config.endswith('imagenet/emov2_20m_in1k.py'):
            assert paper_numbers(config)[0], config


@pytest.mark.parametrize('config,params', [
    ('configs/mask_rcnn/emov2_1m_coco.py', 21_271_788),
    ('configs/ssdlite/emov2_1m_512_coco.py', 2_409_088),
    ('configs/segformer/emov2_1m_ade20k.py', 1_499_234),
])
def test_emov2_config_counts(config, params):
    """EMOv2 configs of the new kinds: the issue's exact parameters, and
    FLOPs near the authors' README (counted by them at their settings, so
    not exactly). Mask R-CNN is counted with its RoI heads on the RPN's
    proposals, as mmdet's get_flops does."""
    path = osp.join(REPO_ROOT, config)
    result = analyze_config(path)
    assert result['params'] == params
    paper_params, paper_flops = paper_numbers(path)
    assert result['flops'] == pytest.approx(float(paper_flops[:-1]) * 1e9,
                                            rel=0.1)
    if 'mask_rcnn' in config:
        # The box head's fully connected layers ran on the proposals.
        assert result['by_operator']['linear'] > 1e9
    text = describe(path, result)
    assert f'paper:   {paper_params} params, {paper_flops} FLOPs' in text
    assert f'{params:,}' in text
