#!/usr/bin/env python
"""The Shapes-64 benchmark (``doodl-pl benchmark``): every method on the four applications,
tuned on the tune split, scored against ground truth. See ``doodl_pl.shapes64.harness``.

    .venv/bin/python scripts/benchmark_shapes64.py --help
"""

from doodl_pl.shapes64.harness import main

if __name__ == "__main__":
    main()
