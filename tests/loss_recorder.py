"""A test-only hook: the training loss of every iteration averaged over all
processes, appended to a file by rank 0 (mmengine logs rank 0's own loss)."""
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class LossRecorderHook(Hook):

    def __init__(self, path: str):
        self.path = path

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        loss = outputs['loss'].detach().clone().double()
        if dist.is_initialized():
            dist.all_reduce(loss)
            loss /= dist.get_world_size()
        if not dist.is_initialized() or dist.get_rank() == 0:
            with open(self.path, 'a') as f:
                f.write(f'{loss.item():.10f}\n')
