"""The read side: thread listings, one thread, topics and audit entries. Returns
dataclasses. Similarity search is `appliance.search`.

One module a job: `threads` (listings, one thread), `pages` (paging UIs), `topics`
(ids, labels, merges), `audit` (audit entries), `store_facts` (tables, tenants, data
version). Readers import from `appliance.query`."""

from appliance.query.audit import audit_entries
from appliance.query.pages import (
    PAGE_SORTS,
    ThreadMarks,
    list_threads_page,
    thread_marks,
    users_with_prefix,
)
from appliance.query.store_facts import data_version, has_held, has_table, tenants
from appliance.query.threads import (
    NAMES_A_THREAD,
    RECORD_REF,
    SORT_COLUMNS,
    THREAD_COLUMNS,
    ThreadFilter,
    count_threads,
    find_thread,
    get_thread,
    list_thread_rows,
    list_threads,
    records_by_request,
    thread_of_record,
)
from appliance.query.topics import (
    has_topic,
    live_topic,
    no_topic,
    topic_aliases,
    topic_label,
    topic_labels,
)

__all__ = [
    "NAMES_A_THREAD", "PAGE_SORTS", "RECORD_REF", "SORT_COLUMNS", "THREAD_COLUMNS",
    "ThreadFilter", "ThreadMarks", "audit_entries", "count_threads", "data_version",
    "find_thread", "get_thread", "has_held", "has_table", "has_topic", "list_thread_rows",
    "list_threads", "list_threads_page", "live_topic", "no_topic", "records_by_request",
    "tenants", "thread_marks", "thread_of_record", "topic_aliases", "topic_label",
    "topic_labels", "users_with_prefix",
]
