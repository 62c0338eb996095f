"""`python -m ptreplay`: the same as the `ptreplay` command."""
import sys

from ptreplay.pipeline.cli import main

sys.exit(main())
