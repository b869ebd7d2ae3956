"""``python -m benchmarks``: the scale suite (see :mod:`benchmarks.scale` for the options)."""

from benchmarks.scale import main

raise SystemExit(main())
