"""The campaign state machine: its statuses, the steps between them and who takes each.
Standard library only.

    IMPORTING -> RUNNING (or SCHEDULED until ``start_at``) -> COMPLETED
    IMPORTING -> FAILED (the CSV could not be imported)
    RUNNING / SCHEDULED -> PAUSED (the customer, or the dialer when the balance cannot pay the
                           next attempt) -> RUNNING / SCHEDULED (resume)
    any active status -> CANCELLED (the customer)

Every SQL writer of a campaign's status takes its allowed sources from ``CampaignStep.sources``
(a conditional UPDATE), so racing requests and the dialer can never move a campaign twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class CampaignStatus(str, Enum):
    IMPORTING = "IMPORTING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in FINAL


ACTIVE = (CampaignStatus.IMPORTING, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED)
FINAL = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED})

# why a campaign is paused
PAUSED_BY_USER = "PAUSED_BY_USER"
INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"


@dataclass(frozen=True)
class CampaignTransition:
    sources: tuple[CampaignStatus, ...]
    targets: tuple[CampaignStatus, ...]
    by: str

    def values(self) -> list[str]:
        return sorted(s.value for s in self.sources)


class CampaignStep(str, Enum):
    IMPORTED = "imported"
    IMPORT_FAILED = "import_failed"
    START = "start"
    PAUSE = "pause"
    PAUSE_UNPAID = "pause_unpaid"
    RESUME = "resume"
    CANCEL = "cancel"
    COMPLETE = "complete"

    @property
    def rule(self) -> CampaignTransition:
        return CAMPAIGN_STEPS[self]

    @property
    def sources(self) -> list[str]:
        return CAMPAIGN_STEPS[self].values()


_I, _S, _R, _P = CampaignStatus.IMPORTING, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED

CAMPAIGN_STEPS: dict[CampaignStep, CampaignTransition] = {
    CampaignStep.IMPORTED: CampaignTransition((_I,), (_R, _S), "the import job"),
    CampaignStep.IMPORT_FAILED: CampaignTransition((_I,), (CampaignStatus.FAILED,), "the import job"),
    CampaignStep.START: CampaignTransition((_S,), (_R,), "the dialer, at start_at"),
    CampaignStep.PAUSE: CampaignTransition((_R, _S), (_P,), "the customer"),
    CampaignStep.PAUSE_UNPAID: CampaignTransition((_R,), (_P,), "the dialer, when the balance cannot pay"),
    CampaignStep.RESUME: CampaignTransition((_P,), (_R, _S), "the customer"),
    CampaignStep.CANCEL: CampaignTransition(ACTIVE, (CampaignStatus.CANCELLED,), "the customer"),
    CampaignStep.COMPLETE: CampaignTransition((_R,), (CampaignStatus.COMPLETED,),
                                              "the dialer, when no call is left to dial or in progress"),
}


def campaign_steps_into(target: CampaignStatus) -> list[CampaignStep]:
    return [step for step, rule in CAMPAIGN_STEPS.items() if target in rule.targets]
