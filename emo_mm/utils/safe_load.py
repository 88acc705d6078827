"""Every checkpoint, from a path or a URL, is unpickled with weights_only.

``torch.load(weights_only=True)`` rebuilds tensors and plain containers and
calls only allowlisted callables, so a checkpoint cannot run code. Importing
emo_mm closes the two gaps mmengine 0.10.7 leaves on torch >= 2.6:

* Its checkpoints hold a few non-tensor objects (the message hub's
  ``HistoryBuffer`` with NumPy arrays, NumPy scalars), so weights-only
  loading refuses them. We allow exactly those types, and the
  ``getattr(HistoryBuffer, <statistics method>)`` that ``HistoryBuffer``
  pickles, restricted to those names.
* It downloads URLs through ``torch.hub.load_state_dict_from_url``, whose
  ``weights_only`` is False even on torch 2.14: a downloaded checkpoint could
  run code. We register our own loaders with mmengine's ``CheckpointLoader``
  for local paths, ``http(s)://`` and the schemes that resolve to downloads
  (``torchvision://``, ``modelzoo://``, ``open-mmlab://``, ``openmmlab://``,
  ``mmcls://``), so ``load_from``, ``--resume``, ``init_cfg``, the tools and
  every codebase's own loading all unpickle with ``weights_only=True``.

Downloads go to torch.hub's cache (``<TORCH_HOME>/hub/checkpoints``) under a
name that includes a digest of the URL: the authors publish every variant as
``net.pth``, and torch.hub's name-only cache would hand EMO-1M's file back
for EMO-5M's URL. Files whose digest we know (:data:`KNOWN_DIGESTS`) are
verified before they are unpickled.
"""
import builtins
import hashlib
import os
import os.path as osp
import pickle
import posixpath
import re
from urllib.parse import urlparse

import numpy as np
import torch

from ..errors import CheckpointRefused, UserError

# Digests of released weights, checked after every download and before
# unpickling. The authors publish no checksums; these are the git blob ids
# that github.com/zhangzjn/EMO's and zhangzjn/EMOv2's trees record for the
# files their /raw/ URLs serve (SHA-1 of b'blob <size>\0' + the bytes), known
# without downloading. Add the sha256 here once someone with network access
# has computed it.
_EMO_RAW = 'https://github.com/zhangzjn/EMO/raw/main/resources'
_EMOV2_RAW = 'https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls'
KNOWN_DIGESTS = {
    f'{_EMO_RAW}/EMO_1M/net.pth':
    'git-blob-sha1:76c4282de548fa76eca6011720b29d8f80ffa784',
    f'{_EMO_RAW}/EMO_2M/net.pth':
    'git-blob-sha1:9ec7138d292ca9b2d07923aec05762f547db8cf2',
    f'{_EMO_RAW}/EMO_5M/net.pth':
    'git-blob-sha1:3ea7450fa9c290c3c46f372c1f5cebe1198d1ce1',
    f'{_EMO_RAW}/EMO_6M/net.pth':
    'git-blob-sha1:10a248725247cf18b51e449dbd1a220354457c99',
    f'{_EMOV2_RAW}/EMOv2_1M_224.pth':
    'git-blob-sha1:4cbb1c0541597da1442bb5bd7f155fa9d00cd486',
    f'{_EMOV2_RAW}/EMOv2_1M_224_KD.pth':
    'git-blob-sha1:d3d292c37d874de97ed8828c61114b5365325d25',
    f'{_EMOV2_RAW}/EMOv2_2M_224.pth':
    'git-blob-sha1:009fd7338ac833177c5ae2014061d56203c423ea',
    f'{_EMOV2_RAW}/EMOv2_2M_224_KD.pth':
    'git-blob-sha1:bcc37347a7082df62a5c5f025a3f322fc273b46d',
    f'{_EMOV2_RAW}/EMOv2_5M_224.pth':
    'git-blob-sha1:174a94f26e6bd2456f396cca427702c3a70b412b',
    f'{_EMOV2_RAW}/EMOv2_5M_224_KD.pth':
    'git-blob-sha1:9332927c3751291dc574a151a10074bce706bb1f',
    f'{_EMOV2_RAW}/EMOv2_5M_512_KD.pth':
    'git-blob-sha1:e1235b440edd1517bacd30fc6ff0c476098b2847',
}

_TRUST_HINT = ('only if you trust it: load it yourself with '
               'torch.load(path, weights_only=False) and save the state dict '
               'alone, or allow that global with '
               'torch.serialization.add_safe_globals in a module of yours '
               'listed in custom_imports')


# ---------------------------------------------------------------- allowlist
def _numpy_globals():
    # NumPy 2 moved numpy.core to numpy._core; pickles name whichever wrote
    # them, so allow both spellings where they exist.
    found = [np.ndarray, np.dtype]
    for module_name in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        try:
            module = __import__(module_name, fromlist=['_reconstruct'])
        except ImportError:
            continue
        found += [module._reconstruct, module.scalar]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType')
        ]
    return found


def _history_buffer_getattr(obj, name, *default):
    """``getattr`` as a checkpoint may use it: HistoryBuffer's statistics
    methods (``HistoryBuffer.__getstate__`` pickles them by name), nothing
    else, so attribute chains cannot reach further objects."""
    from mmengine.logging import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean'}  # filled in lazily by mmengine
    allowed.update(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return builtins.getattr(obj, name, *default)
    raise CheckpointRefused(f'getattr({obj!r}, {name!r}) is not allowed')


def allow_mmengine_checkpoints() -> None:
    """Register the types of mmengine checkpoints as safe to unpickle."""
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([
        HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
        *_numpy_globals()
    ])


# ------------------------------------------------------------------ loading
def _refusal(err: Exception):
    """What weights-only unpickling refused, or None for another failure."""
    text = str(err)
    match = re.search(r'GLOBAL ([\w.]+)', text)
    if match:
        # torch < 2.7 names built-ins with their module (builtins.exec).
        name = re.sub(r'^builtins\.', '', match.group(1))
        return f'it needs the global {name}, which is not allowed'
    match = re.search(
        r'(Trying to call reduce for [^\n,]+|getattr\([^\n]+'
        r' is not allowed)', text)
    return match.group(1) if match else None


def load(file, source: str, map_location='cpu', **kwargs):
    """``torch.load(file, weights_only=True, **kwargs)``; a refused file
    raises :class:`CheckpointRefused` naming ``source`` (the path or URL)."""
    try:
        return torch.load(
            file, map_location=map_location, weights_only=True, **kwargs)
    except CheckpointRefused as err:  # from the restricted getattr
        raise CheckpointRefused(
            f'checkpoint {source} was refused: {err}; {_TRUST_HINT}') from None
    except Exception as err:  # noqa: BLE001  (re-raised unless refused)
        what = _refusal(err)
        if what is None:
            raise
        raise CheckpointRefused(
            f'checkpoint {source} was refused: {what}; {_TRUST_HINT}') \
            from None


def _digest(path: str, kind: str) -> str:
    if kind == 'sha256':
        hasher = hashlib.sha256()
    else:  # git-blob-sha1: what `git hash-object` prints
        hasher = hashlib.sha1(f'blob {osp.getsize(path)}\0'.encode())
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            hasher.update(chunk)
    return hasher.hexdigest()


def cached_path(url: str) -> str:
    """Where a download of ``url`` is kept, in torch.hub's cache."""
    name = posixpath.basename(urlparse(url).path) or 'checkpoint.pth'
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    return osp.join(torch.hub.get_dir(), 'checkpoints', f'{key}-{name}')


def download(url: str, progress: bool = False) -> str:
    """Download ``url`` once into torch.hub's cache, verify it where its
    digest is known, and return the local path."""
    path = cached_path(url)
    if not osp.isfile(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
        # Writes to a temporary file and renames: no half file is left.
        torch.hub.download_url_to_file(url, path, progress=progress)
    expected = KNOWN_DIGESTS.get(url)
    if expected is not None:
        kind, value = expected.split(':')
        found = _digest(path, kind)
        if found != value:
            os.remove(path)  # a tampered or changed file; never reuse it
            raise CheckpointRefused(
                f'checkpoint {url} does not match its known {kind} digest '
                f'({found}, expected {value}); the download was deleted')
    return path


def load_url(url: str, map_location='cpu'):
    """Download (rank 0 first, the others from its cache) and load
    weights-only."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if rank == 0:
        path = download(url)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = download(url)
    return load(path, url, map_location)


# ------------------------------------------------------- reading, checking
def _unreadable_reason(err: Exception) -> str:
    """The short reason torch gives for a file it cannot unpickle."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    # The weights-only unpickler gives its reason after this marker.
    marker = next(
        (i for i, line in enumerate(lines) if 'Unpickler error:' in line),
        None)
    if marker is not None:
        tail = ' '.join(lines[marker:marker + 2])
        reason = tail.split('Unpickler error:', 1)[1].strip()
    else:
        reason = lines[0].split('. ')[0] if lines else ''
    return f'{type(err).__name__}: {reason[:200]}'


_UNREADABLE = (RuntimeError, EOFError, pickle.UnpicklingError, ValueError,
               OSError)


def read_checkpoint(filename: str, map_location='cpu'):
    """Load any checkpoint file or URL through mmengine's ``CheckpointLoader``
    (so weights-only, see above), with errors that name the file.

    Raises:
        FileNotFoundError: A local ``filename`` does not exist.
        CheckpointRefused: Weights-only unpickling refused it.
        UserError: It is corrupt, truncated or not a PyTorch checkpoint.
    """
    from urllib.error import URLError

    from mmengine.runner import CheckpointLoader
    if '://' not in filename and not osp.isfile(osp.expanduser(filename)):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    try:
        return CheckpointLoader.load_checkpoint(
            filename, map_location=map_location)
    except (CheckpointRefused, URLError):
        raise  # one line naming the file; a network error is no corruption
    except _UNREADABLE as err:
        raise UserError(f'could not read checkpoint {filename}: it is '
                        'corrupt, truncated or not a PyTorch checkpoint '
                        f'({_unreadable_reason(err)})') from err


def check_checkpoint(path: str, what: str = 'checkpoint') -> None:
    """Fail with one line when a checkpoint is missing, unreadable, or
    refused by weights-only loading; ``what`` names it in the message.

    Local zip-format files (everything torch.save wrote since 1.6) are opened
    memory-mapped, so only their index is read here. A URL is downloaded into
    torch.hub's cache (where the run then finds it), verified where its
    digest is known, and loaded weights-only.

    Raises:
        UserError: naming ``what``, ``path`` and the reason.
    """
    from urllib.error import URLError
    if '://' in path:
        try:
            read_checkpoint(path)
        except UserError:
            raise
        except (URLError, OSError, KeyError) as err:
            raise UserError(f'{what} {path} could not be fetched '
                            f'({type(err).__name__}: {err})') from err
        return
    if not osp.isfile(path):
        raise UserError(f'{what} {path} does not exist')
    try:
        load(path, path, mmap=True)
    except UserError:
        raise
    except _UNREADABLE as err:
        if 'mmap' in str(err):  # an old, non-zip file: read it whole
            try:
                load(path, path)
                return
            except CheckpointRefused:
                raise
            except Exception as whole:  # noqa: BLE001  (reported below)
                err = whole
        raise UserError(f'{what} {path} is corrupt, truncated or not a '
                        'PyTorch checkpoint '
                        f'({_unreadable_reason(err)})') from err


# ------------------------------------------------- mmengine's CheckpointLoader
def load_from_local(filename, map_location=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load(filename, filename, map_location)


def load_from_http(filename, map_location=None):
    return load_url(filename, map_location)


def load_from_torchvision(filename, map_location=None):
    from mmengine.runner import checkpoint
    name = filename.split('://', 1)[1]
    return load_url(checkpoint.get_torchvision_models()[name], map_location)


def load_from_openmmlab(filename, map_location=None):
    from mmengine.runner import checkpoint
    name = filename.split('://', 1)[1]
    name = checkpoint.get_deprecated_model_names().get(name, name)
    url = checkpoint.get_external_models()[name]
    if url.startswith(('http://', 'https://')):
        return load_url(url, map_location)
    # A file under MMENGINE_HOME, as mmengine resolves it.
    return load_from_local(
        osp.join(checkpoint._get_mmengine_home(), url), map_location)


def load_from_mmcls(filename, map_location=None):
    from mmengine.runner import checkpoint
    url = checkpoint.get_mmcls_models()[filename.split('://', 1)[1]]
    return checkpoint._process_mmcls_checkpoint(load_url(url, map_location))


def secure_checkpoint_loading() -> None:
    """Allow mmengine's checkpoint types and put our weights-only loaders in
    place of mmengine's for local paths and every scheme that resolves to a
    download. (mmengine's pavi:// and s3:// loaders call torch.load with its
    default, weights_only=True since torch 2.6.) Run by ``import emo_mm``."""
    from mmengine.runner import CheckpointLoader
    allow_mmengine_checkpoints()
    # mmengine logs "Loads checkpoint by <name[10:]> backend": the loaders
    # keep its `load_from_` names.
    CheckpointLoader.register_scheme('', load_from_local, force=True)
    CheckpointLoader.register_scheme(('http://', 'https://'),
                                     load_from_http,
                                     force=True)
    CheckpointLoader.register_scheme(('modelzoo://', 'torchvision://'),
                                     load_from_torchvision,
                                     force=True)
    CheckpointLoader.register_scheme(('open-mmlab://', 'openmmlab://'),
                                     load_from_openmmlab,
                                     force=True)
    CheckpointLoader.register_scheme('mmcls://', load_from_mmcls, force=True)
