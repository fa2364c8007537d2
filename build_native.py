#!/usr/bin/env python3
"""Build libllama (and ggml) from upstream llama.cpp for one backend: `python build_native.py --help`."""

import sys

from nativebuild.cli import main

if __name__ == "__main__":
    sys.exit(main())
