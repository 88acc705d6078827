"""Test a checkpoint of any emo_mm config, or of any mmdet/mmseg/mmpretrain
config that imports emo_mm, and print its metrics.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show-dir DIR] [--tta] [--cfg-options KEY=VALUE ...] [--launcher pytorch]

Multi-GPU runs go through torchrun: tools/dist_test.sh.
"""
import argparse
import sys

from mmengine.config import DictAction

from emo_mm.utils import cli


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
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. data_root=/data/coco/')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    cli.set_local_rank(args.local_rank)
    return args


def add_dump_metric(runner, scope, out):
    if not out.endswith(('.pkl', '.pickle')):
        raise cli.ToolError(f'--out {out} must be a .pkl or .pickle file')
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))


def main():
    args = parse_args()
    cfg = cli.load_config(args.config, args.cfg_options)
    cli.check_checkpoint(args.checkpoint)
    cli.check_data_root(cfg, 'test_dataloader')
    cli.setup_launcher(cfg, args.launcher)
    cfg.work_dir = (args.work_dir or cfg.get('work_dir')
                    or cli.default_work_dir(args.config))
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cli.enable_visualization(cfg, args.show, args.show_dir,
                                 args.wait_time)
    if args.tta:
        cli.enable_tta(cfg)

    runner = cli.build_runner(cfg)
    if args.out:
        add_dump_metric(runner, cfg.default_scope, args.out)
    runner.test()


if __name__ == '__main__':
    try:
        main()
    except cli.USER_ERRORS as err:
        sys.exit(f'error: {err}')
