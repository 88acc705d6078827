"""setup.py declares ranges, the lock (requirements/constraints.txt) lies in
them, and their lower bounds (requirements/oldest.txt) are proven by
tools/check_oldest.sh."""
import os
import os.path as osp
import re
import runpy

import pytest
from conftest import FIXTURES, REPO_ROOT, run_command
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REQUIREMENTS = osp.join(REPO_ROOT, 'requirements')
# mmcv-lite is mmcv built without its compiled ops: the same `mmcv` package.
ALIASES = {'mmcv-lite': 'mmcv'}


def read_pins(name):
    """{package: Requirement} of requirements/<name>.txt (no includes)."""
    found = {}
    with open(osp.join(REQUIREMENTS, name)) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line:
                req = Requirement(line)
                key = canonicalize_name(req.name)
                found[ALIASES.get(key, key)] = req
    return found


def exact_version(req):
    """The version of an ``==`` pin, else None."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator == '==':
        return Version(specs[0].version)
    return None


@pytest.fixture(scope='module')
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope='module')
def declared(monkeypatch_module):
    """setup.py's install_requires and extras_require, from setup.py itself."""
    import setuptools
    captured = {}
    monkeypatch_module.setattr(setuptools, 'setup',
                               lambda **kwargs: captured.update(kwargs))
    monkeypatch_module.chdir(REPO_ROOT)
    runpy.run_path(osp.join(REPO_ROOT, 'setup.py'), run_name='__main__')
    runtime = [Requirement(r) for r in captured['install_requires']]
    extras = {
        name: [Requirement(r) for r in reqs]
        for name, reqs in captured['extras_require'].items()
    }
    return runtime, extras


def test_extras(declared):
    _, extras = declared
    assert set(extras) >= {'det', 'seg', 'cls', 'tests', 'export', 'mobile'}
    names = {canonicalize_name(r.name) for r in extras['seg']}
    assert names == {'mmsegmentation', 'ftfy', 'regex'}


def test_setup_declares_ranges_that_hold_the_lock(declared):
    runtime, extras = declared
    everything = runtime + [r for reqs in extras.values() for r in reqs]
    for req in everything:
        assert all(s.operator not in ('==', '===') for s in req.specifier), \
            f'{req}: setup.py declares ranges; exact pins go to ' \
            'requirements/constraints.txt'
    ranges = {canonicalize_name(r.name): r.specifier for r in everything}
    for name in ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation',
                 'mmpretrain'):
        assert ranges[name], f'{name} has no version range'

    lock = read_pins('constraints.txt')
    checked = 0
    for name, pin in lock.items():
        version = exact_version(pin)
        if version is None or name not in ranges:
            continue  # setuptools bounds; torchvision (not an emo_mm need)
        assert ranges[name].contains(version, prereleases=True), \
            f'the lock has {name} {version}, outside setup.py\'s ' \
            f'{name}{ranges[name]}'
        checked += 1
    assert checked >= 6
    # bootstrap.sh reads the mmcv version it builds from the lock.
    assert exact_version(lock['mmcv']) is not None


def test_the_lock_pins_the_whole_environment():
    """Every distribution in the bootstrap's environment is pinned in the
    lock at the version installed (pip itself comes with the venv, emo_mm
    is the checkout)."""
    import sys
    import sysconfig
    from importlib import metadata
    if not osp.isfile(osp.join(sys.prefix, '.emo_mm_stamp')):
        pytest.skip(f'{sys.prefix} is not an environment of '
                    'tools/bootstrap.sh')
    lock = {
        name: exact_version(req)
        for name, req in read_pins('constraints.txt').items()
    }
    # Only site-packages: setuptools adds its vendored copies to the
    # module search path.
    paths = sorted(
        {sysconfig.get_path('purelib'),
         sysconfig.get_path('platlib')})
    installed = {
        canonicalize_name(d.metadata['Name']): Version(d.version)
        for d in metadata.distributions(path=paths)
    }
    unpinned = {
        name: version
        for name, version in installed.items()
        if name not in ('pip', 'emo-mm') and lock.get(name) != version
    }
    assert not unpinned, \
        f'installed but not pinned at this version: {unpinned}'
    # Exact pins only: a range would let two machines differ.
    loose = [name for name, version in lock.items() if version is None]
    assert not loose, loose


def test_lower_bounds_are_the_oldest_versions(declared):
    """Each ``>=`` bound of install_requires is the version check_oldest.sh
    installs, and those versions satisfy the whole range."""
    runtime, _ = declared
    oldest = read_pins('oldest.txt')
    bounded = 0
    for req in runtime:
        name = canonicalize_name(req.name)
        lower = [s.version for s in req.specifier if s.operator == '>=']
        if not lower:
            continue
        assert name in oldest, f'{req}: not in requirements/oldest.txt'
        version = exact_version(oldest[name])
        assert version == Version(lower[0]), \
            f'setup.py declares {req}, requirements/oldest.txt proves ' \
            f'{oldest[name]}'
        assert req.specifier.contains(version)
        bounded += 1
    assert bounded >= 4  # torch, mmengine, mmcv, numpy


# What check_oldest.sh runs here: parity with the authors' model on every
# fixture (default fast path), checkpoint loading and its errors, and the
# weights-only loader's allowlist (what needs torch 2.6 and numpy 1.25). Its
# default, every test of those files, takes minutes; this stays under a
# minute once the environment is cached.
OLDEST_TARGETS = (
    'tests/test_models/test_backbones/test_emo.py::'
    'test_parity_with_authors_model',
    'tests/test_models/test_checkpoint.py',
    'tests/test_utils/test_safe_load.py::test_local_files_are_refused',
    'tests/test_utils/test_safe_load.py::'
    'test_mmengine_checkpoint_over_http_loads',
    'tests/test_utils/test_safe_load.py::test_load_from_url_is_refused',
)
OLDEST_DESELECT = ('not wrapped_authors and '
                   '(not parity or True-False-False)')


def test_oldest_versions_pass_the_backbone_tests():
    """The first run on a machine builds the environment (about 2 minutes,
    3 GB of downloads); later runs, in any clone, reuse it. About 25 s
    then: a second interpreter with its own torch, importing and running
    the backbone tests, is what proves the oldest versions."""
    env = dict(os.environ, EMO_MM_OLDEST_DESELECT=OLDEST_DESELECT)
    proc = run_command(
        ['bash', 'tools/check_oldest.sh', *OLDEST_TARGETS, '-v'],
        env=env,
        timeout=900)
    out = proc.stdout
    print(out[-3000:])
    versions = re.search(
        r'\[check_oldest\] torch ([^,\s]+), mmengine '
        r'([^,\s]+), mmcv ([^,\s]+), numpy ([^,\s]+)', out)
    assert versions, out[-3000:]
    oldest = read_pins('oldest.txt')
    for name, found in zip(('torch', 'mmengine', 'mmcv', 'numpy'),
                           versions.groups()):
        # torch's local label (+cu124) is not part of the pin
        assert Version(found).public == \
            str(exact_version(oldest[name])), (name, found)
    print(f'oldest versions: {versions.group(0)}')

    summary = re.search(r'=+ (.*\d+ passed.*) in [\d.]+s', out)
    assert summary, out[-3000:]
    passed = int(re.search(r'(\d+) passed', summary.group(1)).group(1))
    assert passed > 0 and 'failed' not in summary.group(1) \
        and 'error' not in summary.group(1), summary.group(0)
    proven = {
        name: len(re.findall(rf'::{name}\S* PASSED', out))
        for name in ('test_parity_with_authors_model',
                     'test_local_files_are_refused',
                     'test_mmengine_checkpoint_over_http_loads')
    }
    if not osp.isdir(FIXTURES):  # no fixtures (a user's checkout): skipped
        proven.pop('test_parity_with_authors_model')
    else:
        assert proven['test_parity_with_authors_model'] >= 6, proven
    assert all(proven.values()), proven


def test_bootstrap_stops_before_the_mmcv_build_without_a_compiler(tmp_path):
    """Without a C++20 compiler bootstrap.sh says what to install before
    the 25-minute mmcv build starts (a stand-in python answers the pip and
    torch steps; the wheel cache is empty)."""
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    python = venv / 'bin' / 'python'
    python.write_text('#!/bin/sh\n')
    python.chmod(0o755)
    env = dict(
        os.environ,
        EMO_MM_VENV=str(venv),
        CXX='no-such-c++',
        EMO_MM_WHEEL_CACHE=str(tmp_path / 'wheels'))
    proc = run_command(['bash', 'tools/bootstrap.sh'], env=env, check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == (
        '[bootstrap] error: no C++20 compiler (no-such-c++) to build mmcv '
        '2.1.0: install g++ >= 10 (e.g. apt install g++) or set CXX')
    assert 'building mmcv' not in proc.stdout
    assert not (tmp_path / 'wheels').exists()
