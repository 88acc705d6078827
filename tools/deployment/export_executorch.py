"""Export an EMO or EMOv2 backbone, or a config's whole network, for phones:
an ExecuTorch program (.pte) with the XNNPACK delegate, or with --coreml a
Core ML package (.mlpackage).

    python tools/deployment/export_executorch.py 1m emo_1m.pte \\
        [--checkpoint net.pth]
    python tools/deployment/export_executorch.py emov2-5m emov2_5m.pte \\
        --checkpoint EMOv2_5M_224.pth --shape 256 256
    # a classifier, detector or segmentor without its post-processing
    python tools/deployment/export_executorch.py \\
        configs/ssdlite/emo_1m_coco.py ssdlite.pte --checkpoint epoch_600.pth
    # Core ML (iOS), fp32 or fp16 arithmetic
    python tools/deployment/export_executorch.py 1m emo_1m.mlpackage \\
        --coreml [--fp16]

The arguments are those of export_onnx.py, plus --batch. A program has one
input shape, (--batch, 3, H, W): --shape (default 224x224 for a backbone,
the config's test size). BatchNorms and EMOv2's LayerScales are folded
first. The written file is read back and run (Core ML: its program
evaluated with PyTorch kernels, since Core ML needs macOS) and compared with
PyTorch, as is one made at each --check size (default: one that no stride
or window divides); nothing is written when any differs by more than
--atol. What the input and outputs are: export_onnx.py.
"""
from emo_mm.deployment import EXPORT_FLAGS, export_parser, nest
from emo_mm.errors import run_tool
from emo_mm.mobile import export_mobile


def parse_args(argv=None):
    parser = export_parser(
        'Export EMO or EMOv2 (backbone or config) to ExecuTorch (XNNPACK) '
        'or Core ML',
        '.pte (.mlpackage with --coreml)',
        'the program\'s input size (default: 224x224 for a backbone, the '
        'config\'s test size)',
        'more sizes to make and compare with PyTorch at (default: one that '
        'no window divides); give none to check only OUT',
        atol=None)
    parser.add_argument(
        '--batch', type=int, default=1, help='the program\'s batch size')
    parser.add_argument(
        '--coreml',
        action='store_true',
        help='write a Core ML package (ML program) instead')
    parser.add_argument(
        '--fp16',
        action='store_true',
        help='Core ML: fp16 arithmetic (--atol defaults to 5e-2)')
    parser.add_argument(
        '--force', action='store_true', help='overwrite OUT if it exists')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = export_mobile(args.model, args.out, args.checkpoint,
                           args.window_size, args.shape, args.batch,
                           args.check, args.atol, args.force,
                           nest(args.backbone_options), args.coreml, args.fp16)
    h, w = result['shape']
    print(f'input: ({result["batch"]}, 3, {h}, {w}) {result["expects"]}; '
          f'outputs: {", ".join(result["names"])}')
    if args.coreml:
        runtime = f'Core ML ({result["precision"]})'
        ops = result['operations']
        print(f'ML program operations, none above rank 5: '
              f'{", ".join(f"{k} {v}" for k, v in sorted(ops.items()))}')
    else:
        runtime = 'ExecuTorch'
        outside = sorted(set(result['outside']))
        print(f'XNNPACK partitions: {result["partitions"]}; operators '
              f'outside them: {", ".join(outside) if outside else "none"}')
    for batch, h, w, outputs, diff in result['checked']:
        print(f'  {runtime} {batch}x3x{h}x{w}: {outputs} outputs, max '
              f'difference {diff:.2e}')
    print(f'{runtime} matches PyTorch within --atol '
          f'{result["atol"]} at {len(result["checked"])} sizes')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    run_tool(
        main,
        flags={
            **EXPORT_FLAGS, 'batch=':
            '--batch ',
            'fp16=True is for Core ML (coreml=True)':
            '--fp16 is for Core ML (--coreml)'
        })
