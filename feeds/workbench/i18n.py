"""The workbench's words in Vietnamese (the default: stewards work in it) and English, and its clock.

Every label a page shows is a key of ``LABELS`` with both languages; a page asks ``Words(lang)`` for them. Dates
are shown in Asia/Ho_Chi_Minh time, whatever the server's zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
LANGUAGE_COOKIE = "lienthong_lang"
LOCAL_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")

LABELS: dict[str, tuple[str, str]] = {  # key: (Vietnamese, English)
    "workbench": ("Bàn làm việc của cán bộ quản lý dữ liệu", "Data stewards' workbench"),
    "language": ("Ngôn ngữ", "Language"),
    "signed_in_as": ("Đăng nhập:", "Signed in as"),
    "role.steward": ("cán bộ quản lý dữ liệu (được quyết định)", "steward (may decide)"),
    "role.viewer": ("người xem (chỉ đọc)", "viewer (read only)"),
    "queue": ("Hàng đợi cách ly", "Quarantine queue"),
    "overview": ("Tổng quan trao đổi", "Exchanges overview"),
    "filters": ("Bộ lọc", "Filters"),
    "clear_filter": ("bỏ lọc", "clear"),
    "clear_all": ("Bỏ mọi bộ lọc", "Clear every filter"),
    "none": ("không có", "none"),
    "facet.agreement": ("Thỏa thuận", "Agreement"),
    "facet.dimension": ("Chiều chất lượng", "Dimension"),
    "facet.severity": ("Mức độ", "Severity"),
    "facet.rule": ("Quy tắc kiểm tra", "Expectation (rule)"),
    "facet.province": ("Tỉnh, thành phố", "Province"),
    "facet.status": ("Trạng thái", "Status"),
    "facet.run": ("Lần kiểm tra", "Validation run"),
    "facet.package": ("Gói dữ liệu", "Package"),
    "dimension.dung": ("đúng", "đúng (correct)"),
    "dimension.du": ("đủ", "đủ (complete)"),
    "dimension.sach": ("sạch", "sạch (clean)"),
    "dimension.song": ("sống", "sống (up to date)"),
    "explain.dung": (
        "Giá trị phải đúng: đúng định dạng, đúng mã danh mục, khớp với các trường khác của bản ghi.",
        "The value must be correct: the right format, a code in force, consistent with the record.",
    ),
    "explain.du": (
        "Bản ghi phải đủ: các trường bắt buộc phải có giá trị.",
        "The record must be complete: every required field has a value.",
    ),
    "explain.sach": (
        "Dữ liệu phải sạch: không trùng lặp, không lẫn một người dưới hai số định danh.",
        "The data must be clean: no duplicates, no one person under two IDs.",
    ),
    "explain.song": (
        "Dữ liệu phải sống: cập nhật theo các sự kiện đã biết và được xác minh trong thời hạn.",
        "The data must be up to date: known events applied and verified within the agreed window.",
    ),
    "severity.quarantine": ("cách ly", "quarantine"),
    "severity.block": ("chặn (cần hai người duyệt)", "block (takes two stewards)"),
    "status.held": ("đang giữ", "held"),
    "status.awaiting": ("chờ người duyệt thứ hai", "awaiting a second steward"),
    "status.released": ("đã cho đi", "released"),
    "status.rejected": ("đã từ chối", "rejected"),
    "status.all": ("mọi trạng thái", "every status"),
    "records_found": ("bản ghi", "record(s)"),
    "col.select": ("Chọn", "Select"),
    "col.record": ("Bản ghi", "Record"),
    "col.agreement": ("Thỏa thuận", "Agreement"),
    "col.run": ("Lần kiểm tra", "Run"),
    "col.personal_id": ("Số định danh", "Personal ID"),
    "col.province": ("Tỉnh", "Province"),
    "col.findings": ("Lỗi phát hiện", "Findings"),
    "col.status": ("Trạng thái", "Status"),
    "col.held_at": ("Giữ lúc", "Held at"),
    "col.field": ("Trường", "Field"),
    "col.value": ("Giá trị", "Value"),
    "col.dimension": ("Chiều", "Dimension"),
    "col.severity": ("Mức độ", "Severity"),
    "col.rule": ("Quy tắc", "Rule"),
    "col.reason": ("Lý do", "Reason"),
    "col.explanation": ("Giải thích", "Explanation"),
    "col.decision": ("Quyết định", "Decision"),
    "col.scope": ("Phạm vi", "Scope"),
    "col.steward": ("Cán bộ", "Steward"),
    "col.when": ("Thời điểm", "When"),
    "next_page": ("Trang sau", "Next page"),
    "first_page": ("Trang đầu", "First page"),
    "record": ("Bản ghi cách ly", "Quarantined record"),
    "record.dataset": ("Bộ dữ liệu", "Dataset"),
    "record.row": ("Dòng", "Row"),
    "record.sent_in": ("Đã gửi trong gói", "Sent in package"),
    "values": ("Giá trị của bản ghi", "The record's values"),
    "failing": ("không đạt", "failing"),
    "failing_note": ("Các trường không đạt được đánh dấu.", "Failing fields are marked."),
    "findings": ("Vì sao bản ghi bị giữ", "Why the record is held"),
    "decisions": ("Nhật ký quyết định", "Decisions (audit)"),
    "no_decisions": ("Chưa có quyết định nào.", "No decision yet."),
    "show_whole_id": ("Hiện đầy đủ số định danh", "Show the whole ID"),
    "whole_id_logged": ("Lượt xem đầy đủ này đã được ghi nhật ký.", "This full view has been logged."),
    "whole_id_unavailable": (
        "Không thể ghi nhật ký lượt xem, nên không hiện đầy đủ: ",
        "The view cannot be logged, so nothing is shown whole: ",
    ),
    "decide": ("Quyết định", "Decide"),
    "decide_selected": ("Quyết định cho các bản ghi đã chọn", "Decide on the selected records"),
    "release": ("Cho đi", "Release"),
    "reject": ("Từ chối", "Reject"),
    "reason": ("Lý do (bắt buộc)", "Reason (required)"),
    "all_feeds": ("Áp dụng cho mọi luồng dữ liệu (mọi thỏa thuận)", "For all feeds (every agreement)"),
    "submit": ("Ghi quyết định", "Record the decision"),
    "four_eyes": (
        "Bản ghi có lỗi mức chặn: việc cho đi cần hai cán bộ khác nhau duyệt.",
        "This record has a block-severity finding: its release takes two different stewards.",
    ),
    "awaiting_by": ("Đã được cho đi lần thứ nhất bởi", "First released by"),
    "viewer_note": (
        "Bạn chỉ có quyền xem; chỉ cán bộ quản lý dữ liệu được quyết định.",
        "You may read; only stewards decide.",
    ),
    "scope.feed": ("luồng của bản ghi", "the record's feed"),
    "scope.all": ("mọi luồng", "all feeds"),
    "decision.release": ("cho đi", "release"),
    "decision.reject": ("từ chối", "reject"),
    "notice.decided": ("Đã ghi quyết định cho", "Decision recorded for"),
    "refused": ("Không thực hiện được", "Not done"),
    "back": ("Quay lại", "Back"),
    "no_records": ("Không có bản ghi nào khớp bộ lọc.", "No record matches these filters."),
    # -- reconciliation, trends, operators (feeds.workbench.report_views) --
    "nav.mismatches": ("Đối soát", "Reconciliation"),
    "nav.trends": ("Xu hướng", "Trends"),
    "nav.operators": ("Vận hành", "Operators"),
    "mismatches.title": ("Đối soát với cơ quan đối tác", "Reconciliation with the partners"),
    "facet.partner": ("Cơ quan đối tác", "Partner"),
    "facet.mismatch": ("Loại sai lệch", "Mismatch class"),
    "facet.resolution": ("Tình trạng xử lý", "Resolution"),
    "mismatch.matched": ("khớp", "matched"),
    "mismatch.unknown_id": ("số định danh không có trong CSDL dân cư", "personal ID unknown to the population"),
    "mismatch.name_differs": ("họ tên khác nhau", "name differs"),
    "mismatch.date_of_birth_differs": ("ngày sinh khác nhau", "date of birth differs"),
    "mismatch.sex_differs": ("giới tính khác nhau", "sex differs"),
    "mismatch.dead_but_active": ("đã mất nhưng đối tác còn để hiệu lực", "dead, still active at the partner"),
    "mismatch.duplicate_link": ("mã gắn với hai người", "identifier tied to two people"),
    "mismatch.unmatched": ("không tìm thấy công dân", "no citizen found"),
    "resolution.unresolved": ("chưa xử lý", "unresolved"),
    "resolution.population_right": ("CSDL dân cư đúng", "the population is right"),
    "resolution.partner_must_correct": ("đối tác phải sửa", "the partner must correct"),
    "resolution.escalate": ("chuyển cấp trên xem xét", "escalate"),
    "col.partner": ("Đối tác", "Partner"),
    "col.row": ("Dòng", "Row"),
    "col.mismatch": ("Sai lệch", "Mismatch"),
    "col.identifier": ("Mã của đối tác", "Partner's identifier"),
    "col.partner_value": ("Giá trị của đối tác", "The partner's value"),
    "col.population_value": ("Giá trị trong CSDL dân cư", "The population's value"),
    "col.resolution": ("Xử lý", "Resolution"),
    "mismatches_found": ("sai lệch", "mismatch(es)"),
    "no_mismatches": ("Không có sai lệch nào khớp bộ lọc.", "No mismatch matches these filters."),
    "resolve_selected": ("Xử lý các sai lệch đã chọn", "Resolve the selected mismatches"),
    "resolve.submit": ("Ghi kết quả xử lý", "Record the resolution"),
    "notice.resolved": ("Đã ghi kết quả xử lý cho", "Resolution recorded for"),
    "corrections": ("Danh sách đối tác phải sửa", "Corrections the partners must make"),
    "corrections.download": ("Tải tệp CSV", "Download the CSV"),
    "corrections.note": (
        "Tệp chứa đầy đủ số định danh (hồ sơ của chính đối tác); chỉ cán bộ quản lý dữ liệu được tải.",
        "The file holds whole personal IDs (the partner's own records); only stewards download it.",
    ),
    "recent_resolutions": ("Nhật ký xử lý gần đây", "Recent resolutions (audit)"),
    "no_resolutions": ("Chưa có kết quả xử lý nào.", "No resolution yet."),
    "trends.title": ("Xu hướng chất lượng dữ liệu", "Data quality trends"),
    "trends.feed": ("Luồng dữ liệu", "Feed"),
    "trends.dataset": ("Bộ dữ liệu", "Dataset"),
    "trends.scores": ("Điểm bốn chiều chất lượng qua các lần kiểm tra", "The four dimension scores over the runs"),
    "trends.scores_desc": (
        "Tỷ lệ bản ghi đạt của mỗi chiều, từ lần kiểm tra cũ nhất đến mới nhất.",
        "The share of rows passing each dimension, from the oldest run to the newest.",
    ),
    "trends.quarantine": ("Tỷ lệ bản ghi bị cách ly mỗi lần kiểm tra", "Quarantine rate per run"),
    "trends.quarantine_desc": (
        "Tỷ lệ bản ghi bị giữ lại để cán bộ xem xét, từ lần kiểm tra cũ nhất đến mới nhất.",
        "The share of rows held for a steward, from the oldest run to the newest.",
    ),
    "trends.latest": ("Lần mới nhất", "Latest run"),
    "trends.table": ("Số liệu từng lần kiểm tra", "Each run's figures"),
    "trends.rate": ("cách ly", "quarantined"),
    "no_runs": ("Chưa có lần kiểm tra nào.", "No validation run yet."),
    "col.started": ("Bắt đầu", "Started"),
    "col.rows": ("Số dòng", "Rows"),
    "col.quarantined": ("Bị cách ly", "Quarantined"),
    "col.rate": ("Tỷ lệ cách ly", "Quarantine rate"),
    "col.data_docs": ("Báo cáo Data Docs", "Data Docs"),
    "data_docs.open": ("mở báo cáo", "open the report"),
    "freshness": ("Độ trễ theo đối tác", "How far each partner's feed lags"),
    "col.lag": ("Thay đổi chưa gửi", "Changes not yet delivered"),
    "col.waiting": ("Thay đổi cũ nhất đã chờ", "Oldest change waiting"),
    "col.last_receipt": ("Biên nhận cuối", "Last receipt"),
    "col.receipt_age": ("Biên nhận cuối cách đây", "Age of the last receipt"),
    "receipt.accepted": ("chấp nhận", "accepted"),
    "receipt.rejected": ("từ chối", "rejected"),
    "operators.title": ("Vận hành các luồng trao đổi", "Operating the feeds"),
    "col.transport": ("Kênh truyền", "Transport"),
    "col.checkpoint": ("Điểm mốc: thay đổi cuối đã gửi", "Checkpoint: last change delivered"),
    "col.pending": ("Gói chờ biên nhận, đến thay đổi", "Package awaiting its receipt, up to change"),
    "col.last_package": ("Gói cuối", "Last package"),
    "col.received": ("Gói đã nhận", "Packages received"),
    "col.partner_state": ("Kết nối đối tác", "Partner connection"),
    "state.up": ("hoạt động", "up"),
    "state.down": ("không kết nối được", "down"),
    "state.unknown": ("chưa kiểm tra", "not checked"),
    "failures": ("Tác vụ lỗi trong 24 giờ qua", "Failed tasks in the last 24 hours"),
    "failures.none": ("Không có tác vụ nào lỗi.", "No task failed."),
    "failures.unavailable": (
        "Không đọc được lịch sử tác vụ của Airflow ở đây:",
        "Airflow's task history cannot be read here:",
    ),
    "failures.other": ("DAG chung: nhật ký thay đổi, sổ cái, lưu trữ", "Shared DAGs: change log, ledger, retention"),
    "col.dag": ("DAG", "DAG"),
    "col.task": ("Tác vụ", "Task"),
    "col.dag_run": ("Lần chạy", "DAG run"),
    "col.ended": ("Kết thúc", "Ended"),
    "col.log": ("Nhật ký", "Log"),
    "failures.log_link": ("xem nhật ký", "see the log"),
}


# Each kind of expectation in plain words (the rule's name is its kind, then its columns: ``kind(column, ...)``).
RULE_EXPLANATIONS: dict[str, tuple[str, str]] = {
    "expect_column_values_to_not_be_null": ("Trường này bắt buộc phải có giá trị.", "This field must have a value."),
    "expect_column_values_to_be_null": (
        "Trường này phải để trống; ở đây là dấu hiệu một người có hai số định danh hoặc bản ghi lặp.",
        "This field must be empty; here it signals one person under two IDs, or a repeated record.",
    ),
    "expect_column_values_to_be_in_set": (
        "Giá trị phải thuộc danh mục cho phép.",
        "The value must be one of the allowed codes.",
    ),
    "expect_column_values_to_be_between": ("Giá trị nằm ngoài khoảng hợp lệ.", "The value is outside its valid range."),
    "expect_column_value_lengths_to_be_between": ("Độ dài giá trị không hợp lệ.", "The value's length is not valid."),
    "expect_table_columns_to_match_set": (
        "Tệp dữ liệu không có đúng các cột theo hợp đồng dữ liệu.",
        "The dataset does not have exactly the contract's columns.",
    ),
    "expect_administrative_unit_in_force": (
        "Mã đơn vị hành chính (xã, phường) phải còn hiệu lực vào ngày của bản ghi.",
        "The ward's code must be in force on the record's date (after the 2025 reform, the new codes).",
    ),
    "expect_column_pair_values_to_be_present_together": (
        "Hai trường này phải cùng có hoặc cùng trống.",
        "These two fields are given together or not at all.",
    ),
    "expect_column_pair_values_to_compare": (
        "Hai ngày (hoặc giá trị) này không đúng thứ tự.",
        "These two dates (or values) are in the wrong order.",
    ),
    "expect_column_values_to_be_free_of_legacy_d": (
        "Tên không được dùng ký tự 'Ð' cũ; phải là 'Đ'.",
        "Names must not use the legacy 'Ð'; the letter is 'Đ'.",
    ),
    "expect_column_values_to_be_iso_dates": (
        "Ngày phải viết theo dạng NNNN-TT-NN và có thật.",
        "Dates are written YYYY-MM-DD and must exist.",
    ),
    "expect_column_values_to_be_nfc": (
        "Chữ tiếng Việt phải ở dạng Unicode dựng sẵn (NFC); dạng tổ hợp làm sai việc so khớp tên.",
        "Vietnamese text must be in precomposed Unicode (NFC); decomposed text breaks name matching.",
    ),
    "expect_column_values_to_be_on_or_after": ("Ngày này sớm hơn mức có thể.", "This date is earlier than possible."),
    "expect_column_values_to_be_tax_code": (
        "Mã số thuế không hợp lệ (độ dài hoặc số kiểm tra).",
        "The tax code is not valid (its length or check digit).",
    ),
    "expect_column_values_to_match_code_pattern": (
        "Mã không đúng định dạng (ví dụ số định danh phải có 12 chữ số).",
        "The code does not have its format (a personal ID is 12 digits).",
    ),
    "expect_date_of_birth_to_be_plausible": (
        "Ngày sinh không hợp lý (trong tương lai hoặc quá xa).",
        "The date of birth is not plausible (in the future, or too long ago).",
    ),
    "expect_no_active_card_after_death": (
        "Người đã mất không thể còn thẻ căn cước đang hiệu lực.",
        "Someone who has died cannot hold an identity card still in force.",
    ),
    "expect_personal_id_to_agree_with_record": (
        "Số định danh phải khớp với bản ghi: mã tỉnh nơi đăng ký khai sinh, giới tính và thế kỷ sinh, năm sinh.",
        "The personal ID must agree with the record: birth province, sex and century, year of birth.",
    ),
    "expect_personal_tax_code_to_be_valid": ("Mã số thuế cá nhân không hợp lệ.", "The personal tax code is not valid."),
}
SHARE_NOTE = (
    " Quá nhiều bản ghi sai quy tắc này sẽ chặn cả gói dữ liệu.",
    " Too many records failing this rule stop the whole package.",
)


def explain_rule(rule: str, lang: str) -> str:
    """A rule in plain words, in ``lang``; empty for a rule this table does not know."""
    index = LANGUAGES.index(lang) if lang in LANGUAGES else 0
    kind = rule.split("(", 1)[0].strip()
    words = RULE_EXPLANATIONS.get(kind)
    if words is None:
        return ""
    return words[index] + (SHARE_NOTE[index] if rule.endswith(" share") else "")


def pick_language(query: str | None, cookie: str | None) -> str:
    """The language asked for (``?lang=``), else the one kept in the cookie, else Vietnamese."""
    for asked in (query, cookie):
        if asked in LANGUAGES:
            return asked
    return DEFAULT_LANGUAGE


class Words:
    """The labels in one language: ``words("queue")``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._index = LANGUAGES.index(self.lang)

    def __call__(self, key: str) -> str:
        return LABELS[key][self._index]


def local_time(moment: datetime | None) -> str:
    """A moment as stewards read it: Hà Nội / Hồ Chí Minh time (UTC+7); naive moments are taken as UTC."""
    if moment is None:
        return ""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(LOCAL_ZONE).strftime("%Y-%m-%d %H:%M (UTC+7)")
