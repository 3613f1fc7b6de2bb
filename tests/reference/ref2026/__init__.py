"""Float64 transcriptions of the 2026 optimizers' reference code (see README.md beside the
generator); one module per optimizer, the shared arithmetic in common.py."""
