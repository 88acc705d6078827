"""The one driver of re-parameterisation, for every tool that runs a model
for inference (test, infer, benchmark, export)."""
import torch.nn as nn


def deploy(model: nn.Module) -> int:
    """Fold BatchNorms in every module that can (EMO; EMOv2, whose
    LayerScales fold too; mmpretrain's RepVGG, MobileOne...) through its
    ``switch_to_deploy``; returns how many modules had one.

    The outputs stay the same up to float rounding; the model is then for
    inference only (its layout changed: save checkpoints before, not after).
    """
    # Listed first: folding replaces submodules.
    modules = [m for m in model.modules() if hasattr(m, 'switch_to_deploy')]
    for module in modules:
        module.switch_to_deploy()
    return len(modules)
