"""Progress bars for the command line and the lab (tqdm when it is installed)."""
from __future__ import annotations

import sys


def progress_bar(total: int, unit: str):
    """A tqdm bar on stderr that disappears when closed, or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=sys.stderr, leave=False, unit=unit)
