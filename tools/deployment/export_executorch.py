"""Export an EMO or EMOv2 backbone, or a config's whole network, as an
ExecuTorch program (.pte) with the XNNPACK delegate, for phones' CPUs.

    python tools/deployment/export_executorch.py 1m emo_1m.pte \\
        [--checkpoint net.pth]
    python tools/deployment/export_executorch.py emov2-5m emov2_5m.pte \\
        --checkpoint EMOv2_5M_224.pth --shape 256 256
    # a classifier, detector or segmentor without its post-processing
    python tools/deployment/export_executorch.py \\
        configs/ssdlite/emo_1m_coco.py ssdlite.pte --checkpoint epoch_600.pth

The arguments are those of export_onnx.py, plus --batch. A program has one
input shape, (--batch, 3, H, W): --shape (default 224x224 for a backbone,
the config's test size). BatchNorms and EMOv2's LayerScales are folded
first. The program is run in ExecuTorch's Python runtime and compared with
PyTorch, as is one lowered at each --check size (default: one that no
stride or window divides); nothing is written when any differs by more
than --atol. What the input and outputs are: export_onnx.py.
"""
from emo_mm.deployment import (EXPORT_FLAGS, export_executorch, export_parser,
                               nest)
from emo_mm.errors import run_tool


def parse_args(argv=None):
    parser = export_parser(
        'Export EMO or EMOv2 (backbone or config) to ExecuTorch (XNNPACK)',
        '.pte', 'the program\'s input size (default: 224x224 for a '
        'backbone, the config\'s test size)',
        'more sizes to lower and compare with PyTorch at (default: one that '
        'no window divides); give none to check only OUT')
    parser.add_argument(
        '--batch', type=int, default=1, help='the program\'s batch size')
    parser.add_argument(
        '--force', action='store_true', help='overwrite OUT if it exists')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = export_executorch(args.model, args.out, args.checkpoint,
                               args.window_size, args.shape, args.batch,
                               args.check, args.atol, args.force,
                               nest(args.backbone_options))
    h, w = result['shape']
    print(f'input: ({result["batch"]}, 3, {h}, {w}) {result["expects"]}; '
          f'outputs: {", ".join(result["names"])}')
    outside = sorted(set(result['outside']))
    print(f'XNNPACK partitions: {result["partitions"]}; operators outside '
          f'them: {", ".join(outside) if outside else "none"}')
    for batch, h, w, outputs, diff in result['checked']:
        print(f'  ExecuTorch {batch}x3x{h}x{w}: {outputs} outputs, max '
              f'difference {diff:.2e}')
    print(f'ExecuTorch matches PyTorch within --atol {args.atol} at '
          f'{len(result["checked"])} sizes')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    run_tool(main, flags={**EXPORT_FLAGS, 'batch=': '--batch '})
