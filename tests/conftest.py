import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# The variants' reference numbers, written once for every test: backbone
# parameters; with the final norm and a 1000-class head (the authors'
# classifiers, whose counts the fixtures confirm); the paper's FLOPs at 224
# in millions.
BACKBONE_PARAMS = {'1m': 1_191_832, '2m': 2_176_072, '5m': 4_819_272,
                   '6m': 5_846_856}
CLASSIFIER_PARAMS = {'1m': 1_361_168, '2m': 2_377_472, '5m': 5_108_848,
                     '6m': 6_168_496}
PAPER_FLOPS_M = {'1m': 261, '2m': 439, '5m': 903, '6m': 961}
FIXTURES = osp.join(REPO_ROOT, '..', 'shared', 'fixtures')
# The authors' code run on every variant, at the windows our configs use
# (7 for ImageNet, 10 for detection, 16 for segmentation: padded at 200x248).
FIXTURE_NAMES = ('emo_1m_w7_224x224.pt', 'emo_1m_w10_200x264.pt',
                 'emo_2m_w7_224x224.pt', 'emo_5m_w10_320x320.pt',
                 'emo_5m_w16_200x248.pt', 'emo_6m_w7_192x192.pt')


def _fixtures_missing(name):
    """Skip when shared/ is absent (a user's checkout); CI sets
    EMO_MM_REQUIRE_FIXTURES=1 so that a missing fixture fails instead."""
    message = f'fixture {name} not found under {FIXTURES}'
    if os.environ.get('EMO_MM_REQUIRE_FIXTURES') == '1':
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=FIXTURE_NAMES, scope='session')
def authors_fixture(request):
    """One of the authors' reference runs, state dict cast to float32."""
    path = osp.join(FIXTURES, request.param)
    if not osp.exists(path):
        _fixtures_missing(request.param)
    data = torch.load(path, weights_only=True)
    data['state_dict'] = {
        k: v.float() if v.is_floating_point() else v
        for k, v in data['state_dict'].items()
    }
    data['name'] = request.param
    return data


@pytest.fixture(scope='session', autouse=True)
def _torch_threads():
    torch.manual_seed(0)
    yield


def run_python(*args, check=True, timeout=600, env=None):
    """Run ``python ARGS`` in the repository root, stdout and stderr merged;
    with ``check``, a non-zero exit fails the test with the output's end. A
    run past ``timeout`` seconds is killed and fails the test (CI must not
    hang)."""
    return run_command([sys.executable, *args], check=check,
                       timeout=timeout, env=env)


def run_command(command, check=True, timeout=600, env=None):
    try:
        proc = subprocess.run(command, cwd=REPO_ROOT, text=True, env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        output = err.output or ''
        if isinstance(output, bytes):
            output = output.decode(errors='replace')
        raise AssertionError(f'{command} ran past {timeout} s:\n'
                             f'{output[-4000:]}') from None
    if check and proc.returncode:
        raise AssertionError(f'{command} failed:\n{proc.stdout[-4000:]}')
    return proc


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
    from emo_mm.datasets import make_shapes_imagenet
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_imagenet(str(root), num_train_per_class=6,
                         num_val_per_class=1)
    return str(root)


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
