"""What the polling-station officer reads: one message in Bahasa Indonesia and English.

One class for the reader's refusals, the kit daemon's screen and the firmware's screens (a small display, a
screen file for a touch page, the simulated controls). The texts themselves are in the kit's catalogue
(tpskit.edge.texts); this is the value they produce, so the firmware can show it without importing the kit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: info: nothing to do; action: the officer must do something; error: call the technician.
Level = Literal["info", "action", "error"]


@dataclass(frozen=True)
class OfficerMessage:
    """`key` names the catalogue entry (a touch page lays itself out by it); `id` is the Bahasa Indonesia
    text, `en` the English one."""

    key: str
    id: str
    en: str
    level: Level = "info"

    @property
    def text(self) -> str:
        """Both languages, Bahasa Indonesia first, as a one-screen display shows them."""
        return f"{self.id}\n{self.en}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "id": self.id, "en": self.en, "level": self.level, "text": self.text}
