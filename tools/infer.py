"""Run a detector, segmentor or classifier on pictures; save drawings as PNG.

    python tools/infer.py CONFIG CHECKPOINT INPUT [--out-dir DIR]
        [--device cpu] [--score-thr 0.3] [--no-deploy]
        [--cfg-options KEY=VALUE ...]

INPUT is an image file or a folder of images. The config's ``default_scope``
picks the inferencer: ``mmdet`` -> ``mmdet.apis.DetInferencer`` (boxes,
labels and scores drawn by mmdet's visualizer), ``mmseg`` ->
``mmseg.apis.MMSegInferencer`` (a class-colour overlay), ``mmpretrain`` ->
``mmpretrain.apis.ImageClassificationInferencer`` (top class and score,
also printed). Each result is written as ``DIR/vis/<input name>.png``
whatever the input's format, and the written paths are printed.
"""
import argparse

from mmengine.config import DictAction

from emo_mm.errors import run_tool
from emo_mm.inference import draw_predictions


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw detection or segmentation results on images.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('input', help='an image file or a folder of images')
    parser.add_argument(
        '--out-dir', default='outputs', help='results go to OUT_DIR/vis/')
    parser.add_argument(
        '--device', default='cpu', help='e.g. cpu or cuda:0 (default cpu)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='detection: lowest score of a drawn box (default 0.3)')
    parser.add_argument(
        '--no-deploy',
        action='store_true',
        help='keep the BatchNorms unfolded (folded by default: same '
        'drawings, faster)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as in tools/train.py')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    written = draw_predictions(
        args.config,
        args.checkpoint,
        args.input,
        args.out_dir,
        args.device,
        args.score_thr,
        args.cfg_options,
        not args.no_deploy,
        report=print)
    print(f'wrote {len(written)} image(s):')
    for path in written:
        print(f'  {path}')


if __name__ == '__main__':
    run_tool(main)
