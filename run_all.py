#!/usr/bin/env python
"""Evaluate a model on shakti-eval suites; see README.md.  All logic lives in harness/."""
import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
