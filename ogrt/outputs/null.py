"""`null` output: discards every record (counts them). For benchmarks and dry runs."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ogrt.outputs import options as opt
from ogrt.outputs.base import Output


class NullOutput(Output):
    type_name = "null"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.discarded = 0

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        return opt.check(name, options, {})

    def open(self) -> None:
        pass

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        self.discarded += len(records)
