from .distributed import (CPUDistributedDataParallel, GlooSyncBatchNorm,
                          init_cpu_process_group, use_cpu_ddp)
from .hooks import AuthorsCheckpointHook, DeployHook, RandomStateHook
from .runner import ToolRunner, build_runner
from .schedulers import TimmCosineLR

__all__ = [
    'AuthorsCheckpointHook', 'CPUDistributedDataParallel', 'DeployHook',
    'GlooSyncBatchNorm', 'RandomStateHook', 'TimmCosineLR', 'ToolRunner',
    'build_runner', 'init_cpu_process_group', 'use_cpu_ddp'
]
