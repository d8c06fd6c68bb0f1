"""Benchmarks on the fakes. They print figures and write a report; they never gate CI."""
