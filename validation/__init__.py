"""Great Expectations suites and custom expectations, quarantine, steward reports, reconciliation."""
