"""Connectors: one module per kind of external system, behind the small contract in ``base``.

Connectors register in the ``conveyor.connectors`` entry-point group; ``registry.load`` finds them
by short name or ``module:Class`` path.
"""
