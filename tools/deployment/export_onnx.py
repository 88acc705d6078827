"""Export an EMO backbone, or a config's whole network, to ONNX.

    # the bare backbone (stride 2-32 features), random or given weights
    python tools/deployment/export_onnx.py 1m emo_1m.onnx [--checkpoint net.pth]
    # a detector / segmentor / classifier without its post-processing
    python tools/deployment/export_onnx.py configs/ssdlite/emo_1m_coco.py \\
        ssdlite.onnx --checkpoint work_dirs/emo_1m_coco/epoch_600.pth

The graph has a dynamic batch size, height and width. Models that pool to
fixed sizes (PSPNet's pyramid pooling) cannot be exported: a one-line error. BatchNorms are folded
into the convolutions first (``EMO.switch_to_deploy``). For a config, the
graph takes the raw image (N, 3, H, W) in the channel order the config reads
(BGR for mmdet/mmseg files loaded by OpenCV) as float 0-255 and applies the
config's normalisation itself (``bgr_to_rgb`` and mean/std of its data
preprocessor); its outputs are what ``model(x, mode='tensor')`` returns
(mmdet: per-level class scores then box deltas; mmseg: the decode head's
logits at 1/8 resolution; mmpretrain: class scores), without NMS, resizing
or softmax. A backbone graph takes normalised images.

After export the graph is run with ONNX Runtime at each ``--check`` size
(default: sizes that are not multiples of the windows) and compared with
PyTorch; the export fails when the largest difference exceeds ``--atol``
(relative to the output's magnitude when that is above 1).
"""
import argparse
import copy
import os
import os.path as osp
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                            'analysis'))

ARCHES = ('1m', '2m', '5m', '6m')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export EMO (backbone or config) to ONNX')
    parser.add_argument('model', help=f'an EMO arch {ARCHES} or a config file')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--checkpoint', help='weights: an authors\' or '
                        'emo_mm backbone checkpoint (arch), or a checkpoint '
                        'of the config\'s model')
    parser.add_argument('--window-size', type=int, nargs='+', default=[7],
                        help='backbone only: one or four window sizes')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='size traced at (default: 224x224 for a '
                        'backbone, the config\'s test size)')
    parser.add_argument('--check', nargs='*', metavar='HxW',
                        help='sizes to compare ONNX Runtime with PyTorch at '
                        '(default: three that are not window multiples); '
                        'give none to skip')
    parser.add_argument('--atol', type=float, default=1e-4)
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--force', action='store_true',
                        help='overwrite OUT if it exists')
    return parser.parse_args(argv)


class ExportError(Exception):
    """A bad argument or a failed check: one line, no traceback."""


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
        return tuple(_flatten(self.model(x, mode='tensor')))


def _flatten(outputs):
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [t for item in outputs for t in _flatten(item)]


def _output_names(scope: str, nested) -> list:
    """mmdet: (class scores, box deltas) per level; mmseg: the logits;
    mmpretrain: the class scores; otherwise output0, output1, ..."""
    if (scope == 'mmdet' and isinstance(nested, (tuple, list))
            and len(nested) == 2
            and all(isinstance(part, (tuple, list)) for part in nested)):
        return ([f'cls_score_{i}' for i in range(len(nested[0]))] +
                [f'bbox_pred_{i}' for i in range(len(nested[1]))])
    if isinstance(nested, torch.Tensor):
        return [{'mmseg': 'seg_logits',
                 'mmpretrain': 'cls_score'}.get(scope, 'output0')]
    return [f'output{i}' for i in range(len(_flatten(nested)))]


def deploy(model: nn.Module) -> None:
    """Fold BatchNorms in every module that can (EMO; mmpretrain's RepVGG,
    MobileOne...) through its ``switch_to_deploy``."""
    for module in [m for m in model.modules()
                   if hasattr(m, 'switch_to_deploy')]:
        module.switch_to_deploy()


def build_backbone(args):
    from emo_mm.models import EMO
    windows = args.window_size
    model = EMO(arch=args.model, out_indices=(0, 1, 2, 3, 4),
                window_size=windows[0] if len(windows) == 1 else windows)
    if args.checkpoint:
        from emo_mm.models.checkpoint import load_backbone_checkpoint
        load_backbone_checkpoint(model, args.checkpoint)
    names = [f'stride{2 ** (i + 1)}' for i in range(5)]
    return model.eval(), tuple(args.shape or (224, 224)), names, (
        'normalised RGB (ImageNet mean/std)')


def build_config_model(args):
    from get_flops import build_model, input_shape
    from mmengine.runner import load_checkpoint

    from emo_mm.utils import cli
    cfg = cli.load_config(args.model)
    shape = tuple(args.shape) if args.shape else input_shape(cfg)[0]
    model = build_model(cfg)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu',
                        strict=True)
    preprocessor = cfg.get('data_preprocessor') or cfg.model.get(
        'data_preprocessor', {})
    mean = preprocessor.get('mean', [0.0, 0.0, 0.0])
    std = preprocessor.get('std', [1.0, 1.0, 1.0])
    bgr_to_rgb = bool(preprocessor.get('bgr_to_rgb', False)
                      or preprocessor.get('to_rgb', False))
    wrapped = Normalized(model, mean, std, bgr_to_rgb).eval()
    with torch.no_grad():
        nested = model(torch.zeros(1, 3, *shape), mode='tensor')
    names = _output_names(cfg.default_scope, nested)
    order = 'BGR' if bgr_to_rgb else 'RGB'
    return wrapped, shape, names, (
        f'{order} 0-255, normalised in the graph (mean {list(mean)}, std '
        f'{list(std)})')


def check_sizes(args, shape):
    if args.check is not None:
        sizes = []
        for text in args.check:
            try:
                h, w = (int(v) for v in text.lower().split('x'))
            except ValueError:
                raise ExportError(f'--check size {text!r} is not HxW, e.g. '
                                  '97x131') from None
            sizes.append((h, w))
        return sizes
    h, w = shape
    # Odd sizes: no window (7, 10, 16) or stride divides them.
    return [(h - 31, w + 17), (h + 13, w - 45), (max(h // 3, 33) + 2, w)]


def export(model, shape, names, path, opset):
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
            torch.onnx.export(model, (inputs, ), path, input_names=['input'],
                              output_names=names, dynamic_axes=dynamic,
                              opset_version=opset, dynamo=False)
        except torch.onnx.errors.SymbolicValueError as err:
            if 'adaptive_avg_pool2d' not in str(err):
                raise
            # The window padding makes every size after the stem a traced
            # expression, so even a fixed input size does not help.
            raise ExportError('the model pools to fixed output sizes '
                              '(adaptive_avg_pool2d, e.g. PSPNet\'s pyramid '
                              'pooling), which torch\'s TorchScript ONNX '
                              'exporter cannot trace behind EMO; export '
                              'DeepLabV3 or the backbone instead') from None


def compare(model, path, sizes, atol, raw_images: bool):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    worst = 0.0
    torch.manual_seed(0)
    for batch, (h, w) in zip([2, 1, 3, 1, 2], sizes):
        x = torch.rand(batch, 3, h, w) * 255 if raw_images else torch.randn(
            batch, 3, h, w)
        with torch.no_grad():
            expected = [t.numpy() for t in model(x)]
        got = session.run(None, {'input': x.numpy()})
        if len(got) != len(expected):
            raise ExportError(f'ONNX Runtime gives {len(got)} outputs, '
                              f'PyTorch {len(expected)}')
        diff = 0.0
        for i, (a, b) in enumerate(zip(got, expected)):
            if a.shape != b.shape:
                raise ExportError(f'output {i} at {batch}x3x{h}x{w}: ONNX '
                                  f'Runtime shape {a.shape}, PyTorch '
                                  f'{b.shape}')
            scale = max(1.0, float(np.abs(b).max()))
            diff = max(diff, float(np.abs(a - b).max()) / scale)
        print(f'  {batch}x3x{h}x{w}: {len(got)} outputs, max difference '
              f'{diff:.2e}')
        if diff > atol:
            raise ExportError(f'ONNX Runtime differs from PyTorch by '
                              f'{diff:.2e} > --atol {atol} at {h}x{w}')
        worst = max(worst, diff)
    return worst


def main(argv=None):
    args = parse_args(argv)
    if osp.exists(args.out) and not args.force:
        raise ExportError(f'{args.out} exists; pass --force to overwrite it')
    if args.checkpoint and not osp.isfile(args.checkpoint):
        raise ExportError(f'checkpoint {args.checkpoint} does not exist')
    import emo_mm  # noqa: F401
    if args.model.lower() in ARCHES:
        args.model = args.model.lower()
        model, shape, names, expects = build_backbone(args)
        raw_images = False
    elif osp.isfile(args.model):
        model, shape, names, expects = build_config_model(args)
        raw_images = True
    else:
        raise ExportError(f'{args.model!r} is neither an EMO arch {ARCHES} '
                          'nor an existing config file')
    # The check compares with the model as built, BatchNorms unfolded, so
    # that a folding error fails it too.
    reference = copy.deepcopy(model) if args.check != [] else None
    deploy(model)
    sizes = check_sizes(args, shape)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.part'
    try:
        export(model, shape, names, tmp, args.opset)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    print(f'traced at {shape[0]}x{shape[1]}; input: (N, 3, H, W) {expects}; '
          f'outputs: {", ".join(names)}')
    try:
        if sizes:
            compare(reference, tmp, sizes, args.atol, raw_images)
            print(f'ONNX Runtime matches PyTorch within --atol {args.atol} '
                  f'at {len(sizes)} sizes')
    except ExportError:
        os.remove(tmp)
        raise
    os.replace(tmp, args.out)  # a failed export leaves no file behind
    print(f'wrote {args.out}')


if __name__ == '__main__':
    from emo_mm.utils.cli import USER_ERRORS
    try:
        main()
    except (ExportError, *USER_ERRORS) as err:
        sys.exit(f'error: {err}')
