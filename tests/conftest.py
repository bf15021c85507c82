"""Puts the layers' packages and the infra packages on the path, as Lambda's /opt/python would."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in [ROOT / "infra", *sorted((ROOT / "layers").glob("*/python")), ROOT]:
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
