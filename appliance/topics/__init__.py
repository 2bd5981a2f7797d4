"""Topics: what the prompts of a tenant are about (assignment, refinement, labels)."""

from appliance.topics.assigner import TopicAssigner
from appliance.topics.cluster import merge_groups
from appliance.topics.terms import content_terms, ctfidf_labels

__all__ = ["TopicAssigner", "content_terms", "ctfidf_labels", "merge_groups"]
