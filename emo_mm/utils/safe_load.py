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
import posixpath
import re
from urllib.parse import urlparse

import numpy as np
import torch

# Digests of released weights, checked after every download and before
# unpickling. The authors publish no checksums; these are the git blob ids
# that github.com/zhangzjn/EMO's tree records for the files its /raw/ URLs
# serve (SHA-1 of b'blob <size>\0' + the bytes), known without downloading.
# Add the sha256 here once someone with network access has computed it.
_EMO_RAW = 'https://github.com/zhangzjn/EMO/raw/main/resources'
KNOWN_DIGESTS = {
    f'{_EMO_RAW}/EMO_1M/net.pth':
    'git-blob-sha1:76c4282de548fa76eca6011720b29d8f80ffa784',
    f'{_EMO_RAW}/EMO_2M/net.pth':
    'git-blob-sha1:9ec7138d292ca9b2d07923aec05762f547db8cf2',
    f'{_EMO_RAW}/EMO_5M/net.pth':
    'git-blob-sha1:3ea7450fa9c290c3c46f372c1f5cebe1198d1ce1',
    f'{_EMO_RAW}/EMO_6M/net.pth':
    'git-blob-sha1:10a248725247cf18b51e449dbd1a220354457c99',
}

_TRUST_HINT = ('only if you trust it: load it yourself with '
               'torch.load(path, weights_only=False) and save the state dict '
               'alone, or allow that global with '
               'torch.serialization.add_safe_globals in a module of yours '
               'listed in custom_imports')


class CheckpointRefused(ValueError):
    """A checkpoint needs more than weights-only unpickling allows, or its
    download does not match the known digest."""


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
        return f'it needs the global {match.group(1)}, which is not allowed'
    match = re.search(r'(Trying to call reduce for [^\n,]+|getattr\([^\n]+'
                      r' is not allowed)', text)
    return match.group(1) if match else None


def load(file, source: str, map_location='cpu', **kwargs):
    """``torch.load(file, weights_only=True, **kwargs)``; a refused file
    raises :class:`CheckpointRefused` naming ``source`` (the path or URL)."""
    try:
        return torch.load(file, map_location=map_location, weights_only=True,
                          **kwargs)
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
    CheckpointLoader.register_scheme(('http://', 'https://'), load_from_http,
                                     force=True)
    CheckpointLoader.register_scheme(('modelzoo://', 'torchvision://'),
                                     load_from_torchvision, force=True)
    CheckpointLoader.register_scheme(('open-mmlab://', 'openmmlab://'),
                                     load_from_openmmlab, force=True)
    CheckpointLoader.register_scheme('mmcls://', load_from_mmcls, force=True)
