"""`python -m ptreplay`: the same as the `ptreplay` command."""
from ptreplay.pipeline.cli import run

run()
