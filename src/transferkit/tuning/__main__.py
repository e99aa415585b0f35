"""``python -m transferkit.tuning SPEC INDEX``: one worker process of ``transferkit tune --workers K``."""
from __future__ import annotations

import sys

from .worker import main

sys.exit(main())
