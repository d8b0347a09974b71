"""A warehouse system ``wh`` that drops GBK CSV files with Chinese headers, for the file-drop
tests: its mapping, a project holding it, and files of moves (some of them bad on purpose)."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

WH_MAPPING = """\
system: wh
description: warehouse that drops GBK CSV files (Chinese headers)
timezone: Asia/Shanghai
messages:
  stock_transfer:
    in:
      key: {key}
      occurred_at: {{column: 完成时间, parse: {{date: "%Y-%m-%d %H:%M:%S"}}}}
      fields:
        material:
          {{column: 物料编码, lookup: {{table: materials, from: wms_sku, to: material}}}}
        from_location:
          {{column: 源库位, lookup: {{table: locations, from: wms_location, to: location}}}}
        to_location:
          {{column: 目标库位, lookup: {{table: locations, from: wms_location, to: location}}}}
        lot: {{column: 批次, default: ""}}
        quantity: {{column: 数量, parse: decimal}}
        uom: {{column: 单位}}
      convert_to_base: true
    out:
      document:
        任务号: {{path: key}}
        物料编码:
          {{path: payload.material, lookup: {{table: materials, from: material, to: wms_sku}}}}
        数量: {{path: payload.quantity, format: text}}
        源库位:
          path: payload.from_location
          lookup: {{table: locations, from: location, to: wms_location}}
        目标库位:
          path: payload.to_location
          lookup: {{table: locations, from: location, to: wms_location}}
"""
HEADER = ["任务号", "物料编码", "源库位", "目标库位", "批次", "数量", "单位", "完成时间"]


def write_project(root: Path, settings: dict[str, Any], *, key: str = "{column: 任务号}") -> Path:
    """A project at ``root`` with the shipped master data and a ``wh`` file-drop system."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mappings").mkdir(exist_ok=True)
    (root / "mappings" / "wh.yaml").write_text(WH_MAPPING.format(key=key), encoding="utf-8")
    shutil.copytree(REPO / "master_data", root / "master_data", dirs_exist_ok=True)
    config = {
        "systems": {
            "wh": {"connector": "files", "settings": settings},
            "sap": {"connector": "fake"},
        },
        "routes": [{"type": "stock_transfer", "source": "wh", "targets": ["sap"]}],
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    return root


def move_rows(count: int, bad: Iterable[int] = (), prefix: str = "T") -> list[list[str]]:
    """``count`` moves of 0.5 kg granulate from the raw store to the molding line; the rows
    numbered in ``bad`` (1-based) name an unknown SKU."""
    wrong = set(bad)
    return [
        [
            f"{prefix}{n:07d}",
            "SKU-UNKNOWN" if n in wrong else "SKU-1001",
            "WH1-RM",
            "WH1-L1",
            "L2611-07",
            "0.5",
            "千克",
            "2026-11-21 08:00:00",
        ]
        for n in range(1, count + 1)
    ]


def write_moves(path: Path, rows: list[list[str]], encoding: str = "gbk") -> Path:
    """A CSV of moves with the Chinese header, in ``encoding``."""
    with open(path, "w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path
