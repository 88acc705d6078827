"""Test a checkpoint of any emo_mm config, or of any mmdet/mmseg/mmpretrain
config that imports emo_mm, and print its metrics.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show-dir DIR] [--tta] [--no-deploy] [--cfg-options KEY=VALUE ...]
        [--launcher pytorch]

Multi-GPU runs go through torchrun: tools/dist_test.sh.
"""
import argparse

from emo_mm.config import load_config
from emo_mm.engine import runner as tool
from emo_mm.engine.distributed import close_cpu_process_group
from emo_mm.errors import run_tool
from emo_mm.utils import check_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('--work-dir', help='where the test logs go')
    parser.add_argument(
        '--out', help='dump the predictions to this pickle file')
    parser.add_argument(
        '--show', action='store_true', help='show results in a window')
    parser.add_argument(
        '--show-dir', help='write pictures of the predictions here')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds per --show')
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation')
    parser.add_argument(
        '--no-deploy',
        action='store_true',
        help='keep the BatchNorms unfolded (by default they are folded '
        'into the convolutions once the checkpoint is loaded: same '
        'results, faster)')
    tool.add_common_arguments(parser, 'data_root=/data/coco/')
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    check_checkpoint(args.checkpoint)
    tool.check_data_root(cfg, 'test_dataloader')
    tool.setup_launcher(cfg, args.launcher, args.local_rank)
    cfg.work_dir = (
        args.work_dir or cfg.get('work_dir')
        or tool.default_work_dir(args.config))
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        tool.enable_visualization(cfg, args.show, args.show_dir,
                                  args.wait_time)
    if args.tta:
        tool.enable_tta(cfg)
    if not args.no_deploy:
        tool.enable_deploy(cfg)

    runner = tool.build_runner(cfg)
    if args.out:
        tool.add_dump_metric(runner, args.out)
    runner.test()
    close_cpu_process_group()


if __name__ == '__main__':
    run_tool(main)
