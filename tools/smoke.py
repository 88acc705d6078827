"""Build every EMO and EMOv2 variant, print a table, reload their weights.

    python tools/smoke.py [--input-size 224] [--families EMO EMOv2]

For each of EMO-1M/2M/5M/6M and EMOv2-1M/2M/5M/20M (a table per family):
backbone parameters, FLOPs at the input size
(mmengine's FlopAnalyzer, one FLOP per multiply-add, on the explicit attention
path so that its matmuls are counted), and the five feature-map shapes. Then a
checkpoint in the authors' key layout is written to a temporary folder,
loaded back through ``init_cfg=dict(type='Pretrained', ...)`` and checked to
reproduce the source model's features exactly.
"""
import argparse
import os.path as osp
import tempfile

import torch

import emo_mm
from emo_mm.analysis import PAPER, count_backbone
from emo_mm.models import EMO, FAMILIES, ours_to_authors


def check_authors_checkpoint(arch, size, workdir, backbone=EMO):
    source = backbone(arch=arch, out_indices=(0, 1, 2, 3, 4), final_norm=True)
    # Random BN statistics and (EMOv2) LayerScales, so the check covers them
    # too.
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        for name, param in source.named_parameters():
            if name.endswith('gamma'):
                param.uniform_(0.3, 0.7)
    path = osp.join(workdir,
                    f'{backbone.family.lower()}_{arch}_authors_layout.pth')
    torch.save(ours_to_authors(source.state_dict()), path)
    loaded = backbone(
        arch=arch,
        out_indices=(0, 1, 2, 3, 4),
        final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=path))
    loaded.init_weights()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        diffs = [(a - b).abs().max().item()
                 for a, b in zip(source.eval()(x),
                                 loaded.eval()(x))]
    return max(diffs)


def print_table(family, size):
    backbone = FAMILIES[family]
    header = (f'{family:<5}{"backbone":>10}{"+head":>9}{"FLOPs":>9}'
              f'{"paper@224":>16}  feature shapes (C, H, W), strides 2-32')
    print(header)
    print('-' * len(header))
    for arch in backbone.arch_settings:
        model = backbone(arch=arch, out_indices=(0, 1, 2, 3, 4)).eval()
        params = sum(p.numel() for p in model.parameters())
        # The paper's counts include the final norm and a 1000-class head.
        classifier = count_backbone(arch, size, family)
        with_head, flops = classifier['params'], classifier['flops']
        with torch.no_grad():
            outs = model(torch.randn(1, 3, size, size))
        shapes = ' '.join(str(tuple(o.shape[1:])) for o in outs)
        paper = '{} / {}'.format(
            *(n or '-'
              for n in PAPER.get(f'imagenet/{family.lower()}_{arch}', (None,
                                                                       None))))
        print(f'{arch:<5}{params / 1e6:>9.3f}M{with_head / 1e6:>8.3f}M'
              f'{flops / 1e6:>8.1f}M{paper:>16}  {shapes}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--input-size', type=int, default=224)
    parser.add_argument(
        '--families',
        nargs='+',
        default=list(FAMILIES),
        choices=list(FAMILIES))
    args = parser.parse_args()
    size = args.input_size

    print(f'emo_mm {emo_mm.__version__}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, input 1x3x{size}x{size}')
    for family in args.families:
        print_table(family, size)
    print('backbone: parameters; +head: with the final norm and a '
          '1000-class linear head, as the papers count; FLOPs: multiply-adds '
          'of that classifier; paper: the EMO paper, the EMOv2 README')

    with tempfile.TemporaryDirectory() as workdir:
        for family in args.families:
            backbone = FAMILIES[family]
            for arch in backbone.arch_settings:
                diff = check_authors_checkpoint(arch, size, workdir, backbone)
                status = 'OK' if diff == 0 else 'MISMATCH'
                print(f'authors-layout checkpoint -> {family}-{arch.upper()}: '
                      f'max |diff| {diff:.1e} {status}')
                if diff != 0:
                    raise SystemExit(1)


if __name__ == '__main__':
    main()
