"""The test suite (a regular package, so that a top-level ``tests`` another distribution installs -- acnportal
ships one -- cannot shadow ``tests.builders``)."""
