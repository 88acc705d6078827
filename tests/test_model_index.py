"""The model-zoo metadata and the documentation's links (no model is built).

model-index.yml and configs/*/metafile.yml follow OpenMMLab's model-index
format; their paths (Config, README) are relative to the repository root.
"""
import glob
import os
import os.path as osp
import re

import pytest
import yaml

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Config folders that are not model-zoo entries.
NOT_IN_ZOO = ('demo', '_base_')
README_MAX_LINES = 200
NO_RESULT = 'configs/imagenet/emov2_20m_in1k.py'


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


def test_models_are_complete():
    collections = {c['Name'] for c in _collections()}
    names = [model['Name'] for model in _models()]
    assert len(names) == len(set(names)), 'a model name is used twice'
    for model in _models():
        name = model['Name']
        assert model['In Collection'] in collections, name
        assert osp.isfile(osp.join(REPO_ROOT, model['Config'])), name
        assert isinstance(model['Metadata']['Parameters'], int), name
        # The authors released no EMOv2-20M weights and published no
        # ImageNet result for it: only those entries may lack them.
        no_release = osp.basename(model['Config']).startswith('emov2_20m_')
        if 'Results' in model or model['Config'] != NO_RESULT:
            results = model['Results']
            assert results and all(r['Task'] and r['Dataset']
                                   and r['Metrics'] for r in results), name
        if 'Weights' in model or not no_release:
            assert str(model['Weights']).startswith('https://'), name


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
