"""Export an EMO backbone, or a config's whole network, to ONNX.

    # the bare backbone (stride 2-32 features), random or given weights
    python tools/deployment/export_onnx.py 1m emo_1m.onnx [--checkpoint net.pth]
    # a detector / segmentor / classifier without its post-processing
    python tools/deployment/export_onnx.py configs/ssdlite/emo_1m_coco.py \\
        ssdlite.onnx --checkpoint work_dirs/emo_1m_coco/epoch_600.pth

The graph has a dynamic batch size, height and width. Models that pool to
fixed sizes (PSPNet's pyramid pooling) cannot be exported: a one-line error.
BatchNorms are folded into the convolutions first (``EMO.switch_to_deploy``).
For a config, the graph takes the raw image (N, 3, H, W) in the channel order
the config reads as float 0-255 and normalises it itself; its outputs are
what ``model(x, mode='tensor')`` returns (see :mod:`emo_mm.deployment`).
A backbone graph takes normalised images.

After export the graph is run with ONNX Runtime at each ``--check`` size
(default: sizes that are not multiples of the windows) and compared with
PyTorch; the export fails, writing nothing, when the largest difference
exceeds ``--atol`` (relative to the output's magnitude when that is above 1).
"""
import argparse

from emo_mm.errors import run_tool
from emo_mm.deployment import export
from emo_mm.models import EMO

ARCHES = tuple(EMO.arch_settings)


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


def main(argv=None):
    args = parse_args(argv)
    result = export(args.model, args.out, args.checkpoint, args.window_size,
                    args.shape, args.check, args.atol, args.opset, args.force)
    h, w = result['shape']
    print(f'traced at {h}x{w}; input: (N, 3, H, W) {result["expects"]}; '
          f'outputs: {", ".join(result["names"])}')
    for batch, h, w, outputs, diff in result['checked']:
        print(f'  {batch}x3x{h}x{w}: {outputs} outputs, max difference '
              f'{diff:.2e}')
    if result['checked']:
        print(f'ONNX Runtime matches PyTorch within --atol {args.atol} at '
              f'{len(result["checked"])} sizes')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    run_tool(main)
