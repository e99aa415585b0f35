"""The data-efficiency study: transfer vs classical vs scratch across label budgets and seeds."""
from .compare import StudyConfig, compare

__all__ = ["StudyConfig", "compare"]
