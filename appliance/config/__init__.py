"""Settings from `policies/*.toml`, validated once; errors name the file and key.

One module a policy file (`correlation`, `redaction`, `access`, `retention`,
`privacy`, `pricing`, `service`, `telemetry`, `cluster`), on the strict base of
`base`; `paths` finds the policies and the model, `loading` reads and
validates one file, `policies` loads them all. Import from here.
"""

from appliance.config.access import AccessSettings, RoleSettings
from appliance.config.cluster import ClusterSecurity, ClusterSettings
from appliance.config.correlation import (
    CalibrationSettings,
    CorrelationSettings,
    EmbeddingSettings,
)
from appliance.config.loading import REMOVED_KEYS, load_optional_policy, load_policy
from appliance.config.paths import MODEL_DIR_ENV, POLICY_DIR_ENV, model_dir, policy_dir
from appliance.config.policies import Policies, load_cluster, load_policies
from appliance.config.pricing import ModelPrice, PricingSettings
from appliance.config.privacy import RELEASE_KINDS, PrivacySettings
from appliance.config.redaction import (
    REDACTABLE_TYPES,
    CustomRecognizer,
    RecognizerPattern,
    RedactionSettings,
)
from appliance.config.retention import LegalHold, RetentionClass, RetentionSettings
from appliance.config.service import ServiceSettings
from appliance.config.telemetry import (
    LogSettings,
    MetricsSettings,
    TelemetrySettings,
    TracingSettings,
)
from appliance.errors import ConfigError

__all__ = [
    "MODEL_DIR_ENV",
    "POLICY_DIR_ENV",
    "REDACTABLE_TYPES",
    "RELEASE_KINDS",
    "REMOVED_KEYS",
    "AccessSettings",
    "ClusterSecurity",
    "ClusterSettings",
    "ConfigError",
    "CorrelationSettings",
    "CustomRecognizer",
    "CalibrationSettings",
    "EmbeddingSettings",
    "LegalHold",
    "LogSettings",
    "MetricsSettings",
    "ModelPrice",
    "Policies",
    "PricingSettings",
    "PrivacySettings",
    "RecognizerPattern",
    "RedactionSettings",
    "RetentionClass",
    "RetentionSettings",
    "RoleSettings",
    "ServiceSettings",
    "TelemetrySettings",
    "TracingSettings",
    "load_cluster",
    "load_optional_policy",
    "load_policies",
    "load_policy",
    "model_dir",
    "policy_dir",
]
