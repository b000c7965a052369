"""Contract suites for each port, written once and run against every backend."""
