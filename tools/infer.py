"""Run a detector, segmentor or classifier on pictures; save drawings as PNG.

    python tools/infer.py CONFIG CHECKPOINT INPUT [--out-dir DIR]
        [--device cpu] [--score-thr 0.3] [--cfg-options KEY=VALUE ...]

INPUT is an image file or a folder of images. The config's ``default_scope``
picks the inferencer: ``mmdet`` -> ``mmdet.apis.DetInferencer`` (boxes,
labels and scores drawn by mmdet's visualizer), ``mmseg`` ->
``mmseg.apis.MMSegInferencer`` (a class-colour overlay), ``mmpretrain`` ->
``mmpretrain.apis.ImageClassificationInferencer`` (top class and score,
also printed). Each result is
written as ``DIR/vis/<input name>.png`` whatever the input's format, and the
written paths are printed.
"""
import argparse
import os
import os.path as osp
import sys

import cv2
from mmengine.config import DictAction

from emo_mm.utils import cli

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')
SUPPORTED_SCOPES = ('mmdet', 'mmseg', 'mmpretrain')
CLS_MIN_SIZE = 256  # shorter side of classification drawings, at least


class UsageError(Exception):
    """A bad input or config, reported without a traceback."""


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
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as in tools/train.py')
    return parser.parse_args(argv)


def list_images(path):
    """The image files named by ``path``: itself, or those in the folder."""
    if osp.isdir(path):
        images = sorted(
            osp.join(path, name) for name in os.listdir(path)
            if name.lower().endswith(IMG_EXTENSIONS)
            and osp.isfile(osp.join(path, name)))
        if not images:
            raise UsageError(
                f'no images ({", ".join(IMG_EXTENSIONS)}) in folder {path}')
        return images
    if not osp.isfile(path):
        raise UsageError(f'input {path} is neither a file nor a folder')
    return [path]


def load_config(config, cfg_options=None):
    """Load ``config`` ready to build a model for single-process inference.

    The weights come from the checkpoint, so the backbone's ``init_cfg``
    (a pretrained-weights URL in the EMO configs) is dropped: nothing is
    downloaded. SyncBN becomes BN.

    Args:
        config (str): Config file; its ``custom_imports`` register emo_mm.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        Config: The modified config.
    """
    cfg = cli.load_config(config, cfg_options)
    backbone = cfg.model.get('backbone')
    if backbone is not None:
        backbone.init_cfg = None
    cfg.model.pop('pretrained', None)  # mmseg's older way to name them
    cli.sync_bn_to_bn(cfg.model)
    return cfg


def build_inferencer(cfg, checkpoint, device):
    """The mmdet or mmseg inferencer for the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        return DetInferencer(
            model=cfg, weights=checkpoint, device=device, show_progress=False)
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(
            model=cfg, weights=checkpoint, device=device)
        inferencer.show_progress = False  # no such argument in mmseg 1.2
        return inferencer
    if scope == 'mmpretrain':
        from mmpretrain.apis import ImageClassificationInferencer
        return ImageClassificationInferencer(
            model=cfg, pretrained=checkpoint, device=device)
    raise UsageError(f'tools/infer.py does not support default_scope='
                     f'{scope!r}; expected one of {SUPPORTED_SCOPES}')


def _png_name(image_path, taken):
    """``<stem>.png``, or ``<stem>_<ext>.png`` if a sibling took that name."""
    stem, ext = osp.splitext(osp.basename(image_path))
    name = f'{stem}.png'
    if name in taken:
        name = f'{stem}_{ext.lstrip(".")}.png'
    taken.add(name)
    return name


def classify(inferencer, image):
    """Classify one image; print and draw (RGB) its top class and score.

    mmpretrain's inferencer only draws into files named after the input's
    stem, so its visualizer is called here instead.
    """
    from mmpretrain.visualization import UniversalVisualizer
    sample, = inferencer(image, return_datasamples=True)
    classes = inferencer.classes
    label = int(sample.pred_label)
    name = classes[label] if classes else str(label)
    print(f'{image}: {name} ({float(sample.pred_score[label]):.3f})')
    picture = cv2.imread(image)[..., ::-1]
    visualizer = UniversalVisualizer()
    # The text has a fixed pixel size: on a small image (the demo's are
    # 64x64) it would cover the picture and be unreadable, so small images
    # are drawn on a copy enlarged to CLS_MIN_SIZE on the shorter side.
    resize = CLS_MIN_SIZE if min(picture.shape[:2]) < CLS_MIN_SIZE else None
    visualizer.visualize_cls(
        picture,
        sample,
        classes=classes,
        draw_gt=False,
        draw_pred=True,
        draw_score=True,
        resize=resize)
    return visualizer.get_image()


def main(argv=None):
    """Run the command line; returns the list of written PNG paths."""
    args = parse_args(argv)
    images = list_images(args.input)  # fail fast, before the slow build
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise UsageError(f'checkpoint {args.checkpoint} does not exist')
    cfg = load_config(args.config, args.cfg_options)
    inferencer = build_inferencer(cfg, args.checkpoint, args.device)
    call_kwargs = dict(return_vis=True)
    if cfg.get('default_scope') == 'mmdet':
        # no_save_vis: the inferencer would keep the input's extension (and
        # JPEG-compress the drawing); we save the returned drawing as PNG.
        call_kwargs.update(no_save_vis=True, pred_score_thr=args.score_thr)
    vis_dir = osp.join(args.out_dir, 'vis')
    os.makedirs(vis_dir, exist_ok=True)
    written, taken = [], set()
    # One image per call, so that drawings are not all held in memory.
    for image in images:
        if cfg.get('default_scope') == 'mmpretrain':
            drawing = classify(inferencer, image)
        else:
            drawing = inferencer(image, **call_kwargs)['visualization']  # RGB
        # DetInferencer returns a list; MMSegInferencer unwraps one image.
        if isinstance(drawing, list):
            drawing = drawing[0]
        out_file = osp.join(vis_dir, _png_name(image, taken))
        if not cv2.imwrite(out_file, drawing[..., ::-1]):
            raise OSError(f'could not write {out_file}')
        written.append(out_file)
    print(f'wrote {len(written)} image(s):')
    for path in written:
        print(f'  {path}')
    return written


if __name__ == '__main__':
    try:
        main()
    except (UsageError, *cli.USER_ERRORS) as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(1)
