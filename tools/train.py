"""Train any emo_mm config, or any mmdet/mmseg/mmpretrain config that imports emo_mm.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CKPT]] [--cfg-options KEY=VALUE ...] [--launcher pytorch]

Multi-GPU and multi-node runs go through torchrun: tools/dist_train.sh.
"""
import argparse
import sys

from mmengine.config import DictAction

from emo_mm.utils import cli


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by (GPUs x batch) / auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or without a value from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. data_root=/data/coco/ '
        'model.backbone.init_cfg.checkpoint=/path/net.pth')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    cli.set_local_rank(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = cli.load_config(args.config, args.cfg_options)
    if args.amp:
        cli.enable_amp(cfg)
    if args.auto_scale_lr:
        cli.enable_auto_scale_lr(cfg)
    cli.setup_launcher(cfg, args.launcher)
    cfg.work_dir = (args.work_dir or cfg.get('work_dir')
                    or cli.default_work_dir(args.config))
    if args.resume and args.resume != 'auto':
        cli.check_checkpoint(args.resume, '--resume checkpoint')
    if cfg.get('load_from') and not args.resume:
        cli.check_checkpoint(cfg.load_from, 'load_from checkpoint')
    cli.refuse_to_overwrite(cfg.work_dir, args.resume)
    cli.check_data_root(cfg, 'train_dataloader', 'val_dataloader')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume

    runner = cli.build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    try:
        main()
    except cli.USER_ERRORS as err:
        sys.exit(f'error: {err}')
