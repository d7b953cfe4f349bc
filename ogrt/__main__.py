"""`python -m ogrt` is the `ogrt` command."""
import sys

from ogrt.cli import main

sys.exit(main())
