"""All policies, loaded and validated together at start."""

from __future__ import annotations

from pathlib import Path

from appliance.config.access import AccessSettings
from appliance.config.base import Strict
from appliance.config.cluster import ClusterSettings
from appliance.config.correlation import CorrelationSettings
from appliance.config.loading import load_optional_policy, load_policy
from appliance.config.paths import policy_dir
from appliance.config.pricing import PricingSettings
from appliance.config.privacy import PrivacySettings
from appliance.config.redaction import RedactionSettings
from appliance.config.retention import RetentionSettings
from appliance.config.service import ServiceSettings
from appliance.config.telemetry import TelemetrySettings
from appliance.errors import ConfigError


class Policies(Strict):
    """All policies, validated together at start."""

    correlation: CorrelationSettings
    redaction: RedactionSettings
    access: AccessSettings
    retention: RetentionSettings
    privacy: PrivacySettings
    service: ServiceSettings = ServiceSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    cluster: ClusterSettings = ClusterSettings()
    pricing: PricingSettings = PricingSettings()


def load_policies(directory: Path | None = None) -> Policies:
    """Load every policy file."""
    return Policies(
        correlation=load_policy("correlation", CorrelationSettings, directory=directory),
        redaction=load_policy("redaction", RedactionSettings, directory=directory),
        access=load_policy("access", AccessSettings, directory=directory),
        retention=load_policy("retention", RetentionSettings, directory=directory),
        privacy=load_policy("privacy", PrivacySettings, directory=directory),
        service=load_policy("service", ServiceSettings, directory=directory),
        telemetry=load_optional_policy("telemetry", TelemetrySettings, directory=directory),
        cluster=load_cluster(directory),
        pricing=load_optional_policy("pricing", PricingSettings, directory=directory),
    )


def load_cluster(directory: Path | None = None) -> ClusterSettings:
    """`cluster.toml` (optional), with its partition range checked against `partitions`."""
    settings = load_optional_policy("cluster", ClusterSettings, directory=directory)
    try:
        settings.owned()
    except ValueError as exc:
        path = (directory or policy_dir()) / "cluster.toml"
        raise ConfigError(f"Policy file {path}: key 'own': {exc}") from None
    return settings
