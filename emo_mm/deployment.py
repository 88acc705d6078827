"""Deploying EMO and EMOv2 models: BatchNorm (and LayerScale) folding, ONNX
export and the check of an exported graph against PyTorch with ONNX Runtime.

A config's model is exported behind its input normalisation: the graph takes
the raw image (N, 3, H, W) in the channel order the config reads (BGR for
mmdet/mmseg files loaded by OpenCV) as float 0-255, and returns what
``model(x, mode='tensor')`` returns, flattened (mmdet: per-level class scores
then box deltas; mmseg: the decode head's logits; mmpretrain: class scores),
without NMS, resizing or softmax. A bare backbone's graph takes normalised
images. The graph has a dynamic batch size, height and width.
"""
import argparse
import ast
import copy
import os
import os.path as osp
import warnings
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.runner import load_checkpoint

from .codebases import flatten_outputs, get_codebase
from .config import build_model, input_shape, load_config
from .errors import UserError
from .models import EMO, FAMILIES, EMOv2, deploy, load_backbone_checkpoint
from .utils import check_checkpoint


def backbone_names() -> list:
    """Every name :func:`parse_backbone` accepts, in its preferred spelling:
    the bare EMO archs, then ``emo-<arch>`` and ``emov2-<arch>``."""
    return list(EMO.arch_settings) + [
        f'{family.lower()}-{arch}' for family, cls in FAMILIES.items()
        for arch in cls.arch_settings
    ]


def parse_backbone(name: str) -> Optional[Tuple[type, str]]:
    """The backbone class and arch that ``name`` names: ``'1m'`` (EMO),
    ``'emo-1m'``, ``'emov2-5m'`` (any case, ``_`` for ``-``); None if it
    names none."""
    prefix, _, arch = name.lower().replace('_', '-').rpartition('-')
    # A bare arch ('5m') names an EMO backbone, as it did before EMOv2.
    cls = {
        family.lower(): cls
        for family, cls in FAMILIES.items()
    }.get(prefix or 'emo')
    if cls is None or arch not in cls.arch_settings:
        return None
    return cls, arch


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
            # Not flip(): XNNPACK delegates slices and concatenation only.
            image = torch.cat(
                [image[:, c:c + 1] for c in reversed(range(image.shape[1]))],
                dim=1)
        x = (image - self.mean) / self.std
        return tuple(flatten_outputs(self.model(x, mode='tensor')))


class ScaledUpsample(nn.Module):
    """mmseg's ``Upsample`` by an integer scale factor, in a form the
    exporter traces: ``F.interpolate`` with the factor. mmseg's computes the
    output size with ``int()``, which the tracer records as a constant, so
    its graph would upsample to the traced size at every input size
    (Semantic FPN's head). For integer factors the two give the same size
    and the same values."""

    def __init__(self, scale_factor, mode, align_corners):
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x,
            scale_factor=self.scale_factor,
            mode=self.mode,
            align_corners=self.align_corners)


def make_traceable(model: nn.Module) -> None:
    """Replace the modules whose traced graph would hold the traced input
    size (mmseg's ``Upsample`` by a scale factor) with equivalents that
    follow the input (:class:`ScaledUpsample`)."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            kind = type(child)
            if not (kind.__name__ == 'Upsample'
                    and kind.__module__.startswith('mmseg') and not child.size
                    and child.scale_factor):
                continue
            factors = child.scale_factor if isinstance(
                child.scale_factor, tuple) else (child.scale_factor, )
            if all(float(f).is_integer() for f in factors):
                setattr(
                    parent, name,
                    ScaledUpsample(child.scale_factor, child.mode,
                                   child.align_corners))


def backbone_for_export(arch: str,
                        window_size=7,
                        checkpoint=None,
                        shape=None,
                        options: Optional[dict] = None):
    """An EMO or EMOv2 backbone (all five outputs) ready to export.

    Args:
        arch (str): A name :func:`parse_backbone` accepts ('1m',
            'emov2-5m', ...).
        window_size (int | list[int]): One or four window sizes.
        checkpoint (str, optional): Backbone weights (the authors' or ours).
        shape (tuple, optional): (H, W) to trace at; default 224x224.
        options (dict, optional): More constructor arguments, e.g. EMOv2's
            ``dw_norm_cfg``; ``out_indices`` here picks the outputs.

    Returns:
        tuple: ``(model, (H, W) to trace at, output names, what the input
        is)``.

    Raises:
        UserError: An unknown name, or arguments the class refuses.
    """
    found = parse_backbone(arch)
    if found is None:
        raise UserError(f'{arch!r} names no backbone; known: '
                        f'{", ".join(backbone_names())}')
    cls, arch = found
    kwargs = dict(out_indices=(0, 1, 2, 3, 4), window_size=window_size)
    kwargs.update(options or {})
    try:
        model = cls(arch=arch, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f'{cls.__name__}(arch={arch!r}, '
                        f'{", ".join(f"{k}={v!r}" for k, v in kwargs.items())}'
                        f'): {err}') from None
    if checkpoint:
        load_backbone_checkpoint(model, checkpoint)
    names = [f'stride{2 ** (i + 1)}' for i in model.out_indices]
    return model.eval(), tuple(
        shape or (224, 224)), names, ('normalised RGB (ImageNet mean/std)')


def config_model_for_export(config: str, checkpoint=None, shape=None):
    """A config's model in tensor mode behind its normalisation
    (:class:`Normalized`), ready to export; as :func:`backbone_for_export`.
    """
    cfg = load_config(config)
    shape = tuple(shape) if shape else input_shape(cfg)[0]
    model = build_model(cfg)
    if hasattr(model, 'rpn_head') and hasattr(model, 'roi_head'):
        raise UserError(
            f'{type(model).__name__} is a two-stage detector: its tensor '
            'mode picks proposals (NMS) and pools them (mmcv\'s RoIAlign), '
            'which have no ONNX form here; export the backbone or a '
            'one-stage detector (SSDLite, RetinaNet) instead')
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


# The window sizes of the shipped configs.
WINDOW_SIZES = (7, 8, 10, 16)


def awkward_size(n: int) -> int:
    """The first size from ``n`` up that no stride and no window size
    divides (odd, not a multiple of 7), nor its stride-16 map (rounded up,
    as the strided convolutions do), where most attending blocks run."""
    n = max(n, 1) | 1
    while any(-(-n // s) % w == 0 for s in (1, 16) for w in WINDOW_SIZES):
        n += 2
    return n


def default_check_sizes(shape) -> list:
    """Three sizes around ``shape`` (each an :func:`awkward_size`), where
    padding bugs would show."""
    h, w = shape
    return [(awkward_size(a), awkward_size(b))
            for a, b in ((h - 31, w + 17), (h + 13, w - 45), (max(h // 3, 33),
                                                              w + 3))]


def export_onnx(model, shape, names, path, opset=17):
    """Trace ``model`` at ``shape`` into the ONNX file ``path``, with dynamic
    batch, height and width.

    Raises:
        UserError: The model pools to fixed sizes (PSPNet), which the
            exporter cannot trace behind EMO's or EMOv2's window padding.
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
            torch.onnx.export(
                model, (inputs, ),
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
                            'exporter cannot trace behind the EMO/EMOv2 '
                            'window padding; export DeepLabV3 or the '
                            'backbone instead') from None


def onnxruntime_runner(path: str, threads: int = 0):
    """``run(x) -> [outputs]`` of the ONNX file at ``path`` in ONNX
    Runtime's CPU provider (``threads`` 0: its default)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle sessions must not spin: timed runtimes alternate runs, and a
        # spinning pool would take the cores from the next one.
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         '0')
    session = ort.InferenceSession(
        path, options, providers=['CPUExecutionProvider'])
    return lambda x: session.run(None, {'input': x})


# OpenVINO's CPU plugin runs in bf16 (or fp16) where the CPU has such units
# unless told otherwise: 1.4e-2 from the PyTorch outputs where it did. The
# IR is compiled for fp32 arithmetic explicitly, so its check means what the
# ONNX Runtime check means.
OPENVINO_FP32 = {'INFERENCE_PRECISION_HINT': 'f32'}


def export_openvino(onnx_path: str, xml_path: str) -> None:
    """Convert the ONNX file to OpenVINO IR (``.xml`` + ``.bin``), weights
    kept in fp32 (``ov.save_model`` would halve them to fp16 by default)."""
    import openvino as ov
    ov.save_model(
        ov.convert_model(onnx_path), xml_path, compress_to_fp16=False)


def openvino_runner(path: str,
                    threads: int = 0,
                    shape=None,
                    latency: bool = False):
    """``run(x) -> [outputs]`` of the OpenVINO IR (or ONNX file) at
    ``path`` on the CPU in fp32 (:data:`OPENVINO_FP32`); ``shape`` (N, C,
    H, W) fixes the input shape first, ``latency`` compiles for one request
    at a time (``PERFORMANCE_HINT`` LATENCY)."""
    import openvino as ov
    core = ov.Core()
    model = core.read_model(path)
    if shape is not None:
        model.reshape({model.input(0).any_name: list(shape)})
    # No pinning, so that OpenVINO's threads hold no cores that PyTorch,
    # timed in the same process, needs (a precaution: PyTorch rows timed
    # beside OpenVINO ran about 1.5-2x slower than alone either way).
    config = dict(OPENVINO_FP32, ENABLE_CPU_PINNING=False)
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    if latency:
        config['PERFORMANCE_HINT'] = 'LATENCY'
    compiled = core.compile_model(model, 'CPU', config)
    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: x})
        return [
            request.get_output_tensor(i).data.copy()
            for i in range(len(compiled.outputs))
        ]

    return run


RUNTIMES = {'ONNX Runtime': onnxruntime_runner, 'OpenVINO': openvino_runner}


def compare_with_runtime(model,
                         path,
                         sizes,
                         atol,
                         raw_images: bool,
                         runtime: str = 'ONNX Runtime'):
    """Run the graph at ``path`` in ``runtime`` (:data:`RUNTIMES`) and
    ``model`` at each (H, W) of ``sizes`` (batches 2, 1, 3, ...) and compare
    the outputs.

    Returns:
        list[tuple]: ``(batch, H, W, outputs, difference)`` per size; the
        difference is the largest, relative to an output's magnitude where
        that is above 1.

    Raises:
        UserError: Outputs differ in number or shape, or by more than
            ``atol``.
    """
    run = RUNTIMES[runtime](path)
    torch.manual_seed(0)
    return [
        compare_once(model, run, (batch, 3, h, w), atol, raw_images, runtime)
        for batch, (h, w) in zip([2, 1, 3, 1, 2], sizes)
    ]


def compare_once(model, run, shape, atol, raw_images: bool, runtime: str):
    """Run ``run`` (a runtime's ``run(x) -> [arrays]``) and ``model`` on one
    random input of ``shape`` (N, 3, H, W) and compare the outputs, as
    :func:`compare_with_runtime` does at each size; returns its record."""
    batch, _, h, w = shape
    x = torch.rand(*shape) * 255 if raw_images else torch.randn(*shape)
    with torch.no_grad():
        expected = [t.numpy() for t in model(x)]
    got = run(x.numpy())
    if len(got) != len(expected):
        raise UserError(f'{runtime} gives {len(got)} outputs, '
                        f'PyTorch {len(expected)}')
    diff = 0.0
    for i, (a, b) in enumerate(zip(got, expected)):
        if a.shape != b.shape:
            raise UserError(f'output {i} at {batch}x3x{h}x{w}: '
                            f'{runtime} shape {a.shape}, PyTorch '
                            f'{b.shape}')
        scale = max(1.0, float(np.abs(b).max()))
        diff = max(diff, float(np.abs(a - b).max()) / scale)
    if diff > atol:
        raise UserError(f'{runtime} differs from PyTorch by '
                        f'{diff:.2e} > atol={atol} at {h}x{w}')
    return (batch, h, w, len(got), diff)


def parse_sizes(texts) -> list:
    """``['97x131', ...]`` as ``[(97, 131), ...]``."""
    sizes = []
    for text in texts:
        try:
            h, w = (int(v) for v in text.lower().split('x'))
        except ValueError:
            raise UserError(f'check= size {text!r} is not HxW, e.g. '
                            '97x131') from None
        sizes.append((h, w))
    return sizes


def _value(node):
    """A Python literal, ``dict(key=literal, ...)`` or a bare word (a
    string)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args):
        return {kw.arg: _value(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Name):
        return node.id
    return ast.literal_eval(node)


def backbone_option(text):
    """``KEY=VALUE`` as ``(KEY, value)``: VALUE a Python literal,
    ``dict(...)`` of literals or a bare word; KEY may be dotted
    (``dw_norm_cfg.type=LN2d``), as in mmengine's ``--cfg-options``."""
    key, sep, value = text.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(f'{text!r} is not KEY=VALUE')
    try:
        return key, _value(ast.parse(value, mode='eval').body)
    except (SyntaxError, ValueError):
        raise argparse.ArgumentTypeError(
            f'{text!r}: {value!r} is not a Python literal, dict(...) or '
            'word') from None


def export_parser(description: str,
                  suffix: str,
                  shape_help: str,
                  check_help: str,
                  atol=1e-4) -> argparse.ArgumentParser:
    """The command line both export tools share: MODEL, OUT (a ``suffix``
    file), ``--checkpoint``, ``--window-size``, ``--backbone-options``,
    ``--shape``, ``--check`` and ``--atol`` (default ``atol``); each tool
    adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        'model',
        help='a backbone (a bare arch is EMO\'s): '
        f'{", ".join(backbone_names())}; or a config file')
    parser.add_argument('out', help=f'the {suffix} file to write')
    parser.add_argument(
        '--checkpoint',
        help='weights: an authors\' or emo_mm backbone checkpoint (arch), '
        'or a checkpoint of the config\'s model')
    parser.add_argument(
        '--window-size',
        type=int,
        nargs='+',
        default=[7],
        help='backbone only: one or four window sizes')
    parser.add_argument(
        '--backbone-options',
        nargs='+',
        type=backbone_option,
        metavar='KEY=VALUE',
        help='backbone only: more constructor arguments, '
        'e.g. "dw_norm_cfg=dict(type=\'LN2d\',eps=1e-6)" '
        '"dw_act_cfg=dict(type=\'GELU\')" (EMOv2), or '
        'dotted: dw_norm_cfg.type=LN2d dw_norm_cfg.eps=1e-6')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'), help=shape_help)
    parser.add_argument('--check', nargs='*', metavar='HxW', help=check_help)
    parser.add_argument(
        '--atol',
        type=float,
        default=atol,
        help='largest difference allowed, relative to each output\'s '
        'largest magnitude (at least 1)' +
        (f' (default {atol})' if atol else ''))
    return parser


# The library's argument names as the export tools' flags (``run_tool``).
EXPORT_FLAGS = {
    'force=True': '--force',
    'atol=': '--atol ',
    'check= ': '--check ',
    'shape=(H, W)': '--shape H W'
}


def nest(pairs) -> dict:
    """``[('a.b', 1), ('c', 2)]`` as ``{'a': {'b': 1}, 'c': 2}``."""
    options = {}
    for key, value in pairs or []:
        *parents, leaf = key.split('.')
        node = options
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return options


def model_for_export(model: str,
                     checkpoint=None,
                     window_size=7,
                     shape=None,
                     backbone_options: Optional[dict] = None):
    """The model that :func:`export` and :func:`emo_mm.mobile.export_mobile`
    write: a backbone name (:func:`backbone_for_export`) or a config file
    (:func:`config_model_for_export`), as they return it, and whether it
    takes raw images (a config's) rather than normalised ones."""
    if checkpoint:
        check_checkpoint(checkpoint)
    if parse_backbone(model) is not None:
        if isinstance(window_size, (list, tuple)) and len(window_size) == 1:
            window_size = window_size[0]
        return (*backbone_for_export(model, window_size, checkpoint, shape,
                                     backbone_options), False)
    if osp.isfile(model):
        if backbone_options:
            raise UserError('backbone options apply to a bare backbone; '
                            'change a config\'s backbone in the config')
        return (*config_model_for_export(model, checkpoint, shape), True)
    hint = ''
    if model.lower() in EMOv2.arch_settings:
        hint = (f' (a bare arch is EMO\'s; EMOv2-{model.upper()} is '
                f'emov2-{model.lower()})')
    raise UserError(f'{model!r} is neither a backbone name '
                    f'({", ".join(backbone_names())}) nor an existing '
                    f'config file{hint}')


def export(model: str,
           out: str,
           checkpoint=None,
           window_size=7,
           shape=None,
           check=None,
           atol=1e-4,
           opset=17,
           force=False,
           backbone_options: Optional[dict] = None,
           openvino: bool = False) -> dict:
    """Export a bare backbone ('1m' ..., 'emo-1m', 'emov2-5m' ...) or a
    config file's model to ``out``, BatchNorms (and EMOv2's LayerScales)
    folded, and check it against the unfolded model with ONNX Runtime: what
    ``tools/deployment/export_onnx.py`` does.

    Args:
        model (str): A backbone name (:func:`backbone_names`: a bare arch of
            :attr:`EMO.arch_settings` is EMO's) or a config file (EMO or
            EMOv2 inside).
        out (str): The .onnx file; written only when every check passed.
        checkpoint (str, optional): Weights to load.
        window_size (int | list[int]): Backbone only: one or four sizes.
        shape (tuple, optional): (H, W) traced at; default 224x224 for a
            backbone, the config's input size.
        check (list[str], optional): 'HxW' sizes to check at; None: three
            that no stride or window divides (:func:`default_check_sizes`);
            []: none.
        atol (float): The largest difference allowed.
        opset (int): The ONNX opset.
        force (bool): Overwrite an existing ``out``.
        backbone_options (dict, optional): Backbone only: more constructor
            arguments (:func:`backbone_for_export`), e.g. the authors'
            segmentation form of EMOv2, ``dw_norm_cfg=dict(type='LN2d',
            eps=1e-6), dw_act_cfg=dict(type='GELU')``.
        openvino (bool): Also write OpenVINO IR beside ``out`` (``.xml``
            and ``.bin``, fp32 weights), checked like the ONNX file but
            with OpenVINO's CPU plugin in fp32.

    Returns:
        dict: ``shape``, ``names`` (outputs), ``expects`` (what the input
        is), ``checked`` (:func:`compare_with_runtime`'s records for ONNX
        Runtime) and, with ``openvino``, ``ir`` (the .xml file) and
        ``openvino_checked``.

    Raises:
        UserError: A bad argument, a model that cannot be exported, or a
            failed check; nothing is written then.
    """
    ir = osp.splitext(out)[0] + '.xml' if openvino else None
    for path in (out, ir):
        if path and osp.exists(path) and not force:
            raise UserError(f'{path} exists; pass force=True to overwrite '
                            'it')
    if openvino and osp.splitext(out)[1] != '.onnx':
        raise UserError(f'openvino=True writes the IR beside the ONNX file, '
                        f'which must end in .onnx: {out}')
    sizes = None if check is None else parse_sizes(check)
    net, shape, names, expects, raw_images = model_for_export(
        model, checkpoint, window_size, shape, backbone_options)
    if sizes is None:
        sizes = default_check_sizes(shape)
    # The check compares with the model as built, BatchNorms unfolded and
    # mmseg's upsampling as it is, so that an error in either fails it too.
    reference = copy.deepcopy(net) if sizes else None
    make_traceable(net)
    deploy(net)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    tmp = out + '.part'
    # The IR's .bin is found by the .xml's name: both get the same stem.
    tmp_ir = [osp.splitext(out)[0] + '.part' + ext for ext in ('.xml', '.bin')]
    result = dict(shape=shape, names=names, expects=expects)
    try:
        export_onnx(net, shape, names, tmp, opset)
        result['checked'] = (
            compare_with_runtime(reference, tmp, sizes, atol, raw_images)
            if sizes else [])
        if openvino:
            export_openvino(tmp, tmp_ir[0])
            result['openvino_checked'] = (
                compare_with_runtime(reference, tmp_ir[0], sizes, atol,
                                     raw_images, 'OpenVINO') if sizes else [])
    except BaseException:
        for path in [tmp, *tmp_ir]:  # a failed export leaves no file behind
            if osp.exists(path):
                os.remove(path)
        raise
    os.replace(tmp, out)
    if openvino:
        os.replace(tmp_ir[0], ir)
        os.replace(tmp_ir[1], osp.splitext(ir)[0] + '.bin')
        result['ir'] = ir
    return result
