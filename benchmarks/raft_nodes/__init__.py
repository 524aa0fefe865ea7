"""Raft node processes driven by benchmarks/bench_raft.py, one module per implementation.

Every node is started as
  python -m benchmarks.raft_nodes.<module> --name NAME --self 127.0.0.1:RAFT_PORT
      --peers 127.0.0.1:P2,127.0.0.1:P3 --control CONTROL_PORT --data-dir DIR [--fsync 1|0]
and answers the JSON-lines protocol of `control.py` on 127.0.0.1:CONTROL_PORT.
"""
