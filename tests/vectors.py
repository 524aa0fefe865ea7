"""The captured Serf packets in ../shared/vectors/serf (beside the repo, as in CI)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERF_VECTORS = ROOT.parent / "shared" / "vectors" / "serf"


def vector_hex(name: str) -> bytes:
    """The bytes of `<name>.hex` (one line of hex)."""
    return bytes.fromhex((SERF_VECTORS / f"{name}.hex").read_text().split()[0])
