"""`python -m ogrt.report REPORT ...` — the same as `ogrt report REPORT ...`."""
import sys

from ogrt.report.cli import main

sys.exit(main())
