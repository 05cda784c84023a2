"""Tasks: data generators for problems that need gradients to survive many steps.

``synthetic``  the adding problem, copy memory and remember-first (random sequences
               whose answer depends on something seen long before).

``TASKS[name]`` describes each task for ``tinybptt train``; ``make_batch(name, T, B, rng)``
draws a batch of any of them.
"""
from .synthetic import (ADDING_BASELINE_MSE, DISTRACTORS, SUBJECTS, TASKS, TaskInfo, adding_problem, copy_memory,
                        copy_memory_baseline, decode, make_batch, remember_first, remember_first_vocab)

__all__ = ["ADDING_BASELINE_MSE", "DISTRACTORS", "SUBJECTS", "TASKS", "TaskInfo", "adding_problem", "copy_memory",
           "copy_memory_baseline", "decode", "make_batch", "remember_first", "remember_first_vocab"]
