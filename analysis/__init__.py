"""Plateau's stagnation analysis: pure rules over per-epoch records that explain, with evidence,
why validation stopped improving and which spec change to try. No TensorFlow, database or HTTP."""

from analysis.diagnose import diagnose, remedy_by_id
from analysis.findings import Abstention, Diagnosis, Finding, Remedy
from analysis.patch import apply_patch
from analysis.records import JobContext
from analysis.rule import Params, Rule
from analysis.rules import RULES
from contract.epoch import EpochRecord

__all__ = [
    "RULES",
    "Abstention",
    "Diagnosis",
    "EpochRecord",
    "Finding",
    "JobContext",
    "Params",
    "Remedy",
    "Rule",
    "apply_patch",
    "diagnose",
    "remedy_by_id",
]
