"""Which language the callee hears: from the number's country, unless the campaign says otherwise."""

from __future__ import annotations

# Prompt languages shipped in asterisk-conf/sounds/<lang>/; anything else hears English.
_BY_REGION = {
    "PL": "pl",
    "RU": "ru",
    "BY": "ru",
    "KZ": "ru",
    "CN": "zh",
    "TW": "zh",
    "HK": "zh",
    "SG": "zh",
    "ES": "es",
    "MX": "es",
    "AR": "es",
    "CO": "es",
    "CL": "es",
    "PE": "es",
    "VE": "es",
    "EC": "es",
    "GT": "es",
    "CU": "es",
    "BO": "es",
    "DO": "es",
    "HN": "es",
    "PY": "es",
    "SV": "es",
    "NI": "es",
    "CR": "es",
    "PA": "es",
    "UY": "es",
}
DEFAULT_LANGUAGE = "en"


def language_for(region: str | None, campaign_language: str | None = None) -> str:
    if campaign_language:
        return campaign_language
    return _BY_REGION.get(region or "", DEFAULT_LANGUAGE)
