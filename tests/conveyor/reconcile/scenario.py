"""The seeded reconciliation scenario (tests/data/reconcile/README.md): a plant project with the
shipped mappings and master data, its snapshot files, and the hub's movements."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import and_, not_, update

from conveyor.ledger import Ledger
from conveyor.ledger.models import DeliveryRow, MessageRow
from conveyor.messages import new_message

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data" / "reconcile"

CONVEYOR_YAML = """\
systems:
  sap: {connector: fake, role: erp, tracks_lots: false}
  wms: {connector: fake, role: wms}
  mes: {connector: fake, role: mes}
routes:
  - type: [stock_adjustment, production_output, material_consumption]
    source: mes
    targets: [sap, wms]
  - type: stock_alert
    targets: [sap]
reconciliation:
  tolerance:
    groups: {raw: {relative: 1%}}
"""

EXPECTED = {
    "lines": 12,
    "matched": 5,
    "exact": 3,
    "within_tolerance": 2,
    "quantity_mismatch": 4,
    "missing": {"sap": 1, "wms": 1, "hub": 1},
    "missing_lines": 3,
    "accuracy_pct": 41.67,
    "variance_value": "7999.7",
    "explained_in_transit": 1,
    "unmapped": 2,
}
"""The seeded scenario's counts (tests/data/reconcile/README.md explains each line)."""


def make_plant(root: Path, snapshot_time: datetime) -> Path:
    """A project folder with copies of the shipped mappings and master data, the scenario's
    config and its snapshot files (dated ``snapshot_time``) under ``files/``."""
    root.mkdir(parents=True)
    shutil.copytree(REPO / "mappings", root / "mappings")
    shutil.copytree(REPO / "master_data", root / "master_data")
    (root / "conveyor.yaml").write_text(CONVEYOR_YAML, encoding="utf-8")
    files = root / "files"
    files.mkdir()
    stamp = snapshot_time.astimezone(UTC)
    sap = (DATA / "sap_mard.csv").read_text(encoding="utf-8")
    (files / "sap_mard.csv").write_text(
        sap.replace("20261121", stamp.strftime("%Y%m%d")), encoding="utf-8"
    )
    wms = json.loads((DATA / "wms_snapshot.json").read_text(encoding="utf-8"))
    wms["payload"]["as_of"] = wms["occurred_at"] = stamp.isoformat()
    (files / "wms_snapshot.json").write_text(
        json.dumps(wms, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return root


def seed_hub(ledger: Ledger) -> None:
    """Accept the scenario's movements (stock adjustments from the MES, routed to sap and wms)
    and mark every delivery delivered except the one still in transit."""
    messages = []
    pending: list[tuple[str, str]] = []
    for line in (DATA / "hub_movements.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        key = row.pop("key")
        target = row.pop("pending_for", None)
        if target:
            pending.append((key, target))
        messages.append(
            new_message("stock_adjustment", "mes", key, {**row, "reason": "cycle_count"})
        )
    results = ledger.accept_batch(messages)
    assert [r.status for r in results] == ["accepted"] * len(messages)
    deliveries = DeliveryRow.__table__
    messages_t = MessageRow.__table__
    now = datetime.now(UTC)
    with ledger.engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(
                not_(
                    and_(
                        deliveries.c.target == pending[0][1],
                        deliveries.c.message_pk.in_(
                            messages_t.select()
                            .with_only_columns(messages_t.c.id)
                            .where(messages_t.c.key == pending[0][0])
                            .scalar_subquery()
                        ),
                    )
                )
            )
            .values(status="delivered", delivered_at=now, updated_at=now, attempts=1)
        )
