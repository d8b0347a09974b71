"""The mapping layer: master-data crosswalks (``master_data/*.csv``) and declarative mapping files
(``mappings/<system>.yaml``) that turn external records into canonical messages and back.

``MappingEngine.load(project)`` reads and checks everything once; ``map_inbound``,
``map_outbound`` and ``map_snapshot_row`` map records; ``conveyor.mapping.ingest`` parks what
cannot be mapped and ``conveyor.mapping.replay`` maps it again once the master data is fixed.
"""

from __future__ import annotations

from conveyor.mapping.engine import MappedRow, MappingEngine

__all__ = ["MappedRow", "MappingEngine"]
