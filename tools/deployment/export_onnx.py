"""Export an EMO or EMOv2 backbone, or a config's whole network, to ONNX.

    # the bare backbone (stride 2-32 features), random or given weights
    python tools/deployment/export_onnx.py 1m emo_1m.onnx \
        [--checkpoint net.pth]
    python tools/deployment/export_onnx.py emov2-5m emov2_5m.onnx \\
        --checkpoint EMOv2_5M_224.pth
    # also OpenVINO IR (emo_1m.xml + emo_1m.bin), checked in fp32
    python tools/deployment/export_onnx.py 1m emo_1m.onnx --openvino
    # the authors' segmentation form of EMOv2, window 10
    python tools/deployment/export_onnx.py emov2-5m emov2_5m_seg.onnx \\
        --window-size 10 --backbone-options \\
        "dw_norm_cfg=dict(type='LN2d',eps=1e-6)" "dw_act_cfg=dict(type='GELU')"
    # a detector / segmentor / classifier without its post-processing
    python tools/deployment/export_onnx.py configs/ssdlite/emo_1m_coco.py \\
        ssdlite.onnx --checkpoint work_dirs/emo_1m_coco/epoch_600.pth

The graph has a dynamic batch size, height and width. Models that pool to
fixed sizes (PSPNet's pyramid pooling) cannot be exported: a one-line error.
A backbone is named by its arch: '1m', '2m', '5m', '6m' (EMO, as always),
'emo-1m' ..., or 'emov2-1m', 'emov2-2m', 'emov2-5m', 'emov2-20m'.
BatchNorms are folded into the convolutions first, and EMOv2's LayerScales
into its projections (``switch_to_deploy``).
For a config, the graph takes the raw image (N, 3, H, W) in the channel order
the config reads as float 0-255 and normalises it itself; its outputs are
what ``model(x, mode='tensor')`` returns (see :mod:`emo_mm.deployment`).
A backbone graph takes normalised images.

After export the graph is run with ONNX Runtime at each ``--check`` size
(default: sizes that are not multiples of the windows) and compared with
PyTorch; the export fails, writing nothing, when the largest difference
exceeds ``--atol`` (relative to the output's magnitude when that is above 1).
``--openvino`` also writes OpenVINO IR (OUT with .xml and .bin) and checks
it the same way, on OpenVINO's CPU plugin set to fp32 arithmetic.
"""
import argparse

from emo_mm.deployment import backbone_names, backbone_option, export, nest
from emo_mm.errors import run_tool

ARCHES = tuple(backbone_names())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export EMO or EMOv2 (backbone or config) to ONNX')
    parser.add_argument(
        'model',
        help='a backbone (a bare arch is EMO\'s): '
        f'{", ".join(ARCHES)}; or a config file')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument(
        '--checkpoint',
        help='weights: an authors\' or '
        'emo_mm backbone checkpoint (arch), or a checkpoint '
        'of the config\'s model')
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
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='size traced at (default: 224x224 for a '
        'backbone, the config\'s test size)')
    parser.add_argument(
        '--check',
        nargs='*',
        metavar='HxW',
        help='sizes to compare ONNX Runtime with PyTorch at '
        '(default: three that are not window multiples); '
        'give none to skip')
    parser.add_argument('--atol', type=float, default=1e-4)
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument(
        '--openvino',
        action='store_true',
        help='also write OpenVINO IR beside OUT (.xml, '
        '.bin), checked with OpenVINO\'s CPU plugin in fp32')
    parser.add_argument(
        '--force',
        action='store_true',
        help='overwrite OUT (and the IR) if it exists')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = export(args.model, args.out, args.checkpoint, args.window_size,
                    args.shape, args.check, args.atol, args.opset, args.force,
                    nest(args.backbone_options), args.openvino)
    h, w = result['shape']
    print(f'traced at {h}x{w}; input: (N, 3, H, W) {result["expects"]}; '
          f'outputs: {", ".join(result["names"])}')
    for runtime, key in (('ONNX Runtime', 'checked'), ('OpenVINO (fp32)',
                                                       'openvino_checked')):
        for batch, h, w, outputs, diff in result.get(key, []):
            print(f'  {runtime} {batch}x3x{h}x{w}: {outputs} outputs, max '
                  f'difference {diff:.2e}')
        if result.get(key):
            print(f'{runtime} matches PyTorch within --atol {args.atol} at '
                  f'{len(result[key])} sizes')
    print(f'wrote {args.out}' +
          (f' and {result["ir"]}' if 'ir' in result else ''))


if __name__ == '__main__':
    run_tool(
        main,
        flags={
            'force=True': '--force',
            'atol=': '--atol ',
            'check= ': '--check ',
            'openvino=True': '--openvino',
            'shape=(H, W)': '--shape H W'
        })
