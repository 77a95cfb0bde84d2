"""The workbench's words and clock: every label in both languages, every rule the feeds hold records for explained
in plain words, times in Hà Nội's zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feeds.workbench.i18n import LABELS, LANGUAGES, Words, explain_rule, local_time, pick_language


def test_every_label_has_vietnamese_and_english():
    assert LANGUAGES == ("vi", "en")
    for key, (vietnamese, english) in LABELS.items():
        assert vietnamese.strip() and english.strip(), key


def test_vietnamese_unless_english_is_asked_for_or_kept():
    assert pick_language(None, None) == "vi" and pick_language("fr", None) == "vi"
    assert pick_language("en", None) == "en" and pick_language(None, "en") == "en"
    assert pick_language("vi", "en") == "vi"  # asking wins over the cookie
    assert Words("en")("queue") == "Quarantine queue" and Words("xx")("queue") == "Hàng đợi cách ly"


@pytest.mark.parametrize(
    "rule",
    [
        "expect_column_values_to_be_nfc(full_name)",
        "expect_column_values_to_be_null(duplicate_of)",
        "expect_no_active_card_after_death(date_of_death, card_status)",
        "expect_administrative_unit_in_force(permanent_ward_code, updated_at)",
        "expect_column_values_to_match_code_pattern(personal_id)",
        "expect_personal_id_to_agree_with_record(personal_id, sex, date_of_birth)",
    ],
)
def test_the_rules_the_feeds_hold_records_for_are_explained_in_both_languages(rule):
    assert (
        explain_rule(rule, "vi") and explain_rule(rule, "en") and explain_rule(rule, "vi") != explain_rule(rule, "en")
    )


def test_a_share_rule_says_it_can_stop_the_package_and_an_unknown_rule_is_left_unexplained():
    share = "expect_column_values_to_match_code_pattern(personal_id) share"
    assert explain_rule(share, "en").endswith("Too many records failing this rule stop the whole package.")
    assert explain_rule("expect_something_new(x)", "vi") == ""


def test_times_are_shown_in_ha_noi_time():
    assert local_time(datetime(2026, 12, 5, 18, 30, tzinfo=UTC)) == "2026-12-06 01:30 (UTC+7)"
    assert local_time(datetime(2026, 12, 5, 18, 30)) == "2026-12-06 01:30 (UTC+7)"  # naive: taken as UTC
    assert local_time(None) == ""
