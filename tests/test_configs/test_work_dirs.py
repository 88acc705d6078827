"""One work dir per shipped config under the stock tools' rule.

The stock ``tools/train.py`` of mmdet, mmseg and mmpretrain train into
``--work-dir``, else the config's ``work_dir``, else
``work_dirs/<config file name>``: file names repeat across our folders
(``ssdlite/emo_5m_coco.py`` and ``retinanet/emo_5m_coco.py``), so each
config states its own.
"""
import ast
import glob
import os.path as osp

import pytest
from conftest import REPO_ROOT, shipped_config

CONFIGS = sorted(
    osp.relpath(p, osp.join(REPO_ROOT, 'configs'))
    for p in glob.glob(osp.join(REPO_ROOT, 'configs', '*', '*.py')))


def stock_work_dir(cfg, config):
    """The rule of the stock ``tools/train.py`` without ``--work-dir``."""
    if cfg.get('work_dir', None) is not None:
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])


def own_work_dir(config):
    """The ``work_dir`` the file itself assigns (None if it assigns none)."""
    with open(osp.join(REPO_ROOT, 'configs', config)) as f:
        tree = ast.parse(f.read())
    values = [
        node.value.value for node in tree.body
        if isinstance(node, ast.Assign) and any(
            getattr(t, 'id', None) == 'work_dir' for t in node.targets)
    ]
    assert len(values) <= 1, f'{config} assigns work_dir {len(values)} times'
    return values[0] if values else None


def test_every_config_names_its_own_work_dir():
    # A file's own top-level assignment overrides whatever its bases say,
    # so this fixes what the stock rule reads for every config without
    # parsing all of them (test below: it does).
    assert len(CONFIGS) == 59
    dirs = {config: own_work_dir(config) for config in CONFIGS}
    expected = {
        config: './work_dirs/' + osp.splitext(config)[0]
        for config in CONFIGS
    }
    assert dirs == expected
    assert len(set(dirs.values())) == len(CONFIGS)


@pytest.mark.parametrize(
    'config',
    [
        'ssdlite/emo_5m_coco.py',  # inherits from ssdlite/emo_1m_coco.py
        'retinanet/emo_5m_coco.py',
        'deeplabv3/emov2_5m_ade20k.py',
        'pspnet/emov2_5m_ade20k.py',
        'demo/ssdlite_emov2_1m_shapes.py',  # two levels of our own bases
    ])
def test_the_parsed_config_gives_its_own_work_dir(config):
    cfg = shipped_config(config)
    assert stock_work_dir(cfg, config) == own_work_dir(config)
