"""Forwards the front door's alarm notifications from its us-east-1 topic to the stage's alarm topics.

A CloudWatch alarm acts only on a topic of its own region, and the web ACL's alarm lives in us-east-1
with the web ACL's metrics. SNS delivers each notification of that alarm's topic to this function in the
stage's region (a cross-region Lambda subscription), which publishes the same subject and message to the
stage's topics (``TOPIC_ARNS``, comma-separated): the alarm reaches whoever the stage's other alarms
reach. Any failure raises: Lambda retries the asynchronous invocation, then keeps the event in the
function's dead-letter queue, whose own alarm notifies the stage's topics.

Standard library and boto3 (the Lambda runtime ships it) only.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3

# SNS Publish: a subject of at most 100 printable ASCII characters, no line breaks.
MAX_SUBJECT_LENGTH = 100
TOPIC_ARNS = [arn for arn in os.environ.get("TOPIC_ARNS", "").split(",") if arn]


@cache
def sns_client() -> Any:
    """One client per execution environment, made at the first notification."""
    return boto3.client("sns")


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    if not TOPIC_ARNS:
        raise RuntimeError("TOPIC_ARNS names no topic to forward to")
    records = event.get("Records") or []
    if not records:
        raise ValueError("the event holds no SNS record")
    for record in records:
        notification = record["Sns"]
        arguments = {"Message": notification["Message"]}
        subject = clean_subject(notification.get("Subject"))
        if subject:
            arguments["Subject"] = subject
        for topic_arn in TOPIC_ARNS:
            sns_client().publish(TopicArn=topic_arn, **arguments)
    return {"forwarded": len(records) * len(TOPIC_ARNS)}


def clean_subject(subject: Any) -> str:
    """The subject as SNS accepts it: printable ASCII on one line, at most 100 characters."""
    if not isinstance(subject, str):
        return ""
    printable = "".join(c if " " <= c <= "~" else " " for c in subject)
    return " ".join(printable.split())[:MAX_SUBJECT_LENGTH]
