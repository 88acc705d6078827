import copy
import functools
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Under pytest-xdist (tools/run_tests.sh) the workers share the cores: one
# torch thread each, here and in every process a test starts (more threads
# than cores makes every process wait on the others).
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)

# The variants' reference numbers, written once for every test: backbone
# parameters; with the final norm and a 1000-class head (the authors'
# classifiers, whose counts the fixtures confirm); the paper's FLOPs at 224
# in millions.
BACKBONE_PARAMS = {
    '1m': 1_191_832,
    '2m': 2_176_072,
    '5m': 4_819_272,
    '6m': 5_846_856
}
CLASSIFIER_PARAMS = {
    '1m': 1_361_168,
    '2m': 2_377_472,
    '5m': 5_108_848,
    '6m': 6_168_496
}
PAPER_FLOPS_M = {'1m': 261, '2m': 439, '5m': 903, '6m': 961}
FIXTURES = osp.join(REPO_ROOT, '..', 'shared', 'fixtures')
# The authors' code run on every variant, at the windows our configs use
# (7 for ImageNet, 10 for detection, 16 for segmentation: padded at 200x248).
FIXTURE_NAMES = ('emo_1m_w7_224x224.pt', 'emo_1m_w10_200x264.pt',
                 'emo_2m_w7_224x224.pt', 'emo_5m_w10_320x320.pt',
                 'emo_5m_w16_200x248.pt', 'emo_6m_w7_192x192.pt')

# EMOv2 (counted on the authors' code): backbone
# parameters, and with the final norm and a 1000-class head.
EMOV2_BACKBONE_PARAMS = {
    '1m': 1_279_484,
    '2m': 2_182_912,
    '5m': 4_836_864,
    '20m': 19_745_312
}
EMOV2_CLASSIFIER_PARAMS = {
    '1m': 1_460_844,
    '2m': 2_384_312,
    '5m': 5_126_440,
    '20m': 20_195_208
}
FIXTURES_V2 = osp.join(REPO_ROOT, '..', 'shared', 'fixtures_v2')
# The authors' classifier at window 7 (224, and 200x264: padded) and their
# mmseg backbone (LayerNorm2d + GELU after the depthwise convs, window 10).
EMOV2_FIXTURE_NAMES = ('emo2_1m_k5_hybrid_224x224.pt',
                       'emo2_5m_k5_hybrid_200x264.pt',
                       'emo2_5m_seg_w10_160x192.pt')
# EMOv2 arguments of the authors' mmseg backbone.
EMOV2_SEG_ARGS = dict(
    dw_norm_cfg=dict(type='LN2d', eps=1e-6), dw_act_cfg=dict(type='GELU'))


def _fixtures_missing(name):
    """Skip when shared/ is absent (a user's checkout); CI sets
    EMO_MM_REQUIRE_FIXTURES=1 so that a missing fixture fails instead."""
    message = f'fixture {name} not found under {FIXTURES}'
    if os.environ.get('EMO_MM_REQUIRE_FIXTURES') == '1':
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=FIXTURE_NAMES, scope='session')
def authors_fixture(request):
    """One of the authors' reference runs (:func:`load_fixture`)."""
    return load_fixture(request.param)


def load_fixture(name):
    """An authors' EMO reference run, state dict cast to float32."""
    path = osp.join(FIXTURES, name)
    if not osp.exists(path):
        _fixtures_missing(name)
    data = torch.load(path, weights_only=True)
    data['state_dict'] = {
        k: v.float() if v.is_floating_point() else v
        for k, v in data['state_dict'].items()
    }
    data['name'] = name
    return data


@pytest.fixture(params=EMOV2_FIXTURE_NAMES, scope='session')
def emov2_fixture(request):
    """One of the authors' EMOv2 reference runs
    (:func:`load_emov2_fixture`)."""
    return load_emov2_fixture(request.param)


def load_emov2_fixture(name):
    """An authors' EMOv2 reference run, state dict cast to float32, with
    ``arch`` and the EMOv2 ``kwargs`` that build its model."""
    path = osp.join(FIXTURES_V2, name)
    if not osp.exists(path):
        _fixtures_missing(name)
    data = torch.load(path, weights_only=True)
    data['state_dict'] = {
        k: v.float() if v.is_floating_point() else v
        for k, v in data['state_dict'].items()
    }
    data['name'] = name
    data['arch'] = name.split('_')[1]
    data['kwargs'] = dict(
        window_size=data['window_size'],
        **(EMOV2_SEG_ARGS if data.get('seg_backbone') else {}))
    return data


# The modules of the longest tests, started first, so that the two xdist
# workers do not end with one of them left running alone.
LONGEST_FIRST = ('test_tools/test_train_test.py', 'test_tools/test_demos.py',
                 'test_engine/test_distributed.py',
                 'test_engine/test_hooks.py', 'test_mobile.py',
                 'test_deployment.py', 'test_analysis/test_complexity.py')


def pytest_collection_modifyitems(items):

    def rank(item):
        path = osp.relpath(str(item.fspath), osp.join(REPO_ROOT, 'tests'))
        return (LONGEST_FIRST.index(path)
                if path in LONGEST_FIRST else len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the order within a module stays


@pytest.fixture(scope='session', autouse=True)
def _torch_threads():
    torch.manual_seed(0)
    yield


def run_python(*args, check=True, timeout=600, env=None, cwd=REPO_ROOT):
    """Run ``python ARGS`` in ``cwd`` (the repository root), stdout and
    stderr merged; with ``check``, a non-zero exit fails the test with the
    output's end. A run past ``timeout`` seconds is killed and fails the test
    (CI must not hang)."""
    return run_command([sys.executable, *args],
                       check=check,
                       timeout=timeout,
                       env=env,
                       cwd=cwd)


def run_command(command, check=True, timeout=600, env=None, cwd=REPO_ROOT):
    try:
        proc = subprocess.run(
            command,
            cwd=cwd,
            text=True,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout)
    except subprocess.TimeoutExpired as err:
        output = err.output or ''
        if isinstance(output, bytes):
            output = output.decode(errors='replace')
        raise AssertionError(f'{command} ran past {timeout} s:\n'
                             f'{output[-4000:]}') from None
    if check and proc.returncode:
        raise AssertionError(f'{command} failed:\n{proc.stdout[-4000:]}')
    return proc


def run_tool(tool, *args):
    """Run ``tools/TOOL`` as its command line does (``__main__``, the same
    ``sys.argv``), in this process: for the checks of an exit status and an
    error line, which need no new interpreter. Returns ``(status, output)``,
    stdout and stderr merged; a ``sys.exit('error: ...')`` message is part
    of the output, as the interpreter would print it. What a process would
    take with it is put back: the environment (tools/train.py sets
    LOCAL_RANK) and torch's thread count."""
    import contextlib
    import io
    import runpy
    from unittest import mock
    path = osp.join(REPO_ROOT, 'tools', tool)
    output = io.StringIO()
    status = 0
    threads = torch.get_num_threads()
    with mock.patch.object(sys, 'argv', [path, *map(str, args)]), \
            mock.patch.dict(os.environ), \
            contextlib.redirect_stdout(output), \
            contextlib.redirect_stderr(output):
        try:
            runpy.run_path(path, run_name='__main__')
        except SystemExit as exit:
            if isinstance(exit.code, str):
                print(exit.code, file=output)
                status = 1
            else:
                status = exit.code or 0
        finally:
            torch.set_num_threads(threads)
    return status, output.getvalue()


def run_torchrun(command, env, timeout=600, tries=3):
    """Run a torchrun script (tools/dist_*.sh) with PORT set to a free port,
    again with another port when one was taken between our check and
    torchrun's bind. CUDA is hidden: these are the CPU (gloo) tests on any
    machine."""
    for _ in range(tries):
        env = dict(env, PORT=str(free_port()), CUDA_VISIBLE_DEVICES='')
        proc = run_command(command, check=False, timeout=timeout, env=env)
        if proc.returncode == 0 or 'address already in use' not in \
                proc.stdout.lower():
            break
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc


@pytest.fixture(scope='session')
def tiny_shapes(tmp_path_factory):
    """The classification demo's data, 6 training images per class (48)."""
    from emo_mm.demo_data import make_shapes_imagenet
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_imagenet(str(root), num_train_per_class=6, num_val_per_class=1)
    return str(root)


@pytest.fixture(scope='session')
def tiny_imagenet(tmp_path_factory):
    """ImageNet-format shapes: 2 training and 1 val image per class, 64 px."""
    from emo_mm.demo_data import make_shapes_imagenet
    root = tmp_path_factory.mktemp('shapes_imagenet')
    make_shapes_imagenet(
        str(root),
        num_train_per_class=2,
        num_val_per_class=1,
        image_size=64,
        seed=1)
    return str(root)


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    """COCO-format shapes: 8 training and 4 val images."""
    from emo_mm.demo_data import make_shapes_coco
    root = tmp_path_factory.mktemp('shapes_coco')
    make_shapes_coco(str(root), num_train=8, num_val=4, seed=1)
    return str(root) + '/'


@pytest.fixture(scope='session')
def tiny_scenes(tmp_path_factory):
    """ADE20K-format scenes: 6 training and 3 val images, and the class
    counts the generator returned."""
    from emo_mm.demo_data import make_scenes_ade20k
    root = tmp_path_factory.mktemp('scenes')
    counts = make_scenes_ade20k(str(root), num_train=6, num_val=3, seed=1)
    return str(root) + '/', counts


# Loaders in the main process, so that runs are quick and repeatable.
LOADER_OPTIONS = [
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'
]
AUTHORS_LOGS = osp.join(REPO_ROOT, '..', 'shared', 'reference',
                        'authors_training_logs')


def logged_settings(variant):
    """The `key : value` rows at the head of the authors' ImageNet log of
    EMO-<variant>."""
    return _settings_rows(
        osp.join(AUTHORS_LOGS, f'ImageNet_EMO_{variant.upper()}.txt'))


def _settings_rows(path):
    """The `key : value` rows at the head of an authors' ImageNet log."""
    import ast
    import re
    if not osp.exists(path):
        _fixtures_missing(osp.basename(path))
    rows = {}
    with open(path) as f:
        for line in f:
            match = re.match(r'^(\S+)\s+: (.*?)\s*$', line)
            if match is None:
                if rows:
                    break  # the end of the settings block
                continue
            key, text = match.groups()
            try:
                rows[key] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                rows[key] = text  # e.g. transforms holding enum reprs
    return rows


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def stored_state_dict(name='emo_1m_w7_224x224.pt'):
    """A fixture's state dict as stored (fp16), not cast like
    :func:`authors_fixture`'s."""
    from collections import OrderedDict
    path = osp.join(FIXTURES, name)
    if not osp.exists(path):
        _fixtures_missing(name)
    return OrderedDict(torch.load(path, weights_only=True)['state_dict'])


@pytest.fixture
def authors_net_pth(tmp_path):
    """EMO-1M's fixture weights saved as the authors' flat net.pth."""
    path = str(tmp_path / 'net.pth')
    torch.save(stored_state_dict(), path)  # fp16: loading casts
    return path


def save_authors_checkpoint(state_dict, path, wrap=None, module_prefix=False):
    """Save a state dict as the authors' net.pth, optionally wrapped under
    ``wrap`` and with DDP's ``module.`` prefixes."""
    if module_prefix:
        state_dict = {f'module.{k}': v for k, v in state_dict.items()}
    torch.save(state_dict if wrap is None else {wrap: state_dict}, path)
    return str(path)


@functools.lru_cache(maxsize=None)
def _parsed_config(config):
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO_ROOT, 'configs', config))


def shipped_config(config):
    """``configs/<config>``, parsed once per process (mmengine reads all of
    a codebase's metafiles for each ``mmdet::``-style base: about 0.5 s a
    config); a copy, so that no test sees another's edits."""
    return copy.deepcopy(_parsed_config(config))


def build_cpu_model(config, **backbone):
    """``configs/<config>``'s model as tests run it on the CPU: BN for SyncBN
    (no process group here), no download of the ImageNet weights, no drop
    path (deterministic losses); ``backbone`` overrides more. Returns
    ``(cfg, model)``."""
    import importlib

    from mmengine.registry import init_default_scope

    from emo_mm.config import sync_bn_to_bn
    cfg = shipped_config(config)
    sync_bn_to_bn(cfg.model)
    cfg.model.backbone.update(init_cfg=None, drop_path_rate=0.0, **backbone)
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    # A copy: mmseg's EncoderDecoder writes `pretrained` into its config.
    model = registry.MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    return cfg, model


def train_steps(model, batch, steps, lr):
    """``steps`` AdamW steps of ``model`` (in train mode) on one ``batch``;
    the losses and the last step's logged values."""
    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss, log_vars = model.parse_losses(model(**batch, mode='loss'))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, log_vars


EMOV2_LOGS = osp.join(REPO_ROOT, '..', 'shared', 'reference',
                      'emov2_training_logs')


def emov2_logged_config(run):
    """The mmengine config dump of the authors' EMOv2 downstream run
    ``run`` (a log name without ``.txt``, e.g. ``'SSDLite_5M_300'``; the
    date suffix is found), as an mmengine ``Config``."""
    import glob

    from mmengine.config import Config
    paths = sorted(glob.glob(osp.join(EMOV2_LOGS, f'{run}_2*.txt')))
    if not paths:
        _fixtures_missing(f'{run}_*.txt')
    with open(paths[0]) as f:
        text = f.read()
    dump = text.split('# config\n', 1)[1].split('\n# first, middle', 1)[0]
    return Config.fromstring(dump, '.py')


def emov2_logged_settings(name):
    """The `key : value` rows at the head of the authors' EMOv2 ImageNet log
    ``name`` (e.g. ``'5M_224'`` or ``'1M_224_KD'``)."""
    return _settings_rows(osp.join(EMOV2_LOGS, f'ImageNet_EMOv2_{name}.txt'))


def det_sample(h, w, boxes, labels):
    """A detection data sample of an unpadded ``h`` x ``w`` image holding
    ``boxes`` (x1, y1, x2, y2) with ``labels``."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample()
    sample.set_metainfo(
        dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            pad_shape=(h, w),
            batch_input_shape=(h, w),
            scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=boxes, labels=labels)
    return sample


def trained_like(model, run=None, shape=(64, 80)):
    """Weights as trained ones look, so that a check proves something:
    LayerScales near 0.5 (at their initial 1e-6 the stride-8..32 outputs of
    EMOv2 barely depend on the image), random BN affines, and BN statistics
    of the activations of two random batches (statistics drawn at random
    would swamp the signal). ``run(x)`` runs the model (default
    ``model(x)``)."""
    gen = torch.Generator().manual_seed(0)
    run = run or model
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('gamma'):
                param.copy_(torch.rand(param.shape, generator=gen) * 0.4 + 0.3)
        for m in norms:
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
            m.reset_running_stats()
            m.momentum = None  # the average over the batches
            m.train()
        for _ in range(2):
            run(torch.randn(4, 3, *shape, generator=gen))
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def trained_like_checkpoint(tmp_path, model, config=False):
    """A checkpoint of ``model`` with trained-like weights
    (:func:`trained_like`), so that the BatchNorms the export folds are far
    from the identity they are at initialisation; a config's model is run
    in tensor mode and saved under ``state_dict``."""
    path = tmp_path / 'trained_like.pth'
    if config:
        trained_like(model, lambda x: model(x, mode='tensor'), (96, 128))
        torch.save({'state_dict': model.state_dict()}, path)
    else:
        torch.save(trained_like(model).state_dict(), path)
    return str(path)
