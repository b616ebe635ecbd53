"""The subscription filter language of the embedded emulator (pure parsing and matching, no process)."""

from __future__ import annotations

import grpc
import pytest

from emulators.pubsub.errors import PubSubError
from emulators.pubsub.filters import compile_filter

MESSAGES = {
    "order-eu": {"kind": "order", "region": "eu"},
    "order-us-test": {"kind": "order", "region": "us", "test": ""},
    "payment": {"kind": "payment"},
    "none": {},
    "spaced": {"my key": "x y", "quote": 'say "hi"'},
}


def matching(source: str) -> set[str]:
    predicate = compile_filter(source)
    assert predicate is not None
    return {name for name, attributes in MESSAGES.items() if predicate(attributes)}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('attributes.kind = "order"', {"order-eu", "order-us-test"}),
        ("attributes.kind = 'order'", {"order-eu", "order-us-test"}),
        ('attributes.kind != "order"', {"payment", "none", "spaced"}),  # true when the key is absent too
        ('hasPrefix(attributes.kind, "pay")', {"payment"}),
        ("attributes:test", {"order-us-test"}),  # present, even with an empty value
        ("NOT attributes:kind", {"none", "spaced"}),
        ('attributes.kind = "order" AND attributes.region = "eu"', {"order-eu"}),
        ('attributes.region = "eu" OR attributes.kind = "payment"', {"order-eu", "payment"}),
        (
            '(attributes.kind = "order" OR hasPrefix(attributes.kind, "pay")) AND NOT attributes:test',
            {"order-eu", "payment"},
        ),
        ("NOT (attributes:kind OR attributes:quote)", {"none"}),
        ("NOT NOT attributes:region", {"order-eu", "order-us-test"}),
        ('attributes."my key" = "x y"', {"spaced"}),
        ('attributes.quote = "say \\"hi\\""', {"spaced"}),
        ('attributes.kind = "ORDER"', set()),  # case-sensitive
        ("  attributes:kind  ", {"order-eu", "order-us-test", "payment"}),
    ],
)
def test_documented_forms_match(source: str, expected: set[str]) -> None:
    assert matching(source) == expected


def test_an_empty_filter_matches_everything() -> None:
    assert compile_filter("") is None
    assert compile_filter("   ") is None


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("attributes.kind = order", "a quoted value"),
        ("attributes:a AND attributes:b OR attributes:c", "cannot be mixed"),
        ('attributes.kind = "x" attributes:y', "end of filter"),
        ("hasPrefix(attributes.kind)", "','"),
        ('data = "x"', "'attributes'"),
        ('attributes.kind = "unterminated', "unterminated string"),
        ('attributes.kind > "a"', "unexpected character"),
        ("(attributes:a", "')'"),
        ("attributes", "'.' or ':'"),
        ("attributes:a " + "AND attributes:a " * 20, "256"),
    ],
)
def test_bad_filters_are_invalid_argument_with_the_reason(source: str, reason: str) -> None:
    with pytest.raises(PubSubError) as caught:
        compile_filter(source)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in caught.value.message
