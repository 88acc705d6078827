"""The demos: tools/demo.sh end to end for each task at a reduced length
(smoke table, data, training, test pictures, inference, the closing lines).
That each demo config is seeded, so that a rerun repeats the run:
tests/test_tools/test_train_test.py::test_rerun_repeats_the_run. The EMOv2
demos differ from the EMO ones only in the config and work dir the script
picks (test_demo_arguments_pick_the_config); test_train_test.py trains and
tests each EMOv2 demo config."""
import glob
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
from conftest import (BACKBONE_PARAMS, CLASSIFIER_PARAMS, PAPER_FLOPS_M,
                      REPO_ROOT, run_command)

# Per task: the config, data small enough for a test, the shortened schedule,
# the metric the test prints and the checkpoint the short run ends with.
DEMOS = {
    'det':
    dict(
        config='configs/demo/ssdlite_emo_1m_shapes.py',
        data_args='--num-train 8 --num-val 3',
        short=[
            'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
            'train_dataloader.batch_size=4'
        ],
        metric=r'coco/bbox_mAP_50: ([\d.]+)',
        work='demo_ssdlite',
        checkpoint='iter_2.pth',
        val_images='data/shapes_coco/val/*.png'),
    'seg':
    dict(
        config='configs/demo/deeplabv3_emo_1m_scenes.py',
        data_args='--num-train 6 --num-val 2',
        short=[
            'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
            'train_dataloader.batch_size=4'
        ],
        metric=r'mIoU: ([\d.]+)',
        work='demo_deeplabv3',
        checkpoint='iter_2.pth',
        val_images='data/scenes_ade20k/images/validation/*.jpg'),
    'cls':
    dict(
        config='configs/demo/emo_1m_shapes_cls.py',
        data_args='--num-train-per-class 4 --num-val-per-class 1',
        short=['train_cfg.max_epochs=1'],
        metric=r'accuracy/top1: ([\d.]+)',
        work='demo_cls',
        checkpoint='epoch_1.pth',
        val_images='data/shapes_imagenet/val/*.JPEG'),
}


def check_smoke_table(out):
    """tools/smoke.py's rows: parameter counts, FLOPs near the paper's, five
    feature maps of the right strides, and the authors' layout loaded."""
    for arch, backbone in BACKBONE_PARAMS.items():
        classifier = CLASSIFIER_PARAMS[arch]
        row = next(line for line in out.splitlines()
                   if line.startswith(arch + ' '))
        fields = row.split()
        assert fields[1] == f'{backbone / 1e6:.3f}M', row
        assert fields[2] == f'{classifier / 1e6:.3f}M', row
        assert float(fields[3][:-1]) == pytest.approx(
            PAPER_FLOPS_M[arch], rel=0.002)
        shapes = re.findall(r'\((\d+), (\d+), (\d+)\)', row)
        assert [(int(h), int(w)) for _, h, w in shapes] == [(112, 112),
                                                            (56, 56), (28, 28),
                                                            (14, 14), (7, 7)]
        assert f'-> EMO-{arch.upper()}: max |diff| 0.0e+00 OK' in out


def check_pictures(task, pictures, images):
    """What each task's test pictures must be to be read by a person."""
    assert len(pictures) == len(images) > 0
    for picture, image in zip(pictures, images):
        drawn, source = cv2.imread(picture), cv2.imread(image)
        assert drawn is not None and drawn.std() > 1, picture
        height, width = source.shape[:2]
        if task == 'det':  # ground truth | prediction, at the image's size
            assert drawn.shape[:2] == (height, 2 * width), picture
        elif task == 'seg':  # enlarged panels and a legend strip below
            factor = -(-360 // min(height, width))
            assert drawn.shape[1] == 2 * factor * width, picture
            assert drawn.shape[0] > factor * height + 40, picture
            legend = drawn[factor * height:]
            assert (legend == 255).all(-1).mean() > 0.5  # a white strip
        else:  # the 64 px image drawn on a copy enlarged to 256
            assert min(drawn.shape[:2]) >= 256, (picture, drawn.shape)


@pytest.mark.parametrize('task', sorted(DEMOS))
def test_demo_script_runs_end_to_end(task, tmp_path):
    """tools/demo.sh TASK, shortened: smoke check, data, training,
    test with pictures and inference, written under EMO_MM_DEMO_DIR; it ends
    saying where the pictures are and what they show. The smoke check
    (every variant, the same in every demo) runs in the first demo only;
    EMO_MM_DEMO_SMOKE=0 leaves it out of the others. 30-65 s each: the
    script's four or five processes (smoke, data, train, test, infer) are
    what a user runs."""
    demo = DEMOS[task]
    smoke = task == 'det'
    env = dict(
        os.environ,
        EMO_MM_DEMO_DIR=str(tmp_path),
        EMO_MM_DEMO_DATA_ARGS=demo['data_args'],
        EMO_MM_DEMO_SMOKE=str(int(smoke)))
    out = run_command([
        'bash', 'tools/demo.sh', task, '--cfg-options', *demo['short'],
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False'
    ],
                      env=env,
                      timeout=900).stdout
    if smoke:
        check_smoke_table(out)
    else:
        assert '-> EMO-1M' not in out and 'max |diff|' not in out
    assert np.isfinite(float(re.findall(demo['metric'], out)[-1]))
    work, = glob.glob(str(tmp_path / 'work_dirs' / demo['work'] / '*'))
    assert osp.isfile(osp.join(work, demo['checkpoint']))
    dumped = glob.glob(osp.join(work, '*.py'))  # the runner's config dump
    assert dumped, work
    with open(dumped[0]) as f:
        assert "type='EMO'" in f.read()
    assert not osp.exists(
        osp.join(REPO_ROOT, 'work_dirs', demo['work'], osp.basename(work)))

    images = sorted(glob.glob(str(tmp_path / demo['val_images'])))
    pictures = sorted(
        glob.glob(osp.join(work, 'test_vis', '**', '*.png'), recursive=True))
    check_pictures(task, pictures, images)
    inferred, = glob.glob(osp.join(work, 'infer', 'vis', '*.png'))
    assert min(
        cv2.imread(inferred).shape[:2]) >= (256 if task == 'cls' else 100)

    lines = out.splitlines()
    assert any(
        re.fullmatch(
            r'demo: trained in \d+ min \d+ s; checkpoint ' + re.escape(work) +
            r'/\S+\.pth', line) for line in lines)
    shows = next(
        line for line in lines
        if line.startswith(f'demo: pictures in {work}/test_vis/: '))
    assert {
        'det': 'the boxes scoring >= 0.3',
        'seg': 'legend of the nine '
        'classes',
        'cls': 'true and predicted class'
    }[task] in shows
    assert f'demo: and {work}/infer/vis/: tools/infer.py on ' in out


@pytest.mark.parametrize('args,config,work', [
    ([], 'ssdlite_emo_1m_shapes.py', 'demo_ssdlite'),
    (['emov2'], 'ssdlite_emov2_1m_shapes.py', 'demo_ssdlite_emov2'),
    (['det', 'emov2'], 'ssdlite_emov2_1m_shapes.py', 'demo_ssdlite_emov2'),
    (['seg'], 'deeplabv3_emo_1m_scenes.py', 'demo_deeplabv3'),
    (['cls', 'emov2'], 'emov2_1m_shapes_cls.py', 'demo_cls_emov2'),
])
def test_demo_arguments_pick_the_config(args, config, work, tmp_path):
    """What the README shows is what tools/demo.sh accepts: each form
    trains its config into its own work dir. The script runs with a
    stand-in python that records the training command and stops there."""
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    # bootstrap.sh returns at once for an environment stamped as current
    # (its stamp_of).
    stamp = run_command([
        'bash', '-c', 'cat tools/bootstrap.sh setup.py '
        'requirements/*.txt | sha256sum | cut -d" " -f1'
    ])
    (venv / '.emo_mm_stamp').write_text(stamp.stdout)
    calls = tmp_path / 'calls.txt'
    python = venv / 'bin' / 'python'
    python.write_text('#!/bin/sh\n'
                      f'echo "$@" >> {calls}\n'
                      'case "$1" in tools/train.py) exit 3;; esac\n')
    python.chmod(0o755)
    env = dict(
        os.environ,
        EMO_MM_VENV=str(venv),
        EMO_MM_DEMO_DIR=str(tmp_path),
        EMO_MM_DEMO_SMOKE='0')
    result = run_command(['bash', 'tools/demo.sh', *args],
                         env=env,
                         check=False)
    assert result.returncode == 3, result.stdout
    train = calls.read_text().splitlines()[-1].split()
    assert train[:2] == ['tools/train.py', f'configs/demo/{config}']
    work_dir = train[train.index('--work-dir') + 1]
    assert osp.dirname(work_dir) == str(tmp_path / 'work_dirs' / work)


def test_demo_refuses_an_unknown_task(tmp_path):
    env = dict(os.environ, EMO_MM_DEMO_DIR=str(tmp_path))
    result = run_command(['bash', 'tools/demo.sh', 'emo2'],
                         env=env,
                         check=False)
    assert result.returncode == 2
    assert result.stdout.strip() == (
        "error: unknown demo 'emo2'; expected 'det', 'seg' or 'cls', "
        "then optionally 'emov2'")
    assert not (tmp_path / 'work_dirs').exists()
