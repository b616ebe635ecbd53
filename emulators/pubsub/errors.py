"""Errors the emulator returns to clients, and validation of resource names.

Every error carries a gRPC status code and a message in the same words the real service uses where
that is known, so client code written against the emulator handles the same exceptions in the cloud.
"""

from __future__ import annotations

import re

import grpc

# Same rules as the real service: 3-255 chars, starts with a letter, no "goog" prefix.
_ID = r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}"
_PROJECT = r"[^/]+"
TOPIC_RE = re.compile(rf"projects/(?P<project>{_PROJECT})/topics/(?P<id>{_ID})")
SUBSCRIPTION_RE = re.compile(rf"projects/(?P<project>{_PROJECT})/subscriptions/(?P<id>{_ID})")
PROJECT_RE = re.compile(rf"projects/(?P<project>{_PROJECT})")
# Subscriptions whose topic was deleted keep existing and point here, as in the real service.
DELETED_TOPIC = "_deleted-topic_"


class PubSubError(Exception):
    """A request failed: ``code`` is the gRPC status returned to the client, ``message`` says why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def invalid(message: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(resource: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.NOT_FOUND, f"Resource not found (resource={resource}).")


def already_exists(resource: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.ALREADY_EXISTS, f"Resource already exists in the project (resource={resource}).")


def _check(pattern: re.Pattern[str], name: str, kind: str, example: str) -> str:
    match = pattern.fullmatch(name or "")
    if match is None:
        raise invalid(
            f"Invalid {kind} name: {name!r}; expected {example} where the id is 3-255 characters "
            "of letters, digits and -_.~+%, starting with a letter."
        )
    if "id" in pattern.groupindex and match.group("id").lower().startswith("goog"):
        raise invalid(f"Invalid {kind} name: {name!r}; ids must not start with 'goog'.")
    return name


def check_topic(name: str) -> str:
    return _check(TOPIC_RE, name, "topic", "projects/<project>/topics/<id>")


def check_subscription(name: str) -> str:
    return _check(SUBSCRIPTION_RE, name, "subscription", "projects/<project>/subscriptions/<id>")


def check_project(name: str) -> str:
    if PROJECT_RE.fullmatch(name or "") is None:
        raise invalid(f"Invalid project: {name!r}; expected projects/<project>.")
    return name


def project_of(name: str) -> str:
    """``projects/p`` of a topic or subscription name."""
    return "/".join(name.split("/")[:2])
