"""emo_mm.utils.safe_load: no checkpoint runs code. Hostile pickles served
over HTTP from 127.0.0.1 (and from disk) are refused at every entry point,
with one line naming the URL and the global, and nothing they try to run
runs; genuine checkpoints, mmengine's own included, still load."""
import builtins
import functools
import http.server
import os
import os.path as osp
import subprocess
import threading
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import REPO_ROOT, run_python, run_tool
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner import load_checkpoint
from torch.utils.data import Dataset

import emo_mm  # noqa: F401  (puts the weights-only loaders in place)
from emo_mm.errors import CheckpointRefused
from emo_mm.models import EMO
from emo_mm.utils import safe_load


class Call:
    """Pickles as "call FUNC(*ARGS)" when unpickled; FUNC and ARGS may be
    Calls themselves, which is how getattr chains are written."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __call__(self):  # pickle wants a callable in __reduce__
        raise AssertionError('never called here')

    def __reduce__(self):
        return self.func, self.args


def hostile_payloads(marker):
    """Each would create `marker` if it were unpickled without the check."""
    command = f'touch {marker}'
    # getattr is allowed for mmengine's HistoryBuffer; walk from it to the
    # os module through a function's globals, then call os.system.
    init = Call(getattr, HistoryBuffer, '__init__')
    module_globals = Call(getattr, init, '__globals__')
    get = Call(getattr, module_globals, 'get')
    os_module = Call(get, 'os')
    system = Call(getattr, os_module, 'system')
    return {
        'os_system': {
            'state_dict': Call(os.system, command)
        },
        'exec': Call(builtins.exec, f'open({str(marker)!r}, "w").close()'),
        'getattr_chain': {
            'meta': Call(system, command)
        },
    }


@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; downloads cached
    under tmp_path/torch_home."""
    root = tmp_path / 'www'
    root.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f'http://127.0.0.1:{httpd.server_address[1]}'
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
        pass


def serve(root, name, obj):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, str(path))
    return name


@pytest.fixture
def hostile(server, tmp_path):
    root, base = server
    marker = tmp_path / 'pwned'
    urls = {
        kind: f'{base}/{serve(root, f"{kind}/net.pth", payload)}'
        for kind, payload in hostile_payloads(marker).items()
    }
    yield urls, marker
    assert not marker.exists(), 'a hostile checkpoint ran code'


def refused(kind, url):
    """The refusal names the URL and what was refused."""
    names = {
        'os_system':
        'global posix.system',
        'exec':
        'global exec,',
        'getattr_chain':
        "getattr(<class 'mmengine.logging.history_"
        "buffer.HistoryBuffer'>, '__init__')"
    }
    return f'checkpoint {url} was refused', names[kind]


KINDS = ('os_system', 'exec', 'getattr_chain')


@pytest.mark.parametrize('kind', KINDS)
def test_backbone_init_cfg_url_is_refused(hostile, kind):
    urls, marker = hostile
    model = EMO(
        arch='1m', init_cfg=dict(type='Pretrained', checkpoint=urls[kind]))
    with pytest.raises(CheckpointRefused) as info:
        model.init_weights()
    message = str(info.value)
    assert '\n' not in message
    for part in refused(kind, urls[kind]):
        assert part in message
    assert 'weights_only=False' in message  # how to load a trusted file
    assert not marker.exists()


@pytest.mark.parametrize('kind', KINDS)
def test_load_from_url_is_refused(hostile, kind):
    """`load_from` and `--resume`: mmengine's Runner loads through
    mmengine.runner.load_checkpoint / _load_checkpoint."""
    urls, marker = hostile
    with pytest.raises(CheckpointRefused, match='was refused'):
        load_checkpoint(torch.nn.Linear(1, 1), urls[kind])
    with pytest.raises(CheckpointRefused, match='was refused'):
        mm_checkpoint._load_checkpoint(urls[kind], map_location='cpu')
    assert not marker.exists()


def test_resolving_schemes_are_refused(hostile, monkeypatch):
    """torchvision://, modelzoo://, open-mmlab://, openmmlab://, mmcls://
    resolve to downloads through the same loader."""
    urls, marker = hostile
    url = urls['os_system']
    monkeypatch.setattr(mm_checkpoint, 'get_torchvision_models',
                        lambda: {'evil': url})
    monkeypatch.setattr(mm_checkpoint, 'get_external_models',
                        lambda: {'evil': url})
    monkeypatch.setattr(mm_checkpoint, 'get_mmcls_models',
                        lambda: {'evil': url})
    for name in ('torchvision://evil', 'modelzoo://evil', 'open-mmlab://evil',
                 'openmmlab://evil', 'mmcls://evil'):
        with pytest.raises(CheckpointRefused, match=f'{url} was refused'):
            mm_checkpoint._load_checkpoint(name, map_location='cpu')
    assert not marker.exists()


def test_local_files_are_refused(tmp_path):
    marker = tmp_path / 'pwned'
    for kind, payload in hostile_payloads(marker).items():
        path = str(tmp_path / f'{kind}.pth')
        torch.save(payload, path)
        with pytest.raises(
                CheckpointRefused, match=f'checkpoint {path} was refused'):
            load_checkpoint(torch.nn.Linear(1, 1), path)
    assert not marker.exists()


def test_tools_refuse_with_one_line(hostile, tiny_shapes, tmp_path):
    """tools/test.py CHECKPOINT, tools/train.py --resume, a backbone init_cfg
    given to tools/train.py, and the converter: exit code non-zero, one
    `error:` line, the URL named."""
    urls, marker = hostile
    url = urls['os_system']
    config = osp.join(REPO_ROOT, 'configs/demo/emo_1m_shapes_cls.py')
    data = [
        f'data_root={tiny_shapes}', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False'
    ]
    # The init_cfg is loaded by the built runner (seeds, logger, default
    # scope): a process of its own. The others refuse before building
    # anything, in this process.
    proc = run_python(
        'tools/train.py',
        config,
        '--work-dir',
        str(tmp_path / 'i'),
        '--cfg-options',
        *data,
        'model.backbone.init_cfg.type=Pretrained',
        f'model.backbone.init_cfg.checkpoint={url}',
        check=False)
    results = [('init_cfg', proc.returncode, proc.stdout)]
    for args in [
        ('test.py', config, url, '--work-dir', tmp_path / 'a'),
        ('train.py', config, '--resume', url, '--work-dir', tmp_path / 'b'),
        ('convert_authors_checkpoint.py', url, tmp_path / 'c.pth', '--to',
         'classifier'),
    ]:
        results.append((args, *run_tool(*args)))
    for args, status, out in results:
        assert status != 0, args
        last = out.strip().splitlines()[-1]
        assert last.startswith('error: checkpoint ' + url), (args, last)
        assert 'posix.system' in last
        assert 'Traceback' not in out, args
    assert not marker.exists()
    assert not osp.exists(tmp_path / 'c.pth')


def test_genuine_checkpoint_over_http_loads(server, authors_fixture):
    """The authors' net.pth layout served over HTTP gives their outputs."""
    root, base = server
    variant = authors_fixture['variant']
    url = f'{base}/{serve(root, "net.pth", authors_fixture["state_dict"])}'
    model = EMO(
        arch=variant,
        out_indices=(0, 1, 2, 3, 4),
        window_size=authors_fixture['window_size'],
        init_cfg=dict(type='Pretrained', checkpoint=url))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outputs = model(authors_fixture['input'])
    assert len(outputs) == len(authors_fixture['stage_outputs']) == 5
    for ours, theirs in zip(outputs, authors_fixture['stage_outputs']):
        torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=0)
    # Cached where torch.hub keeps downloads.
    assert safe_load.cached_path(url).startswith(
        osp.join(torch.hub.get_dir(), 'checkpoints'))
    assert osp.isfile(safe_load.cached_path(url))


def test_mmengine_checkpoint_over_http_loads(server):
    """A checkpoint with a message hub (HistoryBuffer, NumPy values: the
    allowlist) loads from a URL, as from disk."""
    root, base = server
    buffer = HistoryBuffer()
    buffer.update(0.5)
    checkpoint = dict(
        state_dict={
            'weight': torch.ones(1, 1),
            'bias': torch.zeros(1)
        },
        message_hub=dict(log_scalars={'loss': buffer}))
    url = f'{base}/{serve(root, "run/epoch_1.pth", checkpoint)}'
    model = torch.nn.Linear(1, 1)
    checkpoint = load_checkpoint(model, url)
    assert model.weight.item() == 1.0
    assert checkpoint['message_hub']['log_scalars']['loss'].current() == 0.5


def test_same_file_name_under_different_urls(server):
    """torch.hub caches by file name alone, and every authors' variant is a
    `net.pth`: each URL must still give its own file."""
    root, base = server
    first = f'{base}/{serve(root, "EMO_1M/net.pth", {"w": torch.ones(1)})}'
    second = f'{base}/{serve(root, "EMO_5M/net.pth", {"w": torch.zeros(1)})}'
    assert mm_checkpoint._load_checkpoint(first)['w'].item() == 1.0
    assert mm_checkpoint._load_checkpoint(second)['w'].item() == 0.0


def test_known_digest_is_verified(server, monkeypatch, tmp_path):
    root, base = server
    url = f'{base}/{serve(root, "EMO_1M/net.pth", {"w": torch.ones(1)})}'
    # The outside reference for the git blob id: git itself.
    blob = subprocess.run(['git', 'hash-object',
                           str(root / 'EMO_1M/net.pth')],
                          check=True,
                          text=True,
                          stdout=subprocess.PIPE).stdout.strip()
    monkeypatch.setitem(safe_load.KNOWN_DIGESTS, url, f'git-blob-sha1:{blob}')
    assert mm_checkpoint._load_checkpoint(url)['w'].item() == 1.0

    # The file changes on the server: the cached copy was verified; a fresh
    # download of a tampered file is refused and deleted.
    os.remove(safe_load.cached_path(url))
    serve(root, 'EMO_1M/net.pth', {'w': torch.full((1, ), 7.0)})
    with pytest.raises(
            CheckpointRefused,
            match=f'{url} does not match its known git-blob-sha1'):
        mm_checkpoint._load_checkpoint(url)
    assert not osp.exists(safe_load.cached_path(url))


def test_released_weights_have_digests():
    """Every URL the shipped configs download has a known digest."""
    import glob
    import re
    found = set()
    for path in glob.glob(
            osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True):
        with open(path) as f:
            found.update(re.findall(r"https?://[^'\"]+\.pth", f.read()))
    assert found, 'no URLs found in the configs'
    assert found <= set(safe_load.KNOWN_DIGESTS), \
        found - set(safe_load.KNOWN_DIGESTS)


# mmengine's own checkpoints (message hub, NumPy state) load weights-only.
class ToyClassifier(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = EMO(arch='1m', out_indices=(4, ))
        self.fc = nn.Linear(168, 2)

    def forward(self, inputs, labels, mode='tensor'):
        feats = self.backbone(torch.stack(inputs))[0].mean((2, 3))
        logits = self.fc(feats)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, torch.stack(labels)))
        return logits


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(
            inputs=torch.randn(3, 48, 48, generator=g),
            labels=torch.tensor(i % 2))


def make_runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=ToyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        default_scope=None,
        experiment_name=f'toy_{Path(work_dir).name}',
        **kwargs)


def test_resume_and_load_from_mmengine_checkpoint(tmp_path):
    torch.manual_seed(0)  # the model is built before the Runner seeds
    runner = make_runner(
        tmp_path / 'first', max_iters=2, randomness=dict(seed=0))
    runner.train()
    ckpt = tmp_path / 'first' / 'iter_2.pth'
    assert ckpt.exists()

    # torch.load's default, weights_only=True, reads it now.
    loaded = torch.load(ckpt)
    assert loaded['meta']['iter'] == 2
    assert 'message_hub' in loaded and 'optimizer' in loaded

    resumed = make_runner(
        tmp_path / 'resumed', max_iters=3, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 3
    # Resumed, not restarted: its iteration 3 continues iterations 1-2
    # exactly as one uninterrupted run of 3 (same seed, same data order).
    torch.manual_seed(0)
    straight = make_runner(
        tmp_path / 'straight', max_iters=3, randomness=dict(seed=0))
    straight.train()
    a = torch.load(tmp_path / 'resumed' / 'iter_3.pth')
    b = torch.load(tmp_path / 'straight' / 'iter_3.pth')
    assert a['optimizer']['state'][0]['step'].item() == 3
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in b['state_dict'].items():
        assert torch.equal(a['state_dict'][key], value), key
        assert not torch.equal(loaded['state_dict'][key], value), key

    fresh = make_runner(tmp_path / 'test', max_iters=1)
    fresh.load_checkpoint(str(ckpt))
    expected = loaded['state_dict']
    for key, value in fresh.model.state_dict().items():
        torch.testing.assert_close(value, expected[key])
