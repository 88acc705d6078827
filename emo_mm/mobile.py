"""Phones: the exact models as ExecuTorch programs with the XNNPACK delegate
(the CPU runtime of Android and iOS apps) and as Core ML packages (iOS),
each checked against PyTorch here before it is written.

A program has one input shape, (batch, 3, H, W); what it takes and returns
is what :func:`~emo_mm.deployment.export` writes to ONNX. Under
``torch.export`` EMO and EMOv2 partition their windows with tensors of rank
5 at most, attend with 3-D products and run their 1x1 projections as
convolutions (:mod:`emo_mm.models.layers`): the same arithmetic in the
operators XNNPACK delegates and within Core ML's rank limit.

Core ML cannot run on Linux. Its check here reads the written package back,
refuses any tensor above rank 5 and evaluates the package's program (its
MIL operations, in its precision) with PyTorch kernels
(:func:`coreml_runner`): that the program computes the model, not how a
phone's GPU or Neural Engine rounds it.
"""
import collections
import contextlib
import copy
import io
import math
import os
import os.path as osp
import shutil
import tempfile
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .deployment import (compare_once, default_check_sizes, model_for_export,
                         parse_sizes)
from .errors import UserError
from .models import deploy


def _layer_norm_for_xnnpack(x,
                            normalized_shape,
                            weight=None,
                            bias=None,
                            eps=1e-5,
                            *args):
    """``aten.layer_norm`` written in operators that XNNPACK delegates:
    XNNPACK has no layer norm and averages a 4-D tensor over its last two
    axes only, so the normalised axes become axis 2 of ``(1, rows, C, 1)``.
    The same two passes (mean, then the mean square of the centred values)
    as PyTorch's kernel."""
    shape = x.shape
    rows = x.reshape(1, -1, math.prod(normalized_shape), 1)
    centred = rows - rows.mean((2, 3), keepdim=True)
    variance = (centred * centred).mean((2, 3), keepdim=True)
    x = (centred * torch.rsqrt(variance + eps)).reshape(shape)
    if weight is not None:
        x = x * weight
    if bias is not None:
        x = x + bias
    return x


def _linear_for_xnnpack(x, weight, bias=None):
    """``aten.linear`` as one 2-D product over the flattened leading axes.
    The edge dialect writes a linear of an N-D input (EdgeNeXt's pointwise
    layers on NHWC maps) as ``expand`` + ``bmm``, which XNNPACK's partitioner
    takes for a linear and then fails to convert; ``addmm`` it converts."""
    rows = x.reshape(-1, x.shape[-1])
    if bias is None:
        out = torch.mm(rows, weight.t())
    else:
        out = torch.addmm(bias, rows, weight.t())
    return out.reshape(*x.shape[:-1], weight.shape[0])


def lower_to_executorch(model: nn.Module, inputs: torch.Tensor):
    """``model`` (eval mode, parameters in the default memory format) at
    the fixed shape of ``inputs``, exported (``torch.export``) and lowered
    to ExecuTorch with the XNNPACK delegate, fp32. Every ``LayerNorm`` and
    ``Linear`` is written in XNNPACK's operators first
    (:func:`_layer_norm_for_xnnpack`, :func:`_linear_for_xnnpack`),
    EdgeNeXt's as well as ours.

    Returns:
        tuple: ``(program, partitions, outside)``: the ``.pte`` bytes, the
        number of XNNPACK partitions and the names of the operators left
        to ExecuTorch's portable kernels.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import \
        XnnpackPartitioner
    from executorch.exir import to_edge
    with torch.no_grad():
        program = torch.export.export(model, (inputs, ))
    # Only these two: the edge dialect decomposes the rest itself.
    aten = torch.ops.aten
    decompositions = {aten.layer_norm.default: _layer_norm_for_xnnpack}
    decompositions[aten.linear.default] = _linear_for_xnnpack
    program = program.run_decompositions(decompositions)
    # Partitioning the decomposed graph, rather than
    # to_edge_transform_and_lower's keeping some operators whole for the
    # partitioner, gives the same single partition for EMO and EMOv2 in
    # 40% less time (ExecuTorch's passes are most of an export's time).
    edge = to_edge(program).to_backend(XnnpackPartitioner())
    partitions, outside = 0, []
    for node in edge.exported_program().graph_module.graph.nodes:
        if node.op != 'call_function' or node.target.__name__ == 'getitem':
            continue
        if 'call_delegate' in node.target.__name__:
            partitions += 1
        else:
            outside.append(node.target.__name__)
    return bytes(edge.to_executorch().buffer), partitions, outside


def executorch_runner(program, threads: int = 0):
    """``run(x) -> [outputs]`` (numpy in and out, as
    :func:`~emo_mm.deployment.onnxruntime_runner`) of an ExecuTorch program
    (``.pte`` bytes or path) in ExecuTorch's Python runtime; ``threads``
    sizes XNNPACK's thread pool, which the whole process shares (0: as it
    is; set it before the first program is loaded)."""
    from executorch.runtime import Runtime
    if threads:
        from executorch.extension.pybindings.portable_lib import (
            _threadpool_get_thread_count, _unsafe_reset_threadpool)

        # Programs already loaded keep the pool they were loaded with: a
        # reset under them made their runs erratic (7-14 ms for one program).
        if _threadpool_get_thread_count() != threads:
            _unsafe_reset_threadpool(threads)
    # The method runs on its program's memory: keep the program alive with it.
    loaded = Runtime.get().load_program(program)
    method = loaded.load_method('forward')

    def run(x):
        return [t.numpy() for t in method.execute([torch.from_numpy(x)])]

    run.program = loaded
    return run


# ------------------------------------------------------------------ Core ML
# Core ML's limit on a tensor's rank (the reason the authors' iOS graph
# replaced the window partition by plain reshapes).
COREML_MAX_RANK = 5


@contextlib.contextmanager
def _quiet():
    """coremltools prints progress bars and, on Linux, that it cannot load
    Core ML; neither is news to the caller."""
    with contextlib.redirect_stderr(io.StringIO()), \
            contextlib.redirect_stdout(io.StringIO()):
        yield


def convert_to_coreml(model: nn.Module,
                      inputs: torch.Tensor,
                      names,
                      fp16: bool = False):
    """``model`` (eval mode) at the fixed shape of ``inputs``, exported
    (``torch.export``) and converted by coremltools to an ML program
    (fp32, or fp16 arithmetic with fp32 input and outputs), its input named
    ``input`` and its outputs ``names``.

    Returns:
        coremltools.models.MLModel: not loaded (Core ML needs macOS).

    Raises:
        UserError: A tensor above Core ML's rank limit (coremltools' own
            check).
    """
    with _quiet():
        import coremltools as ct
        with torch.no_grad():
            program = torch.export.export(model, (inputs, ))
        try:
            mlmodel = ct.convert(
                program.run_decompositions({}),
                convert_to='mlprogram',
                compute_precision=(ct.precision.FLOAT16
                                   if fp16 else ct.precision.FLOAT32),
                skip_model_load=True)
        except ValueError as err:
            if f'rank <= {COREML_MAX_RANK}' not in str(err):
                raise
            raise UserError(f'coremltools: {str(err).strip()}') from None
        spec = mlmodel.get_spec()
        renames = [(spec.description.input[0].name, 'input')]
        renames += [(o.name, n)
                    for o, n in zip(spec.description.output, names)]
        for old, new in renames:
            ct.utils.rename_feature(spec, old, new)
        return ct.models.MLModel(
            spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)


def load_coreml_program(path: str):
    """The MIL program (coremltools' ``Program``) of an ``.mlpackage``, read
    back from the file with its weights."""
    with _quiet():
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load
        mlmodel = ct.models.MLModel(path, skip_model_load=True)
        spec = mlmodel.get_spec()
        return load(spec, spec.specificationVersion, mlmodel.weights_dir)


def coreml_operations(program) -> dict:
    """``{op type: count}`` of a MIL program's main function (constants
    left out), after checking that no value in it has a rank above
    :data:`COREML_MAX_RANK`."""
    counts = collections.Counter()
    for op in program.functions['main'].operations:
        for var in op.outputs:
            if var.shape is not None and len(var.shape) > COREML_MAX_RANK:
                raise UserError(
                    f'Core ML program: {op.op_type} {op.name!r} gives a '
                    f'tensor of rank {len(var.shape)} {tuple(var.shape)}; '
                    f'Core ML takes rank {COREML_MAX_RANK} at most')
        if op.op_type != 'const':
            counts[op.op_type] += 1
    return dict(counts)


def _gelu(x, mode):
    if mode == 'EXACT':
        return F.gelu(x)
    if mode == 'TANH_APPROXIMATION':
        return F.gelu(x, approximate='tanh')
    return x * torch.sigmoid(1.702 * x)  # SIGMOID_APPROXIMATION


def _conv(x,
          weight,
          bias=None,
          strides=(1, 1),
          pad_type='valid',
          pad=None,
          dilations=(1, 1),
          groups=1):
    if pad_type == 'custom':  # (top, bottom, left, right)
        x = F.pad(x, [int(pad[2]), int(pad[3]), int(pad[0]), int(pad[1])])
    elif pad_type != 'valid':
        raise UserError(f'Core ML program: conv pad_type {pad_type!r} is not '
                        'evaluated here (custom and valid are)')
    return F.conv2d(x, weight, bias, [int(s) for s in strides], 0,
                    [int(d) for d in dilations], int(groups))


def _pad(x, pad, mode='constant', constant_val=0.0):
    if mode != 'constant':
        raise UserError(f'Core ML program: pad mode {mode!r} is not '
                        'evaluated here (constant is)')
    # MIL: (before, after) per padded axis, first axis first; F.pad: last
    # axis first.
    pairs = np.asarray(pad).reshape(-1, 2)[::-1]
    return F.pad(
        x, [int(v) for v in pairs.reshape(-1)], value=float(constant_val))


def _upsample(x,
              scale_factor_height=1,
              scale_factor_width=1,
              mode='nearest',
              align_corners=None,
              half_pixel_centers=None):
    # MIL: the output size is floor(size * factor) and the sampling grid is
    # recomputed from it, as F.interpolate does when given a size.
    size = [
        int(math.floor(x.shape[-2] * float(scale_factor_height))),
        int(math.floor(x.shape[-1] * float(scale_factor_width)))
    ]
    if mode == 'nearest':
        return F.interpolate(x, size=size, mode='nearest')
    align_corners = True if align_corners is None else bool(align_corners)
    if half_pixel_centers is not None and bool(half_pixel_centers) == (
            align_corners):
        raise UserError('Core ML program: upsample_bilinear with '
                        f'align_corners={align_corners} and '
                        f'half_pixel_centers={bool(half_pixel_centers)} is '
                        'not evaluated here')
    return F.interpolate(
        x, size=size, mode='bilinear', align_corners=align_corners)


def _slice_by_index(x,
                    begin,
                    end,
                    stride=None,
                    begin_mask=None,
                    end_mask=None,
                    squeeze_mask=None):
    index = []
    for axis in range(x.dim()):
        start = None if begin_mask is not None and begin_mask[axis] else int(
            begin[axis])
        stop = None if end_mask is not None and end_mask[axis] else int(
            end[axis])
        step = 1 if stride is None else int(stride[axis])
        if squeeze_mask is not None and squeeze_mask[axis]:
            index.append(start or 0)
        else:
            index.append(slice(start, stop, step))
    return x[tuple(index)]


def _matmul(x, y, transpose_x=False, transpose_y=False):
    if transpose_x:
        x = x.transpose(-1, -2)
    if transpose_y:
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


def _layer_norm(x, axes, gamma=None, beta=None, epsilon=1e-5):
    axes = [int(a) % x.dim() for a in axes]
    mean = x.mean(axes, keepdim=True)
    variance = ((x - mean)**2).mean(axes, keepdim=True)
    x = (x - mean) / torch.sqrt(variance + float(epsilon))
    if gamma is not None:
        x = x * gamma
    if beta is not None:
        x = x + beta
    return x


def _axes(axes):
    return [int(a) for a in axes]


_DTYPES = {'fp16': torch.float16, 'fp32': torch.float32, 'int32': torch.int32}

# The MIL operations EMO and EMOv2 programs use, in PyTorch, as the MIL
# reference defines them (keyword arguments as the operations name them).
# yapf: disable
MIL_OPS = {
    'add': lambda x, y: x + y,
    'sub': lambda x, y: x - y,
    'mul': lambda x, y: x * y,
    'cast': lambda x, dtype: x.to(_DTYPES[dtype]),
    'concat': lambda values, axis, interleave=False: torch.cat(
        values, int(axis)),
    'clip': lambda x, alpha, beta: x.clamp(float(alpha), float(beta)),
    'conv': _conv,
    'gelu': lambda x, mode='EXACT': _gelu(x, mode),
    'layer_norm': _layer_norm,
    'linear': lambda x, weight, bias=None: F.linear(x, weight, bias),
    'matmul': _matmul,
    'pad': _pad,
    'reduce_mean': lambda x, axes, keep_dims=False: x.mean(
        _axes(axes), keepdim=bool(keep_dims)),
    'relu': lambda x: F.relu(x),
    'reshape': lambda x, shape: x.reshape(_axes(shape)),
    'sigmoid': lambda x: torch.sigmoid(x),
    'silu': lambda x: F.silu(x),
    'slice_by_index': _slice_by_index,
    'softmax': lambda x, axis=-1: torch.softmax(x, int(axis)),
    'split': lambda x, axis, num_splits=None, split_sizes=None: torch.split(
        x, x.shape[int(axis)] // int(num_splits)
        if split_sizes is None else _axes(split_sizes), int(axis)),
    'squeeze': lambda x, axes=None: x.squeeze(
        tuple(_axes(axes))) if axes is not None else x.squeeze(),
    'transpose': lambda x, perm: x.permute(_axes(perm)),
    'upsample_bilinear': lambda x, **kw: _upsample(x, mode='bilinear', **kw),
    'upsample_nearest_neighbor': lambda x, **kw: _upsample(x, **kw),
}
# yapf: enable


def coreml_runner(path: str):
    """``run(x) -> [outputs]`` (numpy in and out, as
    :func:`executorch_runner`) evaluating an ``.mlpackage``'s program, read
    back from ``path``, with PyTorch kernels in the program's own precision
    (:data:`MIL_OPS`); every value's shape is checked against the shape the
    program declares for it. Raises :class:`UserError` for an operation it
    does not evaluate or a tensor above Core ML's rank limit."""
    program = load_coreml_program(path)
    coreml_operations(program)
    function = program.functions['main']
    operations = list(function.operations)
    missing = sorted({op.op_type
                      for op in operations} - set(MIL_OPS) - {'const'})
    if missing:
        raise UserError(f'Core ML program: {", ".join(missing)} not '
                        'evaluated here (emo_mm.mobile.MIL_OPS)')

    def run(x):
        values = {name: torch.from_numpy(x) for name in function.inputs}

        def value(var):
            if isinstance(var, (list, tuple)):
                return [value(v) for v in var]
            if var.name in values:
                return values[var.name]
            if isinstance(var.val, np.ndarray) and var.val.dtype.kind == 'f':
                return torch.from_numpy(var.val)
            return var.val

        for op in operations:
            if op.op_type == 'const':
                continue
            out = MIL_OPS[op.op_type](**{
                k: value(v)
                for k, v in op.inputs.items()
            })
            outs = out if isinstance(out, (list, tuple)) else [out]
            for var, got in zip(op.outputs, outs):
                if tuple(got.shape) != tuple(var.shape):
                    raise UserError(
                        f'Core ML program: {op.op_type} {op.name!r} gives '
                        f'{tuple(got.shape)} here, the program declares '
                        f'{tuple(var.shape)}')
                values[var.name] = got
        return [values[v.name].float().numpy() for v in function.outputs]

    return run


# ----------------------------------------------------------- the one export
def _remove(path):
    if osp.isdir(path):
        shutil.rmtree(path)
    elif osp.exists(path):
        os.remove(path)


def _write_executorch(net, inputs, names, path):
    program, partitions, outside = lower_to_executorch(net, inputs)
    with open(path, 'wb') as f:
        f.write(program)
    return executorch_runner(path), dict(
        partitions=partitions, outside=outside)


def _coreml_writer(fp16):

    def write(net, inputs, names, path):
        convert_to_coreml(net, inputs, names, fp16).save(path)
        run = coreml_runner(path)
        return run, dict(
            operations=coreml_operations(load_coreml_program(path)),
            precision='fp16' if fp16 else 'fp32')

    return write


def export_mobile(model: str,
                  out: str,
                  checkpoint=None,
                  window_size=7,
                  shape=None,
                  batch: int = 1,
                  check=None,
                  atol=None,
                  force=False,
                  backbone_options: Optional[dict] = None,
                  coreml: bool = False,
                  fp16: bool = False) -> dict:
    """Write ``model`` (as :func:`~emo_mm.deployment.export` takes it),
    BatchNorms and LayerScales folded, for inputs of one fixed shape: an
    ExecuTorch program with the XNNPACK delegate (fp32,
    :func:`lower_to_executorch`), or with ``coreml`` a Core ML package
    (:func:`convert_to_coreml`, fp32 or ``fp16``): what
    ``tools/deployment/export_executorch.py`` does.

    The written file is read back and run (ExecuTorch's Python runtime;
    Core ML's program evaluated by :func:`coreml_runner`) and compared with
    the unfolded PyTorch model; so is one made at each ``check`` size, since
    a program has one input shape. Nothing is written unless every run
    agrees within ``atol``.

    Args:
        model, out, checkpoint, window_size, force, backbone_options:
            As for :func:`~emo_mm.deployment.export`; ``out`` ends in
            ``.pte``, or ``.mlpackage`` with ``coreml``.
        shape (tuple, optional): The program's (H, W); default 224x224 for a
            backbone, the config's input size.
        batch (int): The program's batch size. Defaults to 1.
        check (list[str], optional): More 'HxW' sizes to compare at; None:
            one that no stride or window divides
            (:func:`~emo_mm.deployment.default_check_sizes`); []: only the
            program written.
        atol (float, optional): The largest difference allowed, relative
            to each output's largest magnitude (at least 1). Defaults to
            1e-4, or 5e-2 for fp16 (fp16 carries about three digits).
        coreml (bool): A Core ML package instead of an ExecuTorch program.
        fp16 (bool): Core ML only: fp16 arithmetic.

    Returns:
        dict: ``shape``, ``batch``, ``names``, ``expects``, ``atol``,
        ``checked`` (a
        :func:`~emo_mm.deployment.compare_once` record per size, the
        written program's first); for ExecuTorch ``partitions`` and
        ``outside`` (:func:`lower_to_executorch`), for Core ML
        ``operations`` (:func:`coreml_operations`) and ``precision``.
    """
    suffix = '.mlpackage' if coreml else '.pte'
    if osp.exists(out) and not force:
        raise UserError(f'{out} exists; pass force=True to overwrite it')
    if osp.splitext(out.rstrip('/'))[1] != suffix:
        kind = 'a Core ML package' if coreml else 'an ExecuTorch program'
        raise UserError(f'{kind} is a {suffix} file: {out}')
    if fp16 and not coreml:
        raise UserError('fp16=True is for Core ML (coreml=True); the '
                        'ExecuTorch program is fp32')
    if not isinstance(batch, int) or batch < 1:
        raise UserError(f'batch={batch!r} must be a positive integer')
    if atol is None:
        atol = 5e-2 if fp16 else 1e-4
    sizes = None if check is None else parse_sizes(check)
    net, shape, names, expects, raw_images = model_for_export(
        model, checkpoint, window_size, shape, backbone_options)
    shape = tuple(shape)
    if sizes is None:
        sizes = default_check_sizes(shape)[:1]
    reference = copy.deepcopy(net)
    deploy(net)
    write = _coreml_writer(fp16) if coreml else _write_executorch
    runtime = f'Core ML ({"fp16" if fp16 else "fp32"})' if coreml else (
        'ExecuTorch')
    result = dict(
        shape=shape, batch=batch, names=names, expects=expects, atol=atol)
    out = out.rstrip('/')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    tmp = out[:-len(suffix)] + '.part' + suffix
    torch.manual_seed(0)
    checked = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for size in [shape] + [s for s in sizes if s != shape]:
                path = tmp if size == shape else osp.join(
                    scratch, f'{size[0]}x{size[1]}{suffix}')
                _remove(path)
                run, info = write(net, torch.zeros(batch, 3, *size), names,
                                  path)
                checked.append(
                    compare_once(reference, run, (batch, 3, *size), atol,
                                 raw_images, runtime))
                if size == shape:
                    result.update(info)
        result['checked'] = checked
        # A package is a directory: the old one goes only once the new one
        # is complete.
        old = out + '.old'
        if osp.isdir(out):
            os.replace(out, old)
        os.replace(tmp, out)
        _remove(old)
    except BaseException:
        _remove(tmp)
        raise
    return result
