"""`python -m lossjax` is the `lossjax` command."""
import sys

from lossjax.cli import main

sys.exit(main())
