"""Prints the ratios of the run's medians after the pytest-benchmark tables."""
from benchmarks.summary import gossip_lines, rpc_lines


def pytest_terminal_summary(terminalreporter):
    from benchmarks.bench_area_tree import area_lines
    from benchmarks.bench_dns import dns_lines
    from benchmarks.bench_federation import federation_lines
    from benchmarks.bench_http import http_lines
    from benchmarks.bench_raft import raft_lines
    for title, lines in (("Isthmus ratios (server CPU per call, medians)", rpc_lines()),
                         ("Isthmus vs serf agents (medians)", gossip_lines()),
                         ("Isthmus Raft vs pysyncobj 0.3.17 (3 nodes, medians)", raft_lines()),
                         ("Isthmus HTTP vs bare aiohttp (medians)", http_lines()),
                         ("Isthmus DNS vs bare dnspython responder (medians)", dns_lines()),
                         ("Federation: forwarded reads and area convergence (medians)",
                          federation_lines()),
                         ("Network areas: tree of DCs (virtual s, medians)", area_lines())):
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)
