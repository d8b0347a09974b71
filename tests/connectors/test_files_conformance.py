"""The conformance suite on the send side of the ``files`` connector. The target is a folder: a
posting is a file written there, a lost answer is a crash after the file got its name, and a
transient failure is a folder that cannot be written for a moment (a share gone away). A folder
has no business refusals of its own: the harness refuses chosen keys as an importing target's
validation would, so the parking path is exercised too."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from connectors.files import FilesConnector
from conveyor.connector import SendResult
from conveyor.errors import AmbiguousDeliveryError, RejectedError
from conveyor.testing.conformance import Harness, conformance_tests


class FolderHarness(Harness):
    """A staging folder, and a connector writing into it that can be made to misbehave."""

    rejection_text = "refused by the import check"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.outbox = tmp_path / "staging"
        self.reject: set[str] = set()
        self.drop_answer: set[str] = set()
        self.fail_first = 0

    def connector(self) -> FilesConnector:
        harness = self

        class Folder(FilesConnector):
            def send(
                self,
                document: Mapping[str, Any],
                *,
                message_type: str,
                key: str,
                idempotency_key: str | None = None,
            ) -> SendResult:
                if key in harness.reject:
                    raise RejectedError(f"{key}: {harness.rejection_text}")
                if harness.fail_first > 0:
                    harness.fail_first -= 1
                    self.writer.folder = harness.tmp_path / "gone" / "away"
                    (harness.tmp_path / "gone").write_text("not a folder")
                    try:
                        return super().send(document, message_type=message_type, key=key)
                    finally:
                        self.writer.folder = harness.outbox
                        (harness.tmp_path / "gone").unlink()
                result = super().send(document, message_type=message_type, key=key)
                if key in harness.drop_answer:
                    harness.drop_answer.discard(key)
                    raise AmbiguousDeliveryError(f"{key}: written, then the process died")
                return result

        return Folder(self.system, {"outbox": str(self.outbox), "encoding": "gbk"})

    def misbehave(
        self,
        *,
        reject: Collection[str] = (),
        fail_first: int = 0,
        drop_answer: Collection[str] = (),
        echo_secrets: bool = False,
    ) -> None:
        self.reject |= set(reject)
        self.fail_first += fail_first
        self.drop_answer |= set(drop_answer)

    def posts(self, key: str) -> int:
        connector = FilesConnector(self.system, {"outbox": str(self.outbox)})
        stem = connector.writer.name_for(self.message_type, key).removesuffix(".csv")
        if not self.outbox.is_dir():
            return 0
        return sum(
            1
            for path in self.outbox.glob("*.csv")
            if path.stem == stem or path.stem.startswith(stem + "_")
        )


TestFolderConformance = conformance_tests(FolderHarness)


def test_the_suite_runs_on_the_send_side_the_connector_declares() -> None:
    declared = FilesConnector.capabilities
    assert {"send", "lookup", "receive"} <= declared
    suite = [name for name in dir(TestFolderConformance) if name.startswith("test_")]
    assert any("lookup" in name for name in suite)
    assert len(suite) >= 6
