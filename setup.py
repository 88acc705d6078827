import os.path as osp
from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'emo_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(name):
    """Requirement lines of requirements/<name>.txt, comments dropped and
    ``-r other.txt`` includes followed."""
    path = osp.join(osp.dirname(__file__), 'requirements', name + '.txt')
    with open(path) as f:
        lines = [line.split('#')[0].strip() for line in f]
    found = []
    for line in filter(None, lines):
        if line.startswith('-r '):
            found += read_requirements(osp.splitext(line[3:].strip())[0])
        else:
            found.append(line)
    return found


setup(
    name='emo_mm',
    version=read_version(),
    description=('EMO (ICCV 2023) and EMOv2 (TPAMI 2025) backbones for '
                 'OpenMMLab 2.0: mmdet, mmseg, mmpretrain'),
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['emo_mm', 'emo_mm.*']),
    # torch 2.6, the oldest supported (requirements/oldest.txt), needs Python
    # 3.9.
    python_requires='>=3.9',
    # Ranges, not the exact versions of .venv (requirements/constraints.txt):
    # installed into an existing OpenMMLab environment, emo_mm keeps its torch
    # and compiled mmcv.
    install_requires=read_requirements('runtime'),
    extras_require={
        # mmdet, mmseg and mmpretrain are optional: emo_mm imports each only if
        # present.
        'det': read_requirements('det'),
        'seg': read_requirements('seg'),
        'cls': read_requirements('cls'),
        'tests': read_requirements('tests'),
        'export': read_requirements('export'),
        'mobile': read_requirements('mobile'),
    },
    license='Apache License 2.0',
    zip_safe=False,
)
