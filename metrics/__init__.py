"""Metrics: the KPI catalog and the rules both the stream and the warehouse compute it by.

Calendars and business time, SLA policies and time rules, the channel
catalog file, the request and read rules that turn events into facts, the
KPI definitions as data, and the windows they are reported in.
"""

from metrics.calendar import BusinessCalendar, parse_period
from metrics.catalog import CATALOG, KPIS, Kpi, Result, evaluate, quantile_cont
from metrics.channels import ChannelCatalog, ChannelInfo
from metrics.durations import Duration, parse_duration
from metrics.facts import ActivityFact, EventFact, MeetingFact, MessageFact, RequestFact, SurveyFact
from metrics.messages import MessageState
from metrics.policy import ChannelPolicy, KpiRules
from metrics.requests import RequestState, opening_type, role_in_request
from metrics.windows import Window, WindowClock

__all__ = [
    "CATALOG",
    "KPIS",
    "ActivityFact",
    "BusinessCalendar",
    "ChannelCatalog",
    "ChannelInfo",
    "ChannelPolicy",
    "Duration",
    "EventFact",
    "Kpi",
    "KpiRules",
    "MeetingFact",
    "MessageFact",
    "MessageState",
    "RequestFact",
    "RequestState",
    "Result",
    "SurveyFact",
    "Window",
    "WindowClock",
    "evaluate",
    "opening_type",
    "parse_duration",
    "parse_period",
    "quantile_cont",
    "role_in_request",
]
