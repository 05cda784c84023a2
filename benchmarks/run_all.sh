#!/bin/sh
# Re-run every benchmark section and rewrite benchmarks/RESULTS.md (about 20 minutes on the
# 2-core development machine).  Arguments are passed on: --quick, --only SECTIONS, --assemble-only.
cd "$(dirname "$0")/.." && exec python benchmarks/run_all.py "$@"
