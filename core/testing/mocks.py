"""Mocked functions: a test replaces a workflow's function by replies it gives in order."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Mapping

from ..hookspecs import hookimpl
from ..isolates.protocol import ActionRequest, ErrorReply, Response
from ..isolates.runner import Runner, RunnerHost
from .cases import Reply

MOCK_TYPE = "isolde-mock"


class MockTable:
    """The replies of one test's mocked functions, and the inputs they were called with."""

    def __init__(self, mocks: Mapping[str, list[Reply]]) -> None:
        self._replies = {fid: list(replies) for fid, replies in mocks.items()}
        self.calls: dict[str, list[Any]] = {fid: [] for fid in mocks}
        self._lock = threading.Lock()

    def next(self, fid: str, input: Any) -> Reply:
        with self._lock:
            self.calls.setdefault(fid, []).append(input)
            replies = self._replies.get(fid) or [Reply(value=None)]
            # the last reply repeats: a single mock answers every call
            return replies.pop(0) if len(replies) > 1 else replies[0]


class MockPlugin:
    """An isolde plugin (given to ``Engine(plugins=[...])``) serving mocked functions."""

    __name__ = "isolde-test-mocks"

    def __init__(self, table: MockTable) -> None:
        self.table = table
        table_ = table

        class MockRunner(Runner):
            types = (MOCK_TYPE,)
            uses_folder = False

            def __init__(self, host: RunnerHost, function: Mapping[str, Any], base_dir: Path) -> None:
                super().__init__(host, function, base_dir)

            @classmethod
            def key(cls, function: Mapping[str, Any], base_dir: Path) -> str:
                return f"{MOCK_TYPE}:{function.get('id')}"

            def describe(self) -> str:
                return f"mocked function '{self.function.get('id')}'"

            def call(self, request: ActionRequest) -> Response:
                reply = table_.next(str(self.function.get("id")), request.input)
                if reply.error is not None:
                    raise ErrorReply(*reply.error)
                return Response.of(reply.value)

        self.runner = MockRunner

    @hookimpl
    def isolde_declarations(self) -> str:
        return f'function {MOCK_TYPE} "A function a workflow test replaced by mocked replies." {{ }}'

    @hookimpl
    def isolde_isolate_runners(self) -> list[type[Runner]]:
        return [self.runner]


__all__ = ["MOCK_TYPE", "MockPlugin", "MockTable"]
