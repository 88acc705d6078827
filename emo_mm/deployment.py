"""Deploying EMO models: BatchNorm folding, ONNX export and the check of an
exported graph against PyTorch with ONNX Runtime.

A config's model is exported behind its input normalisation: the graph takes
the raw image (N, 3, H, W) in the channel order the config reads (BGR for
mmdet/mmseg files loaded by OpenCV) as float 0-255, and returns what
``model(x, mode='tensor')`` returns, flattened (mmdet: per-level class scores
then box deltas; mmseg: the decode head's logits; mmpretrain: class scores),
without NMS, resizing or softmax. A bare backbone's graph takes normalised
images. The graph has a dynamic batch size, height and width.
"""
import copy
import os
import os.path as osp
import warnings

import numpy as np
import torch
import torch.nn as nn
from mmengine.runner import load_checkpoint

from .codebases import flatten_outputs, get_codebase
from .config import build_model, input_shape, load_config
from .errors import UserError
from .models import EMO, load_backbone_checkpoint
from .utils import check_checkpoint


class Normalized(nn.Module):
    """A config's model in tensor mode behind its input normalisation, with
    its outputs flattened to a tuple."""

    def __init__(self, model: nn.Module, mean, std, bgr_to_rgb: bool):
        super().__init__()
        self.model = model
        self.bgr_to_rgb = bgr_to_rgb
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor):
        if self.bgr_to_rgb:
            image = image.flip(1)
        x = (image - self.mean) / self.std
        return tuple(flatten_outputs(self.model(x, mode='tensor')))


def deploy(model: nn.Module) -> None:
    """Fold BatchNorms in every module that can (EMO; mmpretrain's RepVGG,
    MobileOne...) through its ``switch_to_deploy``: the one driver of
    re-parameterisation, for export, benchmarks and inference."""
    for module in [
            m for m in model.modules() if hasattr(m, 'switch_to_deploy')
    ]:
        module.switch_to_deploy()


def backbone_for_export(arch: str, window_size=7, checkpoint=None, shape=None):
    """An EMO backbone (all five outputs) ready to export.

    Returns:
        tuple: ``(model, (H, W) to trace at, output names, what the input
        is)``.
    """
    model = EMO(arch=arch,
                out_indices=(0, 1, 2, 3, 4),
                window_size=window_size)
    if checkpoint:
        load_backbone_checkpoint(model, checkpoint)
    names = [f'stride{2 ** (i + 1)}' for i in range(5)]
    return model.eval(), tuple(
        shape or (224, 224)), names, ('normalised RGB (ImageNet mean/std)')


def config_model_for_export(config: str, checkpoint=None, shape=None):
    """A config's model in tensor mode behind its normalisation
    (:class:`Normalized`), ready to export; as :func:`backbone_for_export`.
    """
    cfg = load_config(config)
    shape = tuple(shape) if shape else input_shape(cfg)[0]
    model = build_model(cfg)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    preprocessor = cfg.get('data_preprocessor') or cfg.model.get(
        'data_preprocessor', {})
    mean = preprocessor.get('mean', [0.0, 0.0, 0.0])
    std = preprocessor.get('std', [1.0, 1.0, 1.0])
    bgr_to_rgb = bool(
        preprocessor.get('bgr_to_rgb', False)
        or preprocessor.get('to_rgb', False))
    wrapped = Normalized(model, mean, std, bgr_to_rgb).eval()
    with torch.no_grad():
        nested = model(torch.zeros(1, 3, *shape), mode='tensor')
    names = get_codebase(cfg.default_scope).output_names(nested)
    order = 'BGR' if bgr_to_rgb else 'RGB'
    return wrapped, shape, names, (
        f'{order} 0-255, normalised in the graph (mean {list(mean)}, std '
        f'{list(std)})')


def default_check_sizes(shape) -> list:
    """Three sizes around ``shape`` that no window (7, 10, 16) or stride
    divides, where padding bugs would show."""
    h, w = shape
    return [(h - 31, w + 17), (h + 13, w - 45), (max(h // 3, 33) + 2, w)]


def export_onnx(model, shape, names, path, opset=17):
    """Trace ``model`` at ``shape`` into the ONNX file ``path``, with dynamic
    batch, height and width.

    Raises:
        UserError: The model pools to fixed sizes (PSPNet), which the
            exporter cannot trace behind EMO.
    """
    inputs = torch.zeros(1, 3, *shape)
    with torch.no_grad():
        outputs = model(inputs)
    dynamic = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
    for name, output in zip(names, outputs):
        dynamic[name] = {0: 'batch'}
        if output.dim() == 4:  # feature maps and dense predictions
            dynamic[name].update({2: f'{name}_height', 3: f'{name}_width'})
    with warnings.catch_warnings():
        # The legacy (TorchScript) exporter handles the dynamic window
        # padding; torch >= 2.9 warns that it is no longer the default.
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        try:
            torch.onnx.export(model, (inputs, ),
                              path,
                              input_names=['input'],
                              output_names=names,
                              dynamic_axes=dynamic,
                              opset_version=opset,
                              dynamo=False)
        except torch.onnx.errors.SymbolicValueError as err:
            if 'adaptive_avg_pool2d' not in str(err):
                raise
            # The window padding makes every size after the stem a traced
            # expression, so even a fixed input size does not help.
            raise UserError('the model pools to fixed output sizes '
                            '(adaptive_avg_pool2d, e.g. PSPNet\'s pyramid '
                            'pooling), which torch\'s TorchScript ONNX '
                            'exporter cannot trace behind EMO; export '
                            'DeepLabV3 or the backbone instead') from None


def compare_with_onnxruntime(model, path, sizes, atol, raw_images: bool):
    """Run the graph at ``path`` with ONNX Runtime and ``model`` at each
    (H, W) of ``sizes`` (batches 2, 1, 3, ...) and compare the outputs.

    Returns:
        list[tuple]: ``(batch, H, W, outputs, difference)`` per size; the
        difference is the largest, relative to an output's magnitude where
        that is above 1.

    Raises:
        UserError: Outputs differ in number or shape, or by more than
            ``atol``.
    """
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    checked = []
    torch.manual_seed(0)
    for batch, (h, w) in zip([2, 1, 3, 1, 2], sizes):
        x = torch.rand(batch, 3, h, w) * 255 if raw_images else torch.randn(
            batch, 3, h, w)
        with torch.no_grad():
            expected = [t.numpy() for t in model(x)]
        got = session.run(None, {'input': x.numpy()})
        if len(got) != len(expected):
            raise UserError(f'ONNX Runtime gives {len(got)} outputs, '
                            f'PyTorch {len(expected)}')
        diff = 0.0
        for i, (a, b) in enumerate(zip(got, expected)):
            if a.shape != b.shape:
                raise UserError(f'output {i} at {batch}x3x{h}x{w}: ONNX '
                                f'Runtime shape {a.shape}, PyTorch '
                                f'{b.shape}')
            scale = max(1.0, float(np.abs(b).max()))
            diff = max(diff, float(np.abs(a - b).max()) / scale)
        checked.append((batch, h, w, len(got), diff))
        if diff > atol:
            raise UserError(f'ONNX Runtime differs from PyTorch by '
                            f'{diff:.2e} > --atol {atol} at {h}x{w}')
    return checked


def parse_sizes(texts) -> list:
    """``['97x131', ...]`` as ``[(97, 131), ...]``."""
    sizes = []
    for text in texts:
        try:
            h, w = (int(v) for v in text.lower().split('x'))
        except ValueError:
            raise UserError(f'--check size {text!r} is not HxW, e.g. '
                            '97x131') from None
        sizes.append((h, w))
    return sizes


def export(model: str,
           out: str,
           checkpoint=None,
           window_size=7,
           shape=None,
           check=None,
           atol=1e-4,
           opset=17,
           force=False) -> dict:
    """Export an EMO arch ('1m' ...) or a config file's model to ``out``,
    BatchNorms folded, and check it against the unfolded model with ONNX
    Runtime: what ``tools/deployment/export_onnx.py`` does.

    Args:
        model (str): An arch of :attr:`EMO.arch_settings` or a config file.
        out (str): The .onnx file; written only when every check passed.
        checkpoint (str, optional): Weights to load.
        window_size (int | list[int]): Backbone only: one or four sizes.
        shape (tuple, optional): (H, W) traced at; default 224x224 for a
            backbone, the config's input size.
        check (list[str], optional): 'HxW' sizes to check at; None: three
            that no window divides (:func:`default_check_sizes`); []: none.
        atol (float): The largest difference allowed.
        opset (int): The ONNX opset.
        force (bool): Overwrite an existing ``out``.

    Returns:
        dict: ``shape``, ``names`` (outputs), ``expects`` (what the input
        is) and ``checked`` (:func:`compare_with_onnxruntime`'s records).

    Raises:
        UserError: A bad argument, a model that cannot be exported, or a
            failed check; nothing is written then.
    """
    if osp.exists(out) and not force:
        raise UserError(f'{out} exists; pass --force to overwrite it')
    if checkpoint:
        check_checkpoint(checkpoint)
    sizes = None if check is None else parse_sizes(check)
    arches = tuple(EMO.arch_settings)
    if model.lower() in arches:
        if isinstance(window_size, (list, tuple)) and len(window_size) == 1:
            window_size = window_size[0]
        net, shape, names, expects = backbone_for_export(
            model.lower(), window_size, checkpoint, shape)
        raw_images = False
    elif osp.isfile(model):
        net, shape, names, expects = config_model_for_export(
            model, checkpoint, shape)
        raw_images = True
    else:
        raise UserError(f'{model!r} is neither an EMO arch {arches} nor an '
                        'existing config file')
    if sizes is None:
        sizes = default_check_sizes(shape)
    # The check compares with the model as built, BatchNorms unfolded, so
    # that a folding error fails it too.
    reference = copy.deepcopy(net) if sizes else None
    deploy(net)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    tmp = out + '.part'
    try:
        export_onnx(net, shape, names, tmp, opset)
        checked = (compare_with_onnxruntime(reference, tmp, sizes, atol,
                                            raw_images) if sizes else [])
    except BaseException:
        if osp.exists(tmp):  # a failed export leaves no file behind
            os.remove(tmp)
        raise
    os.replace(tmp, out)
    return dict(shape=shape, names=names, expects=expects, checked=checked)
