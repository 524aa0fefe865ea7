"""Prints the ratios of the run's medians after the pytest-benchmark tables."""
from benchmarks.summary import rpc_lines


def pytest_terminal_summary(terminalreporter):
    lines = rpc_lines()
    if lines:
        terminalreporter.section("Isthmus ratios (server CPU per call, medians)")
        for line in lines:
            terminalreporter.write_line(line)
