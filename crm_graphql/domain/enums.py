from enum import StrEnum


class LeadSource(StrEnum):
    SCANNER = "SCANNER"
    PARTNER = "PARTNER"
    MANUAL = "MANUAL"


class LeadStage(StrEnum):
    NEW = "NEW"
    CONTACTED = "CONTACTED"
    QUALIFIED = "QUALIFIED"
    TRANSFERRED = "TRANSFERRED"
    LOST = "LOST"


class SaleStage(StrEnum):
    NEW = "NEW"
    KYC = "KYC"
    AGREEMENT = "AGREEMENT"
    PAID = "PAID"
    LOST = "LOST"


class ScoreRecommendation(StrEnum):
    TRANSFER_TO_SALES = "TRANSFER_TO_SALES"
    NURTURE = "NURTURE"


class ActivityKind(StrEnum):
    CALL = "CALL"
    EMAIL = "EMAIL"
    MEETING = "MEETING"
    NOTE = "NOTE"
