"""The model-zoo metadata and the documentation's links.

model-index.yml and configs/*/metafile.yml follow OpenMMLab's model-index
format; their paths (Config, README) are relative to the repository root.
Their parameter counts are those that tests/test_configs assert for the
built models (read from there, not built again); their FLOPs are the
folders' READMEs', three of them counted again here. Only the ImageNet
entries have Weights (the authors' released classifiers); a detection or
segmentation entry, of which no trained model was released, names the
ImageNet checkpoint its backbone starts from as Metadata.Backbone Weights.
"""
import glob
import importlib.util
import os
import os.path as osp
import re
import sys

import pytest
import yaml
from conftest import shipped_config

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.join(REPO_ROOT, 'tests')
# Config folders that are not model-zoo entries.
NOT_IN_ZOO = ('demo', '_base_')
README_MAX_LINES = 200
NO_RESULT = 'configs/imagenet/emov2_20m_in1k.py'
# The folder of the released classifiers; every other entry is a detector or
# segmentor trained from them.
CLASSIFIERS = 'configs/imagenet/'


def _load_yaml(path):
    with open(osp.join(REPO_ROOT, path)) as f:
        return yaml.safe_load(f)


def _zoo_folders():
    return sorted(
        name for name in os.listdir(osp.join(REPO_ROOT, 'configs'))
        if osp.isdir(osp.join(REPO_ROOT, 'configs', name))
        and name not in NOT_IN_ZOO)


def _metafiles():
    return _load_yaml('model-index.yml')['Import']


def _models():
    models = []
    for metafile in _metafiles():
        models += _load_yaml(metafile)['Models']
    return models


def _collections():
    collections = []
    for metafile in _metafiles():
        collections += _load_yaml(metafile)['Collections']
    return collections


def test_readme_is_short():
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        lines = f.read().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f'README.md has {len(lines)} lines; move detail into docs/')


def test_model_index_imports_every_metafile():
    expected = [f'configs/{name}/metafile.yml' for name in _zoo_folders()]
    assert sorted(_metafiles()) == expected
    for metafile in _metafiles():
        assert osp.isfile(osp.join(REPO_ROOT, metafile)), metafile


def test_every_config_is_listed_once():
    listed = [model['Config'] for model in _models()]
    assert len(listed) == len(set(listed)), 'a config is listed twice'
    on_disk = {
        osp.relpath(path, REPO_ROOT).replace(os.sep, '/')
        for path in glob.glob(osp.join(REPO_ROOT, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(path)) not in NOT_IN_ZOO
    }
    assert set(listed) == on_disk


# The tables of exact parameter counts that tests/test_configs assert for
# the models built from the configs (each config is built once there):
# module, table, folder of its keys under configs/ ('': keys have one).
BUILT_PARAMS = (
    ('test_configs/test_detection.py', 'CONFIG_PARAMS', ''),
    ('test_configs/test_segmentation.py', 'CONFIG_PARAMS', ''),
    ('test_configs/test_classification.py', 'CONFIG_PARAMS', 'imagenet/'),
    ('test_configs/test_emov2_detection.py', 'CONFIG_PARAMS', ''),
    ('test_configs/test_emov2_segmentation.py', 'CONFIGS', ''),
    ('test_configs/test_emov2_classification.py', 'PARAMS', 'imagenet/'),
)


def _test_module(path):
    """The module of ``tests/<path>``: pytest's, or loaded here when this
    file runs alone."""
    name = osp.splitext(osp.basename(path))[0]
    module = sys.modules.get(name)
    if module is not None and osp.samefile(module.__file__,
                                           osp.join(TESTS, path)):
        return module
    spec = importlib.util.spec_from_file_location(name, osp.join(TESTS, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _built_params():
    """``{config: exact parameter count}`` from :data:`BUILT_PARAMS`."""
    counts = {}
    for path, table, folder in BUILT_PARAMS:
        for key, value in getattr(_test_module(path), table).items():
            # test_emov2_segmentation's values are (log run, count).
            counts[f'configs/{folder}{key}'] = (
                value[-1] if isinstance(value, tuple) else value)
    return counts


def _readme_numbers(readme):
    """``{config file name: (params, FLOPs)}`` of the README's tables: the
    "params" column (with thousands commas) and the measured FLOPs'."""
    numbers = {}
    header = None
    with open(osp.join(REPO_ROOT, readme)) as f:
        for line in f:
            if not line.startswith('|'):
                header = None
                continue
            cells = [
                cell.strip() for cell in line.strip().strip('|').split('|')
            ]
            if header is None:
                header = cells
                continue
            links = [re.search(r'\]\(([^)/]+\.py)\)', cell) for cell in cells]
            names = [link.group(1) for link in links if link]
            params = [
                c for h, c in zip(header, cells) if h.startswith('params')
            ]
            flops = [
                c.split()[0] for h, c in zip(header, cells)
                if 'FLOPs' in h and 'measured' in h
            ]
            if names and params and flops:
                numbers[names[0]] = (int(params[0].replace(',', '')), flops[0])
    return numbers


def test_models_are_complete():
    collections = {c['Name'] for c in _collections()}
    names = [model['Name'] for model in _models()]
    assert len(names) == len(set(names)), 'a model name is used twice'
    for model in _models():
        name = model['Name']
        assert model['In Collection'] in collections, name
        assert osp.isfile(osp.join(REPO_ROOT, model['Config'])), name
        assert isinstance(model['Metadata']['Parameters'], int), name
        assert re.fullmatch(r'\d+\.\d+[MG]', model['Metadata']['FLOPs']), name
        # The authors released no EMOv2-20M weights and published no
        # ImageNet result for it: only those entries may lack them.
        no_release = osp.basename(model['Config']).startswith('emov2_20m_')
        if 'Results' in model or model['Config'] != NO_RESULT:
            results = model['Results']
            assert results and all(r['Task'] and r['Dataset'] and r['Metrics']
                                   for r in results), name
        if not model['Config'].startswith(CLASSIFIERS):
            # No trained detector or segmentor was released: a Weights here
            # would hand model-index readers (mim, mmpretrain's ModelHub) a
            # backbone checkpoint as if it were the trained model.
            assert 'Weights' not in model, name
        elif 'Weights' in model or not no_release:
            assert str(model['Weights']).startswith('https://'), name


def test_parameters_are_the_built_models_exact_counts():
    """Every entry's Parameters is the exact count that tests/test_configs
    assert for the model built from its config."""
    built = _built_params()
    listed = {m['Config']: m['Metadata']['Parameters'] for m in _models()}
    assert set(built) == set(listed)
    assert {config: built[config] for config in listed} == listed


def test_numbers_are_the_readmes():
    """Parameters and FLOPs of every entry are those of its config in the
    folder's README table (written from tools/analysis/get_flops.py)."""
    for metafile in _metafiles():
        folder = osp.dirname(metafile)
        table = _readme_numbers(osp.join(folder, 'README.md'))
        for model in _load_yaml(metafile)['Models']:
            name = osp.basename(model['Config'])
            metadata = model['Metadata']
            assert table.get(name) == (metadata['Parameters'],
                                       metadata['FLOPs']), model['Config']


def _readme_rows(readme):
    """``{config file name: its table row}`` of a README's tables."""
    rows = {}
    with open(osp.join(REPO_ROOT, readme)) as f:
        for line in f:
            link = re.search(r'\]\(([^)/]+\.py)\)', line)
            if line.startswith('|') and link:
                rows[link.group(1)] = line
    return rows


DENSE_CONFIGS = sorted(model['Config'] for model in _models()
                       if not model['Config'].startswith(CLASSIFIERS))


@pytest.mark.parametrize('config', DENSE_CONFIGS)
def test_dense_entries_name_the_checkpoint_their_backbone_starts_from(config):
    """A detection or segmentation entry's Backbone Weights is the
    checkpoint that its config's backbone ``init_cfg`` loads (absent where
    the config has none: EMOv2-20M), that checkpoint is the Weights of the
    released ImageNet classifier of the same family and variant, and the
    folder's README table names it in the config's row."""
    model, = [m for m in _models() if m['Config'] == config]
    init_cfg = shipped_config(
        config[len('configs/'):]).model.backbone.get('init_cfg')
    expected = init_cfg['checkpoint'] if init_cfg else None
    assert model['Metadata'].get('Backbone Weights') == expected
    row = _readme_rows(osp.join(osp.dirname(config),
                                'README.md'))[osp.basename(config)]
    if expected is None:
        assert osp.basename(config).startswith('emov2_20m_')
        assert 'none released' in row
        return
    classifiers = {
        m['Weights']
        for m in _models()
        if m['Config'].startswith(CLASSIFIERS) and 'Weights' in m
    }
    assert expected in classifiers
    # The same variant: EMO_5M/net.pth, EMOv2_5M_224.pth for *_5m_* configs.
    variant = re.match(r'emo(?:v2)?_(\d+m)_', osp.basename(config)).group(1)
    assert f'_{variant.upper()}' in expected
    assert ('EMOv2' in expected) == osp.basename(config).startswith('emov2')
    assert f']({expected})' in row


@pytest.mark.parametrize('config', [
    'configs/ssdlite/emov2_1m_coco.py', 'configs/deeplabv3/emo_1m_ade20k.py',
    'configs/imagenet/emov2_1m_in1k.py'
])
def test_flops_are_counted_by_emo_mm(config):
    """One config per codebase counted again (about 3 s each): its
    metafile's FLOPs are emo_mm.analysis's, to the digits written (G: three
    decimals, M: one)."""
    from emo_mm.analysis import analyze_config
    model, = [m for m in _models() if m['Config'] == config]
    result = analyze_config(osp.join(REPO_ROOT, config))
    flops = model['Metadata']['FLOPs']
    unit = {'G': (1e9, 3), 'M': (1e6, 1)}[flops[-1]]
    assert flops == f'{result["flops"] / unit[0]:.{unit[1]}f}{flops[-1]}'
    assert result['params'] == model['Metadata']['Parameters']


def test_collections_are_complete():
    for collection in _collections():
        name = collection['Name']
        assert collection['Metadata']['Training Data'], name
        assert collection['Metadata']['Architecture'], name
        assert collection['Paper']['URL'].startswith('https://'), name
        assert collection['Paper']['Title'], name
        assert osp.isfile(osp.join(REPO_ROOT, collection['README'])), name
        code = collection['Code']['URL']
        if not code.startswith(('http://', 'https://')):
            assert osp.isfile(osp.join(REPO_ROOT, code)), name


def _markdown_files():
    files = ['README.md']
    for pattern in ('docs/*.md', 'configs/*/README.md'):
        files += sorted(
            osp.relpath(path, REPO_ROOT).replace(os.sep, '/')
            for path in glob.glob(osp.join(REPO_ROOT, pattern)))
    return files


# [text](target) and ![alt](target); the target ends at whitespace or ')'.
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r'^\s*(```|~~~)')


def _relative_links(path):
    """Relative link targets of a markdown file, outside code blocks."""
    links = []
    in_code = False
    with open(osp.join(REPO_ROOT, path)) as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                in_code = not in_code
                continue
            if in_code:
                continue
            line = re.sub(r'`[^`]*`', '', line)  # inline code
            for target in LINK.findall(line):
                if re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target):
                    continue  # http(s)://, mailto: and other schemes
                if target.startswith('#'):
                    continue  # an anchor in the same page
                links.append((number, target.split('#')[0]))
    return links


@pytest.mark.parametrize('path', _markdown_files())
def test_relative_links_exist(path):
    base = osp.dirname(osp.join(REPO_ROOT, path))
    missing = [
        f'{path}:{number}: {target}'
        for number, target in _relative_links(path)
        if not osp.exists(osp.normpath(osp.join(base, target)))
    ]
    assert not missing, 'links to missing files:\n' + '\n'.join(missing)
