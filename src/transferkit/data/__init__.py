"""Data: loaders for folders, tables and arrays; splits; label maps; image decoding."""
from .dataset import Dataset
from .labels import LabelMap
from .loaders import Columns, from_arrays, load_path
from .splits import per_class_budget, stratified_split

__all__ = ["Dataset", "LabelMap", "Columns", "from_arrays", "load_path", "per_class_budget", "stratified_split"]
