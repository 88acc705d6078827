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
from emo_mm.deployment import EXPORT_FLAGS, export, export_parser, nest
from emo_mm.errors import run_tool


def parse_args(argv=None):
    parser = export_parser(
        'Export EMO or EMOv2 (backbone or config) to ONNX', '.onnx',
        'size traced at (default: 224x224 for a backbone, the config\'s '
        'test size)', 'sizes to compare ONNX Runtime with PyTorch at '
        '(default: three that are not window multiples); give none to skip')
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
    run_tool(main, flags={**EXPORT_FLAGS, 'openvino=True': '--openvino'})
