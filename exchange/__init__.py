"""Packages, PKI, receipts, ledger, checkpoints, the pipeline steps and the ``lienthong`` command line."""
