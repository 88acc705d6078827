"""Counting (parameters, FLOPs, the paper's numbers) and timing EMO models."""
from .complexity import (PAPER, TensorMode, all_configs, analyze_config, count,
                         count_backbone, describe, paper_numbers)

__all__ = [
    'PAPER', 'TensorMode', 'all_configs', 'analyze_config', 'count',
    'count_backbone', 'describe', 'paper_numbers'
]
