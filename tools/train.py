"""Train any emo_mm config, or any mmdet/mmseg/mmpretrain config that imports
emo_mm.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CKPT]] [--cfg-options KEY=VALUE ...] [--launcher pytorch]

Multi-GPU and multi-node runs go through torchrun: tools/dist_train.sh.
"""
import argparse

from emo_mm.config import load_config
from emo_mm.engine import runner as tool
from emo_mm.engine.distributed import close_cpu_process_group
from emo_mm.errors import run_tool
from emo_mm.utils import check_checkpoint


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
    tool.add_common_arguments(
        parser, 'data_root=/data/coco/ '
        'model.backbone.init_cfg.checkpoint=/path/net.pth')
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    if args.amp:
        tool.enable_amp(cfg)
    if args.auto_scale_lr:
        tool.enable_auto_scale_lr(cfg)
    tool.setup_launcher(cfg, args.launcher, args.local_rank)
    cfg.work_dir = (
        args.work_dir or cfg.get('work_dir')
        or tool.default_work_dir(args.config))
    if args.resume and args.resume != 'auto':
        check_checkpoint(args.resume, '--resume checkpoint')
    if cfg.get('load_from') and not args.resume:
        check_checkpoint(cfg.load_from, 'load_from checkpoint')
    tool.refuse_to_overwrite(cfg.work_dir, args.resume)
    tool.check_data_root(cfg, 'train_dataloader', 'val_dataloader')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume

    runner = tool.build_runner(cfg)
    runner.train()
    close_cpu_process_group()


if __name__ == '__main__':
    run_tool(main)
