"""The contract checks the harness gives users' tests (`segjet.assert_contract`) and runs on every
hop of `segjet check` (`check_contract`): a broken payload must fail them, naming where it broke."""

from __future__ import annotations

import pytest

from emulator.harness.client import SegjetClient
from emulator.harness.scenario import HopFailed, check_contract

IDENTIFY = {"type": "identify", "userId": "u-1", "traits": {"email": "u1@example.com"}}


def test_assert_contract_passes_a_valid_payload_and_fails_a_broken_one_naming_the_place() -> None:
    SegjetClient.assert_contract("segment.identify", IDENTIFY)
    with pytest.raises(AssertionError, match=r'breaks contract segment\.identify:\n\s+\$\.traits: "gold" is not of type object'):
        SegjetClient.assert_contract("segment.identify", {**IDENTIFY, "traits": "gold"})


def test_a_hop_whose_payload_breaks_its_contract_fails_naming_the_hop_place_and_rule() -> None:
    check_contract("identify", "segment.identify", IDENTIFY)
    with pytest.raises(HopFailed, match=r"^identify: payload breaks contract segment\.identify at \$\.traits \(type\): "):
        check_contract("identify", "segment.identify", {**IDENTIFY, "traits": "gold"})
