"""Knowledge distillation: a fitted teacher run -> a smaller student run on the same task (soft targets of the
teacher, computed once, mixed with the hard labels; optional feature matching; unlabelled data join the transfer
set). The student is an ordinary run: ``transferkit predict / evaluate / export`` and ``--backbone run:`` load it."""
from .api import DISTILL_KIND, DistillResult, distill
from .config import DistillConfig

__all__ = ["DISTILL_KIND", "DistillConfig", "DistillResult", "distill"]
