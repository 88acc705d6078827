"""Drawing a model's predictions on images: ``tools/infer.py``.

The config's ``default_scope`` picks the inferencer and the drawing
(:mod:`emo_mm.codebases`): mmdet's ``DetInferencer`` (boxes, labels and
scores), mmseg's ``MMSegInferencer`` (a class-colour overlay), mmpretrain's
``ImageClassificationInferencer`` (top class and score, also printed).
"""
import os
import os.path as osp
from typing import Callable, List, Optional

from .codebases import get_codebase
from .config import load_config
from .errors import UserError
from .models import deploy as fold_batchnorms
from .utils import check_checkpoint

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')


def list_images(path: str) -> List[str]:
    """The image files named by ``path``: itself, or those in the folder.

    Raises:
        UserError: ``path`` does not exist, or is a folder without images.
    """
    if osp.isdir(path):
        images = sorted(
            osp.join(path, name) for name in os.listdir(path)
            if name.lower().endswith(IMG_EXTENSIONS)
            and osp.isfile(osp.join(path, name)))
        if not images:
            raise UserError(
                f'no images ({", ".join(IMG_EXTENSIONS)}) in folder {path}')
        return images
    if not osp.isfile(path):
        raise UserError(f'input {path} is neither a file nor a folder')
    return [path]


def build_inferencer(cfg, checkpoint: Optional[str], device: str = 'cpu'):
    """The inferencer of the config's codebase.

    Raises:
        UserError: The config's ``default_scope`` has no inferencer here.
    """
    codebase = get_codebase(cfg.get('default_scope'), 'tools/infer.py: config')
    return codebase.build_inferencer(cfg, checkpoint, device)


def _png_name(image_path: str, taken: set) -> str:
    """``<stem>.png``, or ``<stem>_<ext>.png`` if a sibling took that name."""
    stem, ext = osp.splitext(osp.basename(image_path))
    name = f'{stem}.png'
    if name in taken:
        name = f'{stem}_{ext.lstrip(".")}.png'
    taken.add(name)
    return name


def draw_predictions(
        config: str,
        checkpoint: str,
        inputs: str,
        out_dir: str = 'outputs',
        device: str = 'cpu',
        score_thr: float = 0.3,
        cfg_options: Optional[dict] = None,
        deploy: bool = True,
        report: Optional[Callable[[str], None]] = None) -> List[str]:
    """Predict on an image or a folder of images and save each drawing as
    ``out_dir/vis/<input name>.png``, whatever the input's format.

    Args:
        config (str): Config file; the backbone's ``init_cfg`` is ignored
            (the weights come from ``checkpoint``).
        checkpoint (str): Checkpoint file or URL.
        inputs (str): An image file or a folder of images.
        out_dir (str): Drawings go to ``out_dir/vis/``.
        device (str): e.g. 'cpu' or 'cuda:0'.
        score_thr (float): Detection: the lowest score of a drawn box.
        cfg_options (dict, optional): Config overrides.
        deploy (bool): Fold the BatchNorms first (same drawings, faster).
        report (callable, optional): Called with ``'<image>: <caption>'``
            where the prediction has one in words (classification: the top
            class and its score).

    Returns:
        list[str]: The written files.
    """
    import cv2
    images = list_images(inputs)  # fail fast, before the slow build
    check_checkpoint(checkpoint)
    cfg = load_config(config, cfg_options, inference=True)
    codebase = get_codebase(cfg.default_scope)
    inferencer = build_inferencer(cfg, checkpoint, device)
    if deploy:
        fold_batchnorms(inferencer.model)
    vis_dir = osp.join(out_dir, 'vis')
    os.makedirs(vis_dir, exist_ok=True)
    written, taken = [], set()
    # One image per call, so that drawings are not all held in memory.
    for image in images:
        drawing, caption = codebase.draw(inferencer, image, score_thr)
        if caption is not None and report is not None:
            report(f'{image}: {caption}')
        out_file = osp.join(vis_dir, _png_name(image, taken))
        if not cv2.imwrite(out_file, drawing[..., ::-1]):  # RGB -> BGR
            raise UserError(f'could not write {out_file}')
        written.append(out_file)
    return written
