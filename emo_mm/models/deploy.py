"""The one driver of re-parameterisation, for every tool that runs a model
for inference (test, infer, benchmark, export)."""
import torch.nn as nn


def deploy(model: nn.Module) -> int:
    """Fold BatchNorms through ``switch_to_deploy`` (EMO; EMOv2, whose
    LayerScales fold too; mmpretrain's RepVGG, MobileOne...); returns how
    many modules folded.

    Each module that has the method is called once, and its submodules are
    left to it (a backbone's ``switch_to_deploy`` folds its own blocks). The
    outputs stay the same up to float rounding; the model is then for
    inference only (its layout changed: save checkpoints before, not after).
    """
    if hasattr(model, 'switch_to_deploy'):
        model.switch_to_deploy()
        return 1
    # Listed first: folding replaces submodules.
    return sum(deploy(child) for child in list(model.children()))
