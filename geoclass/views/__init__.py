"""Lazy views shared by the steps: a tile's sources, its cube and features, its maps. Built
from the run store's outputs or straight from the inputs (for notebooks); nothing is
computed until a step (or a user) asks."""
