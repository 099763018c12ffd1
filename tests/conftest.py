"""Shared fixtures: small generated scenes, the shared real data folder."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
