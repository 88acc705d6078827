from .distributed import (CPUDistributedDataParallel, GlooSyncBatchNorm,
                          init_cpu_process_group, use_cpu_ddp)
from .hooks import RandomStateHook
from .schedulers import TimmCosineLR

__all__ = ['CPUDistributedDataParallel', 'GlooSyncBatchNorm',
           'RandomStateHook', 'TimmCosineLR', 'init_cpu_process_group',
           'use_cpu_ddp']
