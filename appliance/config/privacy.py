"""`policies/privacy.toml`: k-suppression, privacy budget, releases and topic levels."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from appliance.config.base import Strict, check_crontab

# The kinds of cross-user release (`analytics`): what `release_epsilon` may name.
RELEASE_KINDS = ("topics", "models", "cost", "positions", "blocks", "incident")


class PrivacySettings(Strict):
    k_min_users: int = Field(default=5, ge=1)
    epsilon_per_day: float = Field(default=4.0, gt=0)
    # What one cached release (a kind of figures over one window, once per UTC day) spends.
    epsilon_per_release: float = Field(default=1.0, gt=0)
    # What a release of one kind spends where it is not `epsilon_per_release`.
    release_epsilon: dict[str, float] = {}
    cross_user_topics: dict[str, bool] = {}
    # Mean cosine similarity between a thread's prompts and a topic's prompts needed
    # to join it online (else the thread starts a topic).
    topic_threshold: float = Field(default=0.15, ge=-1, le=1)
    # Background refinement merges groups of threads while the mean similarity
    # between their prompts (average linkage) is at least this.
    topic_merge_threshold: float = Field(default=0.15, ge=-1, le=1)
    topic_refine_every: int = Field(default=500, ge=1)
    # `semtrace serve` also refines, off the ingest path, any tenant with new prompts
    # every this many seconds (a quiet tenant's topics and labels follow within it).
    topic_refine_seconds: float = Field(default=60.0, gt=0)
    # Share of the refinement's similarity that comes from the threads' shared words
    # (hashed TF-IDF over the tenant's threads) rather than their embeddings.
    topic_lexical_weight: float = Field(default=0.4, ge=0, le=1)
    # Refinement merges two groups only while that mean similarity is also at least
    # this share of each group's cohesion (mean similarity between its distinct
    # prompts). 0 (off): leave-one-source-out prefers it off (docs/topics.md).
    topic_cohesion_ratio: float = Field(default=0.0, ge=0, le=1)
    # A topic of at least `topic_support` threads is established: two established
    # topics merge at `topic_merge_threshold`, a smaller group joins one at
    # `topic_absorb_threshold`, and two smaller groups merge only when that mean is
    # also `topic_seed_ratio` of the tighter one's cohesion (a conversation that
    # stays on one subject founds a topic only with one nearly as close).
    # `topic_support` 1: one flat threshold (docs/topics.md).
    topic_support: int = Field(default=3, ge=1)
    topic_seed_ratio: float = Field(default=0.6, ge=0, le=1)
    topic_absorb_threshold: float = Field(default=0.12, ge=-1, le=1)
    # Two established topics merge only when that mean is also this share of the tighter
    # one's cohesion (0: off, the leave-one-source-out choice; docs/topics.md).
    topic_merge_ratio: float = Field(default=0.0, ge=0, le=1)
    # Units (threads or prompts) one user may add to one cross-user release: the
    # L1 sensitivity of a count; sums are clipped per unit on top.
    contribution_bound: int = Field(default=15, ge=1, le=10_000)
    # Groups one user is counted in by a release's count of people (the L1
    # sensitivity of that count, which decides k-suppression).
    people_bound: int = Field(default=8, ge=1, le=10_000)
    # Tenants whose analysts may search other users' prompts.
    cross_user_search: dict[str, bool] = {}
    # When (crontab, UTC) `semtrace serve` makes each tenant's daily releases of the
    # topics and models figures (and at start), so that no query has to.
    release_cron: str = "5 0 * * *"

    @field_validator("release_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        return check_crontab("release_cron", value, "5 0 * * *")

    @field_validator("release_epsilon")
    @classmethod
    def _release_epsilons(cls, value: dict[str, float], info: ValidationInfo
                          ) -> dict[str, float]:
        per_day = info.data.get("epsilon_per_day", 4.0)
        for kind, eps in value.items():
            if kind not in RELEASE_KINDS:
                raise ValueError(f"{kind!r} is no kind of release (one of "
                                 f"{', '.join(RELEASE_KINDS)})")
            if not 0 < eps <= per_day:
                raise ValueError(f"{kind} = {eps:g} must be above 0 and at most "
                                 f"epsilon_per_day ({per_day:g}), or it can never be released")
        return value

    def epsilon_for(self, kind: str | None) -> float:
        """What one release of `kind` spends (`epsilon_per_release` unless overridden)."""
        if kind is None:
            return self.epsilon_per_release
        return self.release_epsilon.get(kind, self.epsilon_per_release)

    def release_epsilons(self) -> dict[str, float]:
        """What one release of each kind spends."""
        return {kind: self.epsilon_for(kind) for kind in RELEASE_KINDS}
