"""The command line of the ``tools/misc/make_demo_*.py`` scripts, shared."""
import argparse
import os
import os.path as osp
import time

from ..errors import UserError


def check_output_folder(root: str, force: bool) -> None:
    """Refuse to write a generated data set into a folder holding files.

    Raises:
        UserError: ``root`` is a file, or holds files (at any depth) and
            ``force`` is not set.
    """
    if osp.exists(root) and not osp.isdir(root):
        raise UserError(f'{root} exists and is not a folder')
    if not force and osp.isdir(root):
        for _, _, files in os.walk(root):
            if files:
                raise UserError(
                    f'{root} already contains files; refusing to overwrite '
                    'them. Choose another folder or pass --force.')


def demo_data_main(description: str,
                   make,
                   counts: dict,
                   report=None,
                   argv=None) -> None:
    """The command line shared by the ``tools/misc/make_demo_*.py`` scripts.

    Parses ``ROOT [--<count> N ...] [--seed S] [--force]``, refuses a ROOT
    holding files unless ``--force``, calls ``make(root, seed=S, **counts)``
    and prints what it wrote, then ``report(args, result)`` if given.

    Args:
        description (str): The parser's description; its first line is
            used (a tool passes its ``__doc__``).
        make (callable): The data set generator.
        counts (dict): ``make``'s size arguments and their defaults, e.g.
            ``dict(num_train=400)`` (option ``--num-train``).
        report (callable, optional): Prints a summary of ``make``'s result.
        argv (list[str] | None): Arguments; None reads ``sys.argv``.

    Raises:
        UserError: ROOT is refused (see :func:`check_output_folder`).
    """
    parser = argparse.ArgumentParser(
        description=description.strip().split('\n')[0])
    parser.add_argument('root', help='output folder')
    for name, default in counts.items():
        parser.add_argument(
            '--' + name.replace('_', '-'), type=int, default=default)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--force',
        action='store_true',
        help='write into ROOT even if it already holds files (files of the '
        'same names are overwritten, others are kept)')
    args = parser.parse_args(argv)
    check_output_folder(args.root, args.force)
    start = time.perf_counter()
    result = make(
        args.root,
        seed=args.seed,
        **{name: getattr(args, name)
           for name in counts})
    print(f'wrote {args.root} in {time.perf_counter() - start:.1f} s '
          f'(seed {args.seed})')
    if report is not None:
        report(args, result)
