from .distributed import (CPUDistributedDataParallel, GlooSyncBatchNorm,
                          init_cpu_process_group, use_cpu_ddp)
from .hooks import RandomStateHook

__all__ = ['CPUDistributedDataParallel', 'GlooSyncBatchNorm',
           'RandomStateHook', 'init_cpu_process_group', 'use_cpu_ddp']
